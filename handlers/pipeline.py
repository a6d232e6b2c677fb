"""One event in, one outcome line out: the path every delivery takes.

The function triggers, the local event source and the ops commands all call ``handle``, so
they parse, filter, log and classify failures the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from handlers import batch_jobs, thumbnails
from handlers.context import AppContext, get_context
from handlers.errors import ConfigurationError, PermanentError, TransientError
from handlers.events import BlobCreated, Ignored, parse_event
from handlers.outcomes import Outcome

logger = logging.getLogger(__name__)

Work = Callable[[BlobCreated, AppContext], Outcome]


def _thumbnail(event: BlobCreated, ctx: AppContext) -> Outcome:
    return thumbnails.create_thumbnail(event, ctx.blob_service, ctx.settings, ctx.decode_budget)


def _batch(event: BlobCreated, ctx: AppContext) -> Outcome:
    return batch_jobs.dispatch_batch_job(
        event, ctx.blob_service, ctx.settings, ctx.batch_client, wait=ctx.claim_wait
    )


# The function names are a contract: infra/event-subscriptions.json routes to them.
HANDLERS: dict[str, Work] = {
    "create_thumbnail": _thumbnail,
    "dispatch_batch_job": _batch,
}


def handle(function_name: str, raw: object, ctx: AppContext | None = None) -> Outcome:
    """Process one event for ``function_name`` and log one line with its outcome.

    Permanent failures are logged and returned as ``failed``; transient and configuration
    failures are logged and re-raised so that Event Grid retries the event.
    """
    work = HANDLERS[function_name]
    event_id = _event_id(raw)
    where = "?"
    try:
        context = ctx if ctx is not None else get_context()
        parsed = parse_event(raw, context.account)
        if isinstance(parsed, Ignored):
            outcome = Outcome("ignored", parsed.reason)
        else:
            where = f"{parsed.container}/{parsed.blob_name}"
            if parsed.container in context.settings.output_containers:
                outcome = Outcome(
                    "ignored", f"{parsed.container} is one of this app's output containers"
                )
            else:
                outcome = work(parsed, context)
    except PermanentError as exc:
        logger.error(
            "%s event=%s blob=%s outcome=failed reason=%s", function_name, event_id, where, exc
        )
        return Outcome("failed", str(exc))
    except (TransientError, ConfigurationError) as exc:
        logger.warning(
            "%s event=%s blob=%s outcome=retry reason=%s: %s",
            function_name,
            event_id,
            where,
            type(exc).__name__,
            exc,
        )
        raise
    except Exception:
        logger.exception(
            "%s event=%s blob=%s outcome=retry reason=unexpected error",
            function_name,
            event_id,
            where,
        )
        raise
    # A refusal reads like a failure's line (reason=...), but at INFO: nothing went wrong.
    logger.info(
        "%s event=%s blob=%s outcome=%s %s%s",
        function_name,
        event_id,
        where,
        outcome.status,
        "reason=" if outcome.status == "ignored" else "",
        outcome.detail,
    )
    return outcome


def _event_id(raw: object) -> str:
    if isinstance(raw, Mapping):
        value: Any = raw.get("id")
        if isinstance(value, str):
            return value[:100]
    return "?"
