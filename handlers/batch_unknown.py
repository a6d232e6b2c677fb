"""An ``unknown`` dispatch settled by the job name it asked for (see batch_tracking).

The POST's answer was lost, so whether the job exists is not known. Where the endpoint keeps
the names we ask for, a GET of that name tells: found, the record becomes the dispatched job;
not found, the claim is posted again under the same name, which a late first POST cannot
turn into a second job, since a job name is used once per workspace.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from azure.core.exceptions import ResourceModifiedError
from azure.storage.blob import ContainerClient

from handlers import batch_index
from handlers.batch_client import FINAL, NOT_FOUND, BatchJobClient
from handlers.batch_endpoint import EndpointFacts
from handlers.batch_index import OpenJob
from handlers.batch_jobs import post_claimed
from handlers.batch_ledger import DISPATCHED, expire, expired, overwrite, read_ledger, reclaim
from handlers.errors import DispatchRejectedError, OutcomeUnknownError, TransientError

logger = logging.getLogger(__name__)

FUNCTION = "track_batch_jobs"


class Run(Protocol):
    """What of a tracking run the lookup uses."""

    container: ContainerClient
    client: BatchJobClient

    def say(self, level: int, message: str, *args: Any) -> None: ...
    def facts(self) -> EndpointFacts | None: ...
    def status_of(self, name: str) -> str: ...
    def settle(self, job: OpenJob, status: str) -> None: ...


def expire_stale(
    run: Run, job: OpenJob, record: dict[str, Any], etag: str, stale_after: timedelta
) -> str:
    """A claim still ``dispatching``: left alone while its delivery may be posting, recorded
    as unknown once it outlived the function timeout; then looked up by name on the next
    run where that can work, else left for a person."""
    if not expired(record, stale_after):
        return "pending"  # being posted right now
    ledger = run.container.get_blob_client(job.record)
    try:
        reason = expire(ledger, record, etag)
    except ResourceModifiedError:
        return "pending"
    facts = run.facts()
    if (
        isinstance(record.get("jobRequested"), str)
        and facts is not None
        and facts.keeps_names(run.client.endpoint_uri)
    ):
        run.say(
            logging.WARNING,
            "%s blob=%s outcome=unknown %s; the next run looks the job up by name",
            FUNCTION,
            blob_of(record),
            reason,
        )
        return "pending"
    run.say(
        logging.ERROR,
        "%s blob=%s outcome=unknown %s; check the endpoint's jobs, then delete ledger "
        "blob %s/%s to dispatch again",
        FUNCTION,
        blob_of(record),
        reason,
        run.container.container_name,
        job.record,
    )
    batch_index.close(run.container, job)
    return "closed"


def resolve(run: Run, job: OpenJob, record: dict[str, Any], etag: str) -> str:
    """Settle an unknown record by the job name it asked for, where the endpoint keeps
    our names; otherwise leave it for a person, as the dispatch's log line said."""
    name = record.get("jobRequested")
    facts = run.facts()
    if not isinstance(name, str) or facts is None or not facts.keeps_names(run.client.endpoint_uri):
        batch_index.close(run.container, job)
        return "closed"
    status = run.status_of(name)
    now = datetime.now(UTC).isoformat(timespec="milliseconds")
    if status != NOT_FOUND:
        why = "whether the POST had created it was unknown"
        return _found(run, job, record, etag, name=name, status=status, why=why)
    entry = {"jobRequested": name, "unknown": record.get("reason"), "notFoundAt": now}
    try:
        held = reclaim(
            run.container,
            job.record,
            record,
            etag,
            entry,
            job={"requestId": str(uuid.uuid4())},
        )
    except ResourceModifiedError:
        return "pending"
    try:
        outcome = post_claimed(held, run.client, time.sleep)
    except DispatchRejectedError as exc:
        if exc.status_code == 409:  # the name is taken: the first POST landed after all
            return _taken(run, job, name)
        return _failed_again(run, record, name, exc)
    except (OutcomeUnknownError, TransientError) as exc:
        return _failed_again(run, record, name, exc)
    run.say(
        logging.WARNING,
        "%s blob=%s job=%s outcome=redispatched the endpoint has no job of that name, so "
        "the POST whose answer was lost never created it: %s",
        FUNCTION,
        blob_of(record),
        name,
        outcome.detail,
    )
    return "redispatched"


def _found(
    run: Run, job: OpenJob, record: dict[str, Any], etag: str, *, name: str, status: str, why: str
) -> str:
    """Record that the job ``name`` exists after all, with ``status``."""
    now = datetime.now(UTC).isoformat(timespec="milliseconds")
    changes: dict[str, Any] = {
        "status": DISPATCHED,
        "jobName": name,
        "dispatchedAt": record.get("claimedAt"),
        "resolvedAt": now,
        "jobStatus": status,
        "jobStatusAt": now,
    }
    if status in FINAL:
        changes["finishedAt"] = now
    ledger = run.container.get_blob_client(job.record)
    try:
        overwrite(ledger, record | changes, etag)
    except ResourceModifiedError:
        return "pending"
    run.say(
        logging.INFO,
        "%s blob=%s job=%s outcome=resolved the job exists (status %s); %s",
        FUNCTION,
        blob_of(record),
        name,
        status,
        why,
    )
    run.settle(replace(job, job_name=name), status)
    return "resolved"


def _taken(run: Run, job: OpenJob, name: str) -> str:
    """The second POST was refused because a job of its name exists: the first one created
    it after the lookup. Its rejection is replaced by that job."""
    found = read_ledger(run.container.get_blob_client(job.record))
    status = run.status_of(name)
    if found is None or status == NOT_FOUND:
        return "left-open"
    record, etag = found
    why = "the first POST created it after the lookup; the second was refused for its name"
    return _found(run, job, record, etag, name=name, status=status, why=why)


def _failed_again(run: Run, record: dict[str, Any], name: str, exc: Exception) -> str:
    run.say(
        logging.ERROR,
        "%s blob=%s job=%s outcome=failed the endpoint has no such job, so it was posted "
        "again, and that failed: %s",
        FUNCTION,
        blob_of(record),
        name,
        exc,
    )
    return "left-open"


def blob_of(record: dict[str, Any]) -> str:
    return f"{record.get('container')}/{record.get('blob')}"
