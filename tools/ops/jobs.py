"""``python -m tools.ops jobs``: the batch jobs the ledger knows, their latest status, one
tracking pass on demand, and resubmission of the ones that ended badly.

Listing reads every ledger record (``--open``: only those the open-jobs index names); it is
an operator's command, so its cost may grow with history, unlike the timer's. Resubmission
claims each Failed/Canceled/NotFound record again with the eTag it was read with, so two
operators running it at once start one new job per record; the job given up on goes into
the record's ``history``.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TextIO

from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError

from handlers import batch_index
from handlers.batch_client import BatchJobClient
from handlers.batch_jobs import post_claimed, resubmission
from handlers.batch_ledger import DISPATCHED, read_ledger, reclaim
from handlers.batch_tracking import track
from handlers.context import AppContext
from handlers.errors import (
    ConfigurationError,
    DispatchRejectedError,
    OutcomeUnknownError,
    TransientError,
)
from tools.ops.progress import EXIT_OK, EXIT_TRANSIENT, EXIT_USAGE

ENDED_BADLY = frozenset({"Failed", "Canceled", "NotFound"})
_READERS = 8


@dataclass(frozen=True)
class JobsOptions:
    statuses: frozenset[str]  # lower case; empty means every status
    since: datetime | None
    open_only: bool = False
    refresh: bool = False
    resubmit_failed: bool = False
    dry_run: bool = False


@dataclass(frozen=True)
class Row:
    """One ledger record as the listing shows it, with the eTag it was read with:
    resubmission claims the record only while it is unchanged."""

    record: str  # the record's blob name in the ledger
    content: dict[str, Any]
    etag: str

    @property
    def blob(self) -> str:
        return f"{self.content.get('container')}/{self.content.get('blob')}"

    @property
    def job(self) -> str:
        return str(self.content.get("jobName") or "-")

    @property
    def output(self) -> str | None:
        output = self.content.get("output")
        return output if isinstance(output, str) else None

    @property
    def dispatched(self) -> str:
        return str(self.content.get("dispatchedAt") or self.content.get("claimedAt") or "-")

    @property
    def status(self) -> str:
        """The job's latest status; before the tracker saw one, what the dispatch came to."""
        job_status = self.content.get("jobStatus")
        if isinstance(job_status, str):
            return job_status
        status = self.content.get("status")
        if status == DISPATCHED:
            return "dispatched (not yet tracked)"
        return str(status) if isinstance(status, str) else "(unreadable record)"


def run_jobs(ctx: AppContext, options: JobsOptions, out: TextIO, err: TextIO) -> int:
    """List (after one tracking pass with ``refresh``), or resubmit what ended badly."""
    needs_endpoint = options.refresh or (options.resubmit_failed and not options.dry_run)
    if needs_endpoint and ctx.settings.batch.dry_run:
        err.write("error: BATCH_ENDPOINT_URI is not set: no endpoint to ask or post to\n")
        return EXIT_USAGE
    code = EXIT_OK
    if options.refresh:
        report = track(ctx)
        err.write(
            f"tracking pass: looked at {report.listed} open jobs, asked {report.asked}, "
            f"{report.outcomes['changed'] + report.outcomes['final']} changed\n"
        )
        if report.stopped is not None:
            err.write(f"error: {report.stopped}\n")
            return EXIT_USAGE
        if report.first_problem is not None:
            err.write(f"some jobs stay open for now: {report.first_problem}\n")
            code = EXIT_TRANSIENT
    rows = [row for row in _rows(ctx, options.open_only) if _wanted(row, options)]
    rows.sort(key=lambda row: (row.dispatched, row.blob))
    if options.resubmit_failed:
        return max(code, _resubmit(ctx, rows, options.dry_run, out))
    _print(rows, out)
    return code


def _rows(ctx: AppContext, open_only: bool) -> list[Row]:
    container = ctx.blob_service.get_container_client(ctx.settings.ledger_container)
    names: Iterable[str]
    try:
        if open_only:
            names = [job.record for job in batch_index.all_open_jobs(container)]
        else:
            names = [
                blob.name
                for blob in container.list_blobs()
                if not batch_index.is_reserved(blob.name)  # markers and the cursor
            ]
    except ResourceNotFoundError:
        return []  # no ledger yet

    def read(name: str) -> Row | None:
        found = read_ledger(container.get_blob_client(name))
        return None if found is None else Row(name, *found)

    with ThreadPoolExecutor(max_workers=_READERS) as pool:
        return [row for row in pool.map(read, names) if row is not None]


