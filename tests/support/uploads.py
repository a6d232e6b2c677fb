"""Upload a blob straight to storage and make the BlobCreated event Azure would send for it."""

from __future__ import annotations

from typing import Any

from azure.storage.blob import BlobServiceClient, ContentSettings

from tools import azurite
from tools import events as build


def upload_events(
    service: BlobServiceClient,
    base_url: str,
    container: str,
    name: str,
    data: bytes,
    *,
    content_type: str = "application/octet-stream",
    schemas: tuple[str, ...] = (build.EVENT_GRID_SCHEMA,),
) -> list[dict[str, Any]]:
    """Upload ``data`` (overwriting); return the event of that version in each of ``schemas``,
    naming the account at ``base_url``."""
    result = service.get_blob_client(container, name).upload_blob(
        data, overwrite=True, content_settings=ContentSettings(content_type=content_type)
    )
    return [
        build.blob_created(
            account=azurite.ACCOUNT,
            service_url=base_url,
            container=container,
            blob_name=name,
            etag=str(result["etag"]),
            content_type=content_type,
            content_length=len(data),
            schema=schema,
        )
        for schema in schemas
    ]


def upload(
    service: BlobServiceClient,
    base_url: str,
    container: str,
    name: str,
    data: bytes,
    schema: str = build.EVENT_GRID_SCHEMA,
    content_type: str = "application/octet-stream",
) -> dict[str, Any]:
    """Upload ``data``; return the one event Azure would send for it in ``schema``."""
    (event,) = upload_events(
        service, base_url, container, name, data, content_type=content_type, schemas=(schema,)
    )
    return event
