"""The index of open batch jobs: one empty marker blob per job not yet known to be final.

The tracker lists these markers instead of the ledger, so what a run costs grows with the
jobs still open, not with every record ever written. Blob index tags would be the obvious
index, but accounts with a hierarchical namespace do not support them and Find Blobs by Tags
sees a tag only once the index has caught up (docs/batch-jobs.md, "Following jobs to the end").

Markers live in the ledger container under ``_open-jobs/``. A ledger record's name starts
with a container name, which never contains ``_``, so no record can ever fall under that
prefix; tools that list the ledger skip every name starting with ``_`` (``is_reserved``).
The marker's name is its record's name percent-encoded into one path segment, so that an
account with a hierarchical namespace never grows a directory per blob. Once the tracker has
read the record, the marker's metadata carries the job name and the last status seen, and
later runs ask the endpoint without reading the record again.

A cursor blob (``_open-jobs/!cursor``, first in listing order) remembers where the last run
stopped when the open jobs fill more than one page.
"""

from __future__ import annotations

import base64
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from urllib.parse import quote, unquote

from azure.core import MatchConditions
from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError
from azure.storage.blob import ContainerClient

from handlers.errors import StorageUnavailableError
from handlers.storage import storage_errors, with_container

logger = logging.getLogger(__name__)

OPEN_PREFIX = "_open-jobs/"
CURSOR = f"{OPEN_PREFIX}!cursor"  # "!" sorts before every percent-encoded record name
_JOB, _STATUS, _POSITION = "job", "status", "position"
# Statuses go into metadata (an HTTP header) only when they are plain words.
_WORD = re.compile(r"^[A-Za-z]{1,64}$")


def is_reserved(name: str) -> bool:
    """True for the ledger container's own bookkeeping blobs, which are not records."""
    return name.startswith("_")


def marker_name(record_name: str) -> str:
    """The marker of the ledger record ``record_name``."""
    return OPEN_PREFIX + quote(record_name, safe="")


@dataclass(frozen=True)
class OpenJob:
    """One marker as listed: its eTag, its record, and what the tracker noted on it."""

    marker: str
    etag: str
    record: str
    job_name: str | None = None
    status: str | None = None


def mark_open(container: ContainerClient, record_name: str) -> str:
    """Create (or reset) the marker of ``record_name``; return its eTag.

    Resetting clears the job and status noted on it, so the next run reads the record.
    """
    blob = container.get_blob_client(marker_name(record_name))
    with storage_errors("marking the job open"):
        result = with_container(container, lambda: blob.upload_blob(b"", overwrite=True))
    return str(result["etag"])


def noted(job_name: str, status: str | None) -> dict[str, str]:
    """The marker metadata that carries a job name and the last status seen."""
    metadata = {_JOB: job_name}
    if status is not None and _WORD.match(status):
        metadata[_STATUS] = status
    return metadata


def note(container: ContainerClient, job: OpenJob, job_name: str, status: str | None) -> OpenJob:
    """Write the job name and last status onto the marker, if it is still the one listed."""
    metadata = noted(job_name, status)
    blob = container.get_blob_client(job.marker)
    try:
        with storage_errors("noting the job on its marker"):
            result = blob.set_blob_metadata(
                metadata, etag=job.etag, match_condition=MatchConditions.IfNotModified
            )
    except (ResourceModifiedError, ResourceNotFoundError, StorageUnavailableError):
        # Changed or gone meanwhile: the next run reads the record again; this run still
        # asks about the job it just read.
        return replace(job, job_name=job_name, status=metadata.get(_STATUS))
    return OpenJob(job.marker, str(result["etag"]), job.record, job_name, metadata.get(_STATUS))


def close(container: ContainerClient, job: OpenJob) -> bool:
    """Remove the marker unless it changed since it was listed (a new dispatch of the same
    version resets it); True when it is gone."""
    blob = container.get_blob_client(job.marker)
    try:
        with storage_errors("removing the marker of a finished job"):
            blob.delete_blob(etag=job.etag, match_condition=MatchConditions.IfNotModified)
    except ResourceNotFoundError:
        return True
    except (ResourceModifiedError, StorageUnavailableError) as exc:
        logger.info("marker %s left in place: %s", job.marker, type(exc).__name__)
        return False
    return True


