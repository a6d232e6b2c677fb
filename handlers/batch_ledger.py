"""The dispatch ledger: one record per blob version, claimed before its job is posted.

A ledger blob per blob version (``<container>/<sha256 of name>/<etag>.json`` in
DISPATCH_LEDGER_CONTAINER) is created with a create-only request right before the job is
posted: that claim is what makes repeated and concurrent deliveries start one job. The claim
becomes ``dispatched`` (with the job name) or ``rejected`` (a 4xx), or is released when the
endpoint failed in a way a retry can fix. When the outcome cannot be known, the version is
recorded as ``unknown`` and never posted again on its own, because posting twice would start
a second job: the endpoint took the request but no answer came back, or a claim outlived the
function timeout (its delivery died somewhere between claiming and recording).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.storage.blob import BlobClient, BlobServiceClient, ContainerClient, ContentSettings

from handlers import batch_index
from handlers.errors import DispatchInProgressError, OutcomeUnknownError, StorageUnavailableError
from handlers.events import BlobCreated
from handlers.outcomes import Outcome
from handlers.settings import Settings
from handlers.storage import storage_errors, with_container

logger = logging.getLogger(__name__)

DISPATCHING, DISPATCHED, REJECTED, UNKNOWN = "dispatching", "dispatched", "rejected", "unknown"
# A claim older than this outlived host.json's functionTimeout (5 minutes): its delivery died
# between claiming and recording, and may or may not have posted.
CLAIM_TIMEOUT = timedelta(minutes=6)
# After a job was posted, recording it is retried this many times before giving up.
_RECORD_ATTEMPTS = 3


@dataclass(frozen=True)
class ClaimWait:
    """How long a duplicate delivery waits for the delivery that holds the claim, and how old
    a claim must be before its holder is taken for dead."""

    seconds: float = 10.0
    poll_seconds: float = 0.2
    stale_after: timedelta = CLAIM_TIMEOUT


@dataclass(frozen=True)
class LedgerRecord:
    """What the ledger says about one blob version, for tools that must not dispatch again."""

    container: str  # the ledger container
    name: str  # the record's blob name in it
    status: str | None  # dispatching, dispatched, rejected, unknown; None when unreadable
    job_name: str | None


def ledger_prefix(container: str, blob_name: str) -> str:
    """The prefix under which the records of every version of one blob live."""
    digest = hashlib.sha256(blob_name.encode("utf-8")).hexdigest()
    return f"{container}/{digest}/"


def ledger_name(event: BlobCreated) -> str:
    """The ledger blob name of the blob version ``event`` announces."""
    return f"{ledger_prefix(event.container, event.blob_name)}{event.version}.json"


def find_record(
    service: BlobServiceClient, settings: Settings, event: BlobCreated
) -> LedgerRecord | None:
    """The ledger record of the version ``event`` announces, or None when none was claimed.

    Reads only; a record exists from the moment a delivery claims the version.
    """
    name = ledger_name(event)
    found = read_ledger(service.get_blob_client(settings.ledger_container, name))
    if found is None:
        return None
    record, _ = found
    status, job_name = record.get("status"), record.get("jobName")
    return LedgerRecord(
        container=settings.ledger_container,
        name=name,
        status=status if isinstance(status, str) else None,
        job_name=job_name if isinstance(job_name, str) else None,
    )


def recorded_outcome(record: dict[str, Any], name: str) -> Outcome | None:
    """The outcome of a delivery that finds ``record`` (ledger blob ``name``) for its version:
    ``duplicate`` once the version is settled, None while it is still to do (no status yet,
    or a claim in progress). The one rule for the handler and the ops commands' checks."""
    status = record.get("status")
    if not settles(status):
        return None
    if status == DISPATCHED:
        return Outcome(
            "duplicate", f"job {record.get('jobName')} was already started for this version"
        )
    return Outcome("duplicate", f"this version was already {status}: see ledger {name}")


def settles(status: object) -> bool:
    """Whether a record with ``status`` settles its version: no delivery posts it again."""
    return status in (DISPATCHED, REJECTED, UNKNOWN)


