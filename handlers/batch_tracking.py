"""Follow dispatched batch jobs to their end: what the ``track_batch_jobs`` timer runs.

Each run takes one page of the open-jobs index (handlers/batch_index.py), asks the endpoint
about each job over a few threads sharing the session and the token, writes each change into
the job's ledger record (``jobStatus``, ``jobStatusAt``, ``finishedAt`` when final) with the
eTag it read, and removes the marker of every job that is final. One line per change:
``track_batch_jobs blob=<container>/<name> job=<name> outcome=job-<status in lower case>``.

An ``unknown`` record is looked up by its job name (handlers/batch_unknown.py). A 404 means
a deleted job only once the endpoint has answered for a job it has; see ``status_of``.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.core.exceptions import ResourceModifiedError
from azure.storage.blob import BlobServiceClient, ContainerClient

from handlers import batch_endpoint, batch_index, batch_unknown
from handlers.batch_client import FINAL, JOB_NAME, NOT_FOUND, STATUSES, BatchJobClient
from handlers.batch_endpoint import EndpointFacts
from handlers.batch_index import OpenJob
from handlers.batch_ledger import (
    CLAIM_TIMEOUT,
    DISPATCHED,
    DISPATCHING,
    REJECTED,
    UNKNOWN,
    overwrite,
    read_ledger,
)
from handlers.batch_unknown import blob_of
from handlers.context import AppContext, get_context
from handlers.errors import (
    ConfigurationError,
    DispatchRejectedError,
    DispatchUnavailableError,
    StorageUnavailableError,
)
from handlers.settings import Settings

logger = logging.getLogger(__name__)

FUNCTION = "track_batch_jobs"
_LEVELS = {"Failed": logging.ERROR, "Canceled": logging.WARNING, NOT_FOUND: logging.WARNING}
_WRITE_ATTEMPTS = 3


@dataclass(frozen=True)
class TrackLimits:
    """How much one run may do: a page of open jobs, a few threads, and a time budget well
    inside host.json's functionTimeout (5 minutes); what is left waits for the next run."""

    page: int = 500
    workers: int = 8
    seconds: float = 120.0


@dataclass
class TrackReport:
    """What one run did, by what happened to each open job it looked at."""

    listed: int = 0
    listings: int = 0
    more: bool = False
    outcomes: Counter[str] = field(default_factory=Counter)
    stopped: str | None = None
    first_problem: str | None = None

    @property
    def asked(self) -> int:
        asked = ("unchanged", "changed", "final", "left-open", "resolved", "redispatched")
        return sum(self.outcomes[k] for k in asked)


def track(
    ctx: AppContext | None = None, limits: TrackLimits | None = None, *, past_due: bool = False
) -> TrackReport:
    """One run as the timer makes it: settings and clients from the process context.

    ``past_due`` (the host missed a tick, e.g. while the app was stopped) changes nothing:
    the run looks at what is open now.
    """
    if past_due:
        logger.info("%s: this run is past due; it tracks what is open now", FUNCTION)
    try:
        context = ctx if ctx is not None else get_context()
        settings = context.settings
        if settings.batch.dry_run:
            logger.info(
                "%s outcome=dry-run BATCH_ENDPOINT_URI is not set; no job is tracked", FUNCTION
            )
            return TrackReport()
        client = context.batch_client
        assert client is not None
        return track_batch_jobs(
            context.blob_service,
            settings,
            client,
            limits=limits,
            stale_after=context.claim_wait.stale_after,
        )
    except ConfigurationError as exc:
        logger.error("%s outcome=failed reason=ConfigurationError: %s", FUNCTION, exc)
        return TrackReport(stopped=str(exc))
    except StorageUnavailableError as exc:
        logger.warning(
            "%s outcome=retry reason=StorageUnavailableError: %s; the next run tries again",
            FUNCTION,
            exc,
        )
        return TrackReport(stopped=str(exc))


