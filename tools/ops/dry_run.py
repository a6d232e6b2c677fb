"""What a backfill would do with one event, found by reading only: the handlers' own
"already done?" checks, asked without doing the work."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from handlers import batch_ledger, thumbnails
from handlers.context import AppContext
from handlers.errors import InvalidEventError
from handlers.events import BlobCreated, Ignored, parse_event


class Plan(enum.Enum):
    PROCESS = "would process"
    IGNORE = "would be ignored"
    DONE = "already done"
    FAIL = "would fail"


@dataclass(frozen=True)
class Verdict:
    plan: Plan
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.plan.value} ({self.detail})" if self.detail else self.plan.value


def verdict(ctx: AppContext, function: str, event: dict[str, Any]) -> Verdict:
    """What handling ``event`` with ``function`` would come to, without writing anything."""
    try:
        parsed = parse_event(event, ctx.account)
    except InvalidEventError as exc:
        return Verdict(Plan.FAIL, str(exc))
    if isinstance(parsed, Ignored):
        return Verdict(Plan.IGNORE, parsed.reason)
    if function == "create_thumbnail":
        return _thumbnail(ctx, parsed)
    if function == "dispatch_batch_job":
        return _batch(ctx, parsed)
    return Verdict(Plan.PROCESS)


def _thumbnail(ctx: AppContext, event: BlobCreated) -> Verdict:
    container = ctx.settings.thumbnail_container
    made_from = thumbnails.made_from(
        ctx.blob_service, ctx.settings, event.container, event.blob_name
    )
    if made_from is None:
        return Verdict(Plan.PROCESS)
    if made_from == event.version:
        name = thumbnails.thumbnail_name(event.container, event.blob_name)
        return Verdict(Plan.DONE, f"thumbnail {container}/{name}")
    return Verdict(Plan.PROCESS, f"replaces thumbnail made from {made_from}")


def _batch(ctx: AppContext, event: BlobCreated) -> Verdict:
    if ctx.settings.batch.endpoint_uri is None:
        return Verdict(Plan.PROCESS, "BATCH_ENDPOINT_URI unset: the handler only logs the request")
    record = batch_ledger.find_record(ctx.blob_service, ctx.settings, event)
    if record is None:
        return Verdict(Plan.PROCESS)
    return Verdict(Plan.DONE, f"ledger {record.container}/{record.name}: {record.status}")