def read_ledger(ledger: BlobClient) -> tuple[dict[str, Any], str] | None:
    """The ledger record and its eTag, or None when there is none."""
    try:
        with storage_errors("reading the dispatch ledger"):
            downloader = ledger.download_blob()
            data = downloader.readall()
    except ResourceNotFoundError:
        return None
    try:
        record = json.loads(data)
    except ValueError:
        record = {}
    if not isinstance(record, dict):
        record = {}
    return record, str(downloader.properties.etag)


@dataclass
class Claim:
    """This delivery's hold on one version's record; only the holder can change it.

    ``previous`` is the record a resubmission claimed over (None for a first dispatch):
    releasing puts it back instead of deleting the record.
    """

    container: ContainerClient
    ledger: BlobClient
    etag: str
    record: dict[str, Any]
    previous: dict[str, Any] | None = None
    marker_etag: str | None = None

    @property
    def where(self) -> str:
        """``<ledger container>/<record name>``, for messages that tell an operator."""
        return f"{self.ledger.container_name}/{self.ledger.blob_name}"

    def rejected(self, status_code: int, body: str) -> None:
        self._replace({"status": REJECTED, "statusCode": status_code, "response": body})

    def unknown(self, reason: str) -> None:
        self._replace({"status": UNKNOWN, "reason": reason})

    def dispatched(self, job_name: str, sleep: Callable[[float], None]) -> str | None:
        """Record the posted job, retrying storage briefly; return the problem if it never
        worked (the job exists all the same)."""
        done = {"status": DISPATCHED, "jobName": job_name, "dispatchedAt": _now()}
        problem = "no attempt made"
        for attempt in range(1, _RECORD_ATTEMPTS + 1):
            try:
                self._replace(done)
            except StorageUnavailableError as exc:
                problem = str(exc)
            except ResourceModifiedError:
                return "the claim was changed by another delivery"
            else:
                return None
            if attempt < _RECORD_ATTEMPTS:
                sleep(float(attempt))
        return problem

    def mark_open(self) -> None:
        """Add the job to the open-jobs index before it is posted, so that no job can exist
        without the tracker knowing of it; raises StorageUnavailableError."""
        self.marker_etag = batch_index.mark_open(self.container, self.ledger.blob_name)

    def release(self) -> None:
        """Give the claim back so that Event Grid's retry (or the operator's next
        resubmission) can dispatch; the marker goes too, unless someone reset it."""
        try:
            if self.previous is None:
                self.ledger.delete_blob(
                    etag=self.etag, match_condition=MatchConditions.IfNotModified
                )
            else:
                _overwrite(self.ledger, self.previous, self.etag)
            if self.marker_etag is not None:
                marker = batch_index.marker_name(self.ledger.blob_name)
                self.container.get_blob_client(marker).delete_blob(
                    etag=self.marker_etag, match_condition=MatchConditions.IfNotModified
                )
        except AzureError as exc:
            logger.warning(
                "could not release claim %s (%s); it expires after %s",
                self.ledger.blob_name,
                exc,
                CLAIM_TIMEOUT,
            )

    def _replace(self, changes: dict[str, Any]) -> None:
        with storage_errors("recording the dispatch"):
            _overwrite(self.ledger, self.record | changes, self.etag)