def track_batch_jobs(
    service: BlobServiceClient,
    settings: Settings,
    client: BatchJobClient,
    *,
    limits: TrackLimits | None = None,
    clock: Callable[[], float] = time.monotonic,
    stale_after: timedelta = CLAIM_TIMEOUT,
) -> TrackReport:
    """Look at one page of open jobs; raises ConfigurationError only for storage access.

    ``stale_after``: a claim older than this is taken for dead, as the claim protocol does.

    401/403 from the endpoint stop the run with one ERROR line; 429/5xx/no answer leave the
    job open for the next run, like a time budget that runs out.
    """
    limits = limits or TrackLimits()
    container = service.get_container_client(settings.ledger_container)
    page = batch_index.open_jobs_page(container, limits.page)
    report = TrackReport(listed=len(page.jobs), listings=page.listings, more=page.more)
    if page.jobs:
        run = _Run(
            container,
            client,
            report,
            deadline=clock() + limits.seconds,
            clock=clock,
            stale_after=stale_after,
        )
        jobs = list(page.jobs)
        random.shuffle(jobs)  # a run cut short by its budget leaves different jobs each time
        try:
            with ThreadPoolExecutor(max_workers=limits.workers) as pool:
                for outcome in pool.map(run.one, jobs):
                    report.outcomes[outcome] += 1
        finally:
            run.flush()
    level = logging.WARNING if report.stopped or report.first_problem else logging.INFO
    if not report.listed:
        level = logging.DEBUG  # an idle run every few minutes is not news
    logger.log(
        level,
        "%s run: listed=%s%s asked=%s %s%s",
        FUNCTION,
        report.listed,
        " (more pages)" if report.more else "",
        report.asked,
        " ".join(f"{key}={value}" for key, value in sorted(report.outcomes.items())),
        f"; first problem: {report.first_problem}" if report.first_problem else "",
    )
    return report


