"""What a backfill would do with one event, found by reading only: the handlers' own
decisions (the ledger's rule, the thumbnail's recorded source version, the checks the event
alone answers), asked without doing the work. What only the work could tell (whether the
bytes decode) is reported as not checked."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from handlers import batch_ledger, thumbnails
from handlers.context import AppContext
from handlers.errors import InvalidBlobError, InvalidEventError
from handlers.events import BlobCreated, Ignored, parse_event

CONTENT_NOT_CHECKED = "content not checked"


class Plan(enum.Enum):
    PROCESS = "would process"
    IGNORE = "would be ignored"
    DONE = "already done"
    STALE = "stale"  # made from this version, under other settings: a real run redoes it
    FAIL = "would fail"
    NOT_FINAL = "would stay to do"  # the handler's outcome would depend on a setting


@dataclass(frozen=True)
class Verdict:
    plan: Plan
    detail: str = ""
    content_checked: bool = True  # False: the real run may still fail on the bytes

    def __str__(self) -> str:
        notes = [] if self.content_checked else [CONTENT_NOT_CHECKED]
        notes += [self.detail] if self.detail else []
        return f"{self.plan.value} ({'; '.join(notes)})" if notes else self.plan.value


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
    try:
        thumbnails.check_event(event, ctx.settings)
    except InvalidBlobError as exc:
        return Verdict(Plan.FAIL, str(exc))
    made_from = thumbnails.made_from(
        ctx.blob_service, ctx.settings, event.container, event.blob_name
    )
    if made_from is None:
        return Verdict(Plan.PROCESS, content_checked=False)
    if made_from == event.version:
        stale = thumbnails.stale_renditions(
            ctx.blob_service, ctx.settings, event.container, event.blob_name, event.version
        )
        if stale:
            shown = ", ".join(f"{ctx.settings.thumbnail_container}/{name}" for name in stale)
            return Verdict(
                Plan.STALE,
                f"made from this version under other settings or missing: {shown}",
                content_checked=False,
            )
        name = thumbnails.thumbnail_name(event.container, event.blob_name)
        return Verdict(Plan.DONE, f"thumbnail {ctx.settings.thumbnail_container}/{name}")
    return Verdict(Plan.PROCESS, f"replaces thumbnail made from {made_from}", content_checked=False)


def _batch(ctx: AppContext, event: BlobCreated) -> Verdict:
    # The same order as the handler: a version the ledger settled is done whatever the
    # settings say; only the rest depends on BATCH_ENDPOINT_URI.
    record = batch_ledger.find_record(ctx.blob_service, ctx.settings, event)
    where = "" if record is None else f"ledger {record.container}/{record.name}: {record.status}"
    if record is not None and batch_ledger.settles(record.status):
        return Verdict(Plan.DONE, where)
    if ctx.settings.batch.dry_run:
        return Verdict(
            Plan.NOT_FINAL,
            "BATCH_ENDPOINT_URI is not set: the handler would only log the request",
        )
    return Verdict(Plan.PROCESS, where and f"{where}, a delivery holds the claim")