def claim(
    container: ContainerClient,
    event: BlobCreated,
    blob_url: str,
    *,
    wait: ClaimWait,
    sleep: Callable[[float], None],
    job: dict[str, Any] | None = None,
) -> Claim | Outcome:
    """Create the version's ledger record (our claim), or return the outcome of a duplicate.

    ``job``: what the claim will post (batch_jobs.job_fields), recorded with it.

    Raises DispatchInProgressError while another delivery holds a fresh claim, and
    OutcomeUnknownError for a stale one (after recording it as unknown).
    """
    ledger = container.get_blob_client(ledger_name(event))
    record = {
        "status": DISPATCHING,
        "eventId": event.event_id,
        "container": event.container,
        "blob": event.blob_name,
        "url": blob_url,
        "eTag": event.version,
        "claimedAt": _now(),
        **(job or {}),
    }
    deadline = time.monotonic() + wait.seconds
    while True:
        try:
            with storage_errors("claiming the dispatch"):
                result = with_container(container, lambda: _create(ledger, record))
            return Claim(container, ledger, str(result["etag"]), record)
        except ResourceExistsError:
            pass
        existing = read_ledger(ledger)
        if existing is None:
            continue  # released between our create and read: try again
        found, etag = existing
        done = recorded_outcome(found, ledger.blob_name)
        if done is not None:
            return done
        if expired(found, wait.stale_after):
            try:
                reason = expire(ledger, found, etag)
            except ResourceModifiedError:
                continue
            raise OutcomeUnknownError(
                reason, ledger_blob=f"{container.container_name}/{ledger.blob_name}"
            )
        if time.monotonic() >= deadline:
            raise DispatchInProgressError(
                f"another delivery has been dispatching this version since {found.get('claimedAt')}"
            )
        sleep(wait.poll_seconds)


def reclaim(
    container: ContainerClient,
    name: str,
    found: dict[str, Any],
    etag: str,
    entry: dict[str, Any],
    *,
    job: dict[str, Any] | None = None,
) -> Claim:
    """Claim a finished version again (an operator's resubmission, or the tracker's second
    try of a job never created), over the record read with ``etag``: ``entry`` (the job
    given up on) joins the record's ``history``; ``job`` replaces what will be posted.

    Raises ResourceModifiedError when another operator changed the record first.
    """
    history = found.get("history")
    record = {
        key: value
        for key, value in found.items()
        if key
        not in ("jobName", "jobStatus", "jobStatusAt", "finishedAt", "dispatchedAt", "reason")
    }
    record |= (job or {}) | {
        "status": DISPATCHING,
        "claimedAt": _now(),
        "history": [*(history if isinstance(history, list) else []), entry],
    }
    ledger = container.get_blob_client(name)
    with storage_errors("claiming the version again"):
        result = _overwrite(ledger, record, etag)
    return Claim(container, ledger, str(result["etag"]), record, previous=found)


def expired(record: dict[str, Any], stale_after: timedelta = CLAIM_TIMEOUT) -> bool:
    """A claim older than ``stale_after`` (by default, one that outlived the function
    timeout): its delivery is gone."""
    try:
        claimed = datetime.fromisoformat(str(record.get("claimedAt")))
    except ValueError:
        return True
    return datetime.now(UTC) - claimed > stale_after


def expire(ledger: BlobClient, found: dict[str, Any], etag: str) -> str:
    """Record a stale claim as unknown (with the eTag it was read with); return why.

    Raises ResourceModifiedError when it changed meanwhile.
    """
    reason = (
        f"a delivery claimed this version at {found.get('claimedAt')} and never "
        "recorded the outcome; the job may exist"
    )
    with storage_errors("recording a stale claim as unknown"):
        _overwrite(ledger, found | {"status": UNKNOWN, "reason": reason}, etag)
    return reason


def _create(ledger: BlobClient, record: dict[str, Any]) -> dict[str, Any]:
    return ledger.upload_blob(
        json.dumps(record),
        overwrite=False,
        content_settings=ContentSettings(content_type="application/json"),
    )


def overwrite(ledger: BlobClient, record: dict[str, Any], etag: str) -> str:
    """Replace the record read with ``etag``; return the new eTag. Raises
    ResourceModifiedError when it changed meanwhile, StorageUnavailableError."""
    with storage_errors("updating the dispatch ledger"):
        return str(_overwrite(ledger, record, etag)["etag"])


def _overwrite(ledger: BlobClient, record: dict[str, Any], etag: str) -> dict[str, Any]:
    return ledger.upload_blob(
        json.dumps(record),
        overwrite=True,
        etag=etag,
        match_condition=MatchConditions.IfNotModified,
        content_settings=ContentSettings(content_type="application/json"),
    )


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")