@dataclass
class Page:
    """The open jobs one run looks at, and how many listing calls finding them took."""

    jobs: list[OpenJob]
    listings: int
    more: bool  # further pages exist; the cursor says where the next run starts


def open_jobs_page(container: ContainerClient, size: int) -> Page:
    """One page of open jobs, starting where the previous run stopped.

    The first listing asks for one entry: the cursor (it sorts first) or the only open job.
    With no open jobs (or no ledger container yet) that is the one call a run makes; else a
    second listing takes the page from the cursor's position.
    """
    head, token, cursor = _list(container, 1, None)
    if token is None:
        return Page(head, 1, more=False)  # no jobs, or exactly one
    # From the start, the cursor blob (when the one entry was it) takes a place in the page.
    from_start = size if head else size + 1
    if cursor is None:
        page, following, _ = _list(container, from_start, None)
        listings = 2
    else:
        page, following, _ = _list(container, size, cursor, tolerant=True)
        listings = 2
        if not page:  # the cursor was past the last job: wrap around
            page, following, _ = _list(container, from_start, None)
            listings = 3
    if following is not None or cursor is not None:
        _save_cursor(container, following or "")
    return Page(page, listings, more=following is not None)


def all_open_jobs(container: ContainerClient) -> Iterator[OpenJob]:
    """Every marker (for the ops listing), page after page."""
    token: str | None = None
    while True:
        jobs, token, _ = _list(container, 5000, token)
        yield from jobs
        if token is None:
            return


def _list(
    container: ContainerClient, size: int, token: str | None, *, tolerant: bool = False
) -> tuple[list[OpenJob], str | None, str | None]:
    """One listing call: the markers, the continuation token, and the saved cursor.

    ``tolerant``: a failure (such as a position the service no longer accepts) counts as
    an empty page, so the caller starts again from the first one.
    """
    pages = container.list_blobs(
        name_starts_with=OPEN_PREFIX, include=["metadata"], results_per_page=size
    ).by_page(continuation_token=token)
    jobs: list[OpenJob] = []
    cursor = None
    try:
        with storage_errors("listing open jobs"):
            items = list(next(pages))
    except ResourceNotFoundError:
        return [], None, None  # no ledger container: nothing was ever dispatched
    except StopIteration:
        items = []
    except StorageUnavailableError as exc:
        if not tolerant:
            raise
        logger.warning("listing from the open-jobs cursor failed (%s); starting over", exc)
        return [], None, None
    for item in items:
        metadata = item.metadata or {}
        if item.name == CURSOR:
            cursor = _decode(metadata.get(_POSITION)) or None
            continue
        record = unquote(item.name.removeprefix(OPEN_PREFIX))
        jobs.append(
            OpenJob(item.name, str(item.etag), record, metadata.get(_JOB), metadata.get(_STATUS))
        )
    # The pager's own continuation token: typed as a plain iterator, it is an ItemPaged page.
    following: str | None = getattr(pages, "continuation_token", None)
    return jobs, following or None, cursor


def _save_cursor(container: ContainerClient, token: str) -> None:
    """Remember where the next run starts; "" starts it from the first page. Last writer
    wins: overlapping runs at worst look at the same page twice."""
    blob = container.get_blob_client(CURSOR)
    try:
        with storage_errors("saving the open-jobs cursor"):
            blob.upload_blob(b"", overwrite=True, metadata={_POSITION: _encode(token)})
    except StorageUnavailableError as exc:
        logger.warning("open-jobs cursor not saved (%s); the next run repeats this page", exc)


def _encode(token: str) -> str:
    # Continuation tokens are opaque; metadata values must be plain, non-empty header text.
    return "at:" + base64.urlsafe_b64encode(token.encode()).decode() if token else "start"


def _decode(value: str | None) -> str:
    """The saved position; "" (start from the first page) for anything else."""
    if not value or not value.startswith("at:"):
        return ""
    try:
        return base64.urlsafe_b64decode(value.removeprefix("at:").encode()).decode()
    except ValueError:
        return ""
