"""Which blobs a backfill lists, and the event Event Grid would have sent for each."""

from __future__ import annotations

import uuid
from typing import Any

from azure.storage.blob import BlobProperties

from handlers.context import AppContext
from tools import events as event_builders
from tools.routes import Route

# Stable across runs, so a blob version's synthesized event has the same id every time.
_EVENT_NAMESPACE = uuid.UUID("6f1c7a52-3b0e-4f0f-9a7e-2d4c1b8e5a10")


def listing_prefix(prefix: str, routes: list[Route]) -> str | None:
    """The narrowest listing prefix that still returns every blob a route could match.

    None when no route's folder is compatible with ``prefix``. A case-insensitive route
    (Event Grid's default) also matches ``Incoming/`` for folder ``incoming/``, so only the
    folder's leading characters without case narrow the listing.
    """
    candidates = []
    for route in routes:
        folder = route.folder if route.case_sensitive else _caseless_head(route.folder)
        if folder.startswith(prefix):
            candidates.append(folder)
        elif prefix.startswith(folder):
            candidates.append(prefix)
    if not candidates:
        return None
    common = candidates[0]
    for candidate in candidates[1:]:
        while not candidate.startswith(common):
            common = common[:-1]
    return common


def _caseless_head(text: str) -> str:
    for index, char in enumerate(text):
        if char.lower() != char.upper():
            return text[:index]
    return text


def synthesize(
    ctx: AppContext, route: Route, container: str, blob: BlobProperties
) -> dict[str, Any]:
    """The BlobCreated event Event Grid would have delivered to ``route`` for ``blob``."""
    etag = str(blob.etag)
    account = ctx.account
    settings = blob.content_settings
    blob_type = getattr(blob.blob_type, "value", blob.blob_type)
    return event_builders.blob_created(
        account=account.name,
        service_url=account.blob_url,
        container=container,
        blob_name=blob.name,
        etag=etag,
        # One event per file, as for a single upload; the listing cannot tell how it was made.
        api="PutBlob",
        content_type=(settings.content_type if settings else None) or "application/octet-stream",
        content_length=int(blob.size or 0),
        blob_type=str(blob_type or "BlockBlob"),
        schema=route.schema,
        event_id=str(
            uuid.uuid5(_EVENT_NAMESPACE, f"{route.function}|{container}/{blob.name}|{etag}")
        ),
        event_time=blob.last_modified,
    )


def is_directory(blob: BlobProperties) -> bool:
    """ADLS Gen2 lists directories as empty blobs; Event Grid sends no BlobCreated for them."""
    return (blob.metadata or {}).get("hdi_isfolder") == "true"