class _Run:
    """One run's shared state: the deadline, the stop flag, the first problem seen."""

    def __init__(
        self,
        container: ContainerClient,
        client: BatchJobClient,
        report: TrackReport,
        *,
        deadline: float,
        clock: Callable[[], float],
        stale_after: timedelta,
    ) -> None:
        self.stale_after = stale_after
        self.container = container
        self.client = client
        self.deadline = deadline
        self.report = report
        self.clock = clock
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.lines: list[tuple[int, str, tuple[Any, ...]]] = []
        self.answered = threading.Event()  # the endpoint answered for a job it has
        self._facts: EndpointFacts | None = None
        self._facts_read = False

    def say(self, level: int, message: str, *args: Any) -> None:
        """Keep a log line for the invocation's own thread to write (see ``flush``)."""
        with self.lock:
            self.lines.append((level, message, args))

    def flush(self) -> None:
        """Write the lines the pool's threads kept. The Python worker ties a log record to its
        invocation only on the invocation's own thread (or a thread it started for it); a
        line logged from our own pool reaches the host without an invocation id and is
        dropped there, so it would never reach Application Insights, nor the alert that
        reads ``outcome=job-failed`` from it."""
        with self.lock:
            lines, self.lines = self.lines, []
        for level, message, args in lines:
            logger.log(level, message, *args)

    def one(self, job: OpenJob) -> str:
        """Look at one open job; return what came of it (a report key)."""
        if self.stop.is_set() or self.clock() >= self.deadline:
            return "not-asked"
        try:
            return self._one(job)
        except ConfigurationError as exc:
            with self.lock:
                first = not self.stop.is_set()
                self.stop.set()
                self.report.stopped = str(exc)
            if first:
                self.say(
                    logging.ERROR, "%s outcome=failed reason=ConfigurationError: %s", FUNCTION, exc
                )
            return "not-asked"
        except (DispatchUnavailableError, DispatchRejectedError, StorageUnavailableError) as exc:
            with self.lock:
                self.report.first_problem = self.report.first_problem or f"{job.record}: {exc}"
            return "left-open"

    def _one(self, job: OpenJob) -> str:
        if job.status in FINAL:
            batch_index.close(self.container, job)  # final before, marker not removed then
            return "closed"
        if job.job_name is None:
            found = self._from_record(job)
            if isinstance(found, str):
                return found
            job = found
        status = self.status_of(job.job_name or "")
        if status == job.status:
            return "unchanged"
        return self._record(job, status)

    def status_of(self, name: str) -> str:
        """The job's status; NOT_FOUND only once the endpoint has answered in this run for a
        job it has, or does now for one a dispatch noted (batch_endpoint). When every job
        answers 404 the URI's path is wrong: ConfigurationError stops the run, logged once,
        and closes nothing."""
        status = self.client.job_status(name)
        if status != NOT_FOUND:
            self.answered.set()
            return status
        if self.answered.is_set():
            return status
        facts = self.facts()
        known = [job for job in (facts.known_jobs if facts else ()) if job != name]
        for other in known:
            if self.client.job_status(other) != NOT_FOUND:
                self.answered.set()
                return status
        if not known:
            # Nothing else to ask: a deleted job and a wrong path look the same. The job
            # stays open (the run's summary line says why) until another job answers.
            raise DispatchUnavailableError(
                f"job {name} answered 404, and no other job is known to tell a deleted job "
                "from a wrong BATCH_ENDPOINT_URI path; it stays open until one answers"
            )
        raise ConfigurationError(
            "BATCH_ENDPOINT_URI",
            f"the endpoint answered 404 for job {name} and for {', '.join(known)}, which it "
            "started; the URI's path is probably wrong, so no job was closed",
        )

    def facts(self) -> EndpointFacts | None:
        """What dispatches noted of the endpoint, read once per run."""
        with self.lock:
            if not self._facts_read:
                self._facts = batch_endpoint.recall(self.container)
                self._facts_read = True
            return self._facts

    def _from_record(self, job: OpenJob) -> OpenJob | str:
        """Read the record of a marker the tracker has not seen yet; note its job on it."""
        ledger = self.container.get_blob_client(job.record)
        found = read_ledger(ledger)
        if found is None:  # the claim was released (or an operator deleted the record)
            batch_index.close(self.container, job)
            return "closed"
        record, etag = found
        status = record.get("status")
        if status == DISPATCHING:
            return batch_unknown.expire_stale(self, job, record, etag, self.stale_after)
        if status == UNKNOWN:
            return batch_unknown.resolve(self, job, record, etag)
        if status == REJECTED:
            batch_index.close(self.container, job)
            return "closed"
        job_name = record.get("jobName")
        if status != DISPATCHED or not isinstance(job_name, str):
            return self._unreadable(job, "no status or job name a tracker understands")
        if not JOB_NAME.match(job_name):
            self.say(
                logging.ERROR,
                "%s blob=%s job=%s outcome=untrackable the endpoint returned no usable job "
                "name; nothing to ask about",
                FUNCTION,
                blob_of(record),
                job_name,
            )
            batch_index.close(self.container, job)
            return "closed"
        known = record.get("jobStatus")
        known = known if isinstance(known, str) else None
        if known in FINAL:
            batch_index.close(self.container, job)
            return "closed"
        return batch_index.note(self.container, job, job_name, known)

    def _record(self, job: OpenJob, status: str) -> str:
        """Write ``status`` into the job's record with the eTag read, re-reading on a
        conflict; log the change once, whichever overlapping run wins."""
        ledger = self.container.get_blob_client(job.record)
        for _ in range(_WRITE_ATTEMPTS):
            found = read_ledger(ledger)
            if found is None:
                batch_index.close(self.container, job)
                return "closed"
            record, etag = found
            if record.get("status") != DISPATCHED or record.get("jobName") != job.job_name:
                if isinstance(record.get("status"), str):
                    # Resubmitted (or being) since the marker was noted: start afresh.
                    batch_index.mark_open(self.container, job.record)
                    return "pending"
                return self._unreadable(job, "no status")
            known = record.get("jobStatus")
            if known in FINAL or known == status:
                # Another run got there first: it logged the change.
                self.settle(job, str(known))
                return "unchanged"
            now = datetime.now(UTC).isoformat(timespec="milliseconds")
            changes: dict[str, Any] = {"jobStatus": status, "jobStatusAt": now}
            if status in FINAL:
                changes["finishedAt"] = now
            try:
                overwrite(ledger, record | changes, etag)
            except ResourceModifiedError:
                continue
            self._log_change(record, status)
            self.settle(job, status)
            return "final" if status in FINAL else "changed"
        return "left-open"  # kept changing under us; the next run tries again

    def settle(self, job: OpenJob, status: str) -> None:
        if status in FINAL:
            batch_index.close(self.container, job)
        else:
            batch_index.note(self.container, job, job.job_name or "", status)

    def _log_change(self, record: dict[str, Any], status: str) -> None:
        level = _LEVELS.get(status, logging.INFO)
        if status not in STATUSES and status != NOT_FOUND:
            level = logging.WARNING  # not a status Azure ML documents: kept as it came, not final
        self.say(
            level,
            "%s blob=%s job=%s outcome=job-%s",
            FUNCTION,
            blob_of(record),
            record.get("jobName"),
            status.lower(),
        )

    def _unreadable(self, job: OpenJob, why: str) -> str:
        self.say(
            logging.ERROR,
            "%s record=%s/%s outcome=skipped the ledger record cannot be read (%s); it is left "
            "as it is, and its marker stays until the record is fixed or deleted",
            FUNCTION,
            self.container.container_name,
            job.record,
            why,
        )
        return "unreadable"