def _wanted(row: Row, options: JobsOptions) -> bool:
    if options.resubmit_failed and row.status not in ENDED_BADLY:
        return False
    if options.statuses and row.status.split(" ")[0].lower() not in options.statuses:
        return False
    if options.since is not None:
        try:
            return datetime.fromisoformat(row.dispatched) >= options.since
        except ValueError:
            return False
    return True


def _print(rows: list[Row], out: TextIO) -> None:
    """One line per job; an ``output`` column when any job was sent one (BATCH_OUTPUT_URI)."""
    header: tuple[str, ...] = ("dispatched", "status", "job", "blob")
    lines: list[tuple[str, ...]] = [(row.dispatched, row.status, row.job, row.blob) for row in rows]
    if any(row.output for row in rows):
        header = (*header, "output")
        lines = [(*line, row.output or "-") for line, row in zip(lines, rows, strict=True)]
    table = [header, *lines]
    padded = len(header) - 1
    widths = [max(len(line[i]) for line in table) for i in range(padded)]
    for line in table if rows else []:
        out.write("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(line[:padded])))
        out.write(f"  {line[padded]}\n")
    counts = Counter(row.status for row in rows)
    summary = ", ".join(f"{status} {count}" for status, count in sorted(counts.items()))
    noun = "job" if len(rows) == 1 else "jobs"
    out.write(f"{len(rows)} {noun}{': ' + summary if summary else ''}\n")


def _resubmit(ctx: AppContext, rows: list[Row], dry_run: bool, out: TextIO) -> int:
    """Offer each version again through the claim protocol; one line per record."""
    container = ctx.blob_service.get_container_client(ctx.settings.ledger_container)
    tally: Counter[str] = Counter()
    code = EXIT_OK
    for row in rows:
        url = row.content.get("url")
        current = _current_version(ctx, row)
        if not isinstance(url, str) or current is not None:
            out.write(f"skipped {row.blob}: {current or 'the record has no blob url'}\n")
            tally["skipped"] += 1
            continue
        if dry_run:
            out.write(f"would resubmit {row.blob} (job {row.job} {row.status})\n")
            tally["would resubmit"] += 1
            continue
        entry: dict[str, Any] = {
            key: row.content[key]
            for key in ("jobName", "jobStatus", "dispatchedAt", "finishedAt")
            if key in row.content
        }
        try:
            # The marker first: if this process dies after taking the record back, the
            # tracker still finds the version, and records it as unknown once the claim is
            # stale, instead of it staying "dispatching" where nothing looks.
            batch_index.mark_open(container, row.record)
            history = row.content.get("history")
            attempt = 1 + (len(history) if isinstance(history, list) else 0)
            job = resubmission(ctx.settings.batch, row.content, attempt)
            held = reclaim(container, row.record, row.content, row.etag, entry, job=job)
        except ResourceModifiedError:
            out.write(f"skipped {row.blob}: changed meanwhile (resubmitted by someone else?)\n")
            tally["skipped"] += 1
            continue
        except TransientError as exc:
            out.write(f"retry {row.blob}: {exc} (the record is as it was; run again)\n")
            tally["retry"] += 1
            code = EXIT_TRANSIENT
            continue
        try:
            outcome = post_claimed(held, _client(ctx), time.sleep)
        except (DispatchRejectedError, OutcomeUnknownError) as exc:
            out.write(f"failed {row.blob}: {exc}\n")
            tally["failed"] += 1
            continue
        except ConfigurationError as exc:
            out.write(f"error {row.blob}: {exc} (the record is as it was)\n")
            return EXIT_USAGE
        except TransientError as exc:
            out.write(f"retry {row.blob}: {exc} (the record is as it was; run again)\n")
            tally["retry"] += 1
            code = EXIT_TRANSIENT
            continue
        out.write(f"resubmitted {row.blob}: {outcome.detail} (was {row.job} {row.status})\n")
        tally["resubmitted"] += 1
    summary = ", ".join(f"{key} {value}" for key, value in sorted(tally.items()))
    out.write(f"summary: {summary or 'nothing to do'}\n")
    return code


def _client(ctx: AppContext) -> BatchJobClient:
    client = ctx.batch_client
    assert client is not None  # run_jobs refused dry-run settings
    return client


def _current_version(ctx: AppContext, row: Row) -> str | None:
    """Why the recorded version is no longer the blob's (None when it still is): a job
    reads the blob's current content, which then belongs to another version's record."""
    container, blob = row.content.get("container"), row.content.get("blob")
    if not isinstance(container, str) or not isinstance(blob, str):
        return "the record names no blob"
    try:
        props = ctx.blob_service.get_blob_client(container, blob).get_blob_properties()
    except ResourceNotFoundError:
        return "the blob is gone"
    if str(props.etag).strip('"') != str(row.content.get("eTag", "")).strip('"'):
        return "the blob was overwritten since; its new version has its own record"
    return None
