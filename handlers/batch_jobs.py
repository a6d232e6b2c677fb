"""Start one Azure ML batch endpoint job per new blob version, or per folder marker version.

The ledger (handlers/batch_ledger.py) makes repeated and concurrent deliveries start one job;
the client (handlers/batch_client.py) speaks to the endpoint. This module puts them in order:
what the job is (scope, name, input, output), token, claim, post, record.
"""

from __future__ import annotations

import hashlib
import json
import logging
import posixpath
import re
import time
import uuid
from collections.abc import Callable
from typing import Any

from azure.storage.blob import BlobServiceClient

from handlers import batch_endpoint
from handlers.batch_client import BatchJobClient, JobSpec, job_request
from handlers.batch_ledger import (
    Claim,
    ClaimWait,
    claim,
    ledger_name,
    read_ledger,
    recorded_outcome,
)
from handlers.batch_settings import BatchSettings
from handlers.errors import (
    ConfigurationError,
    DispatchRejectedError,
    OutcomeUnknownError,
    TransientError,
)
from handlers.events import BlobCreated
from handlers.outcomes import Outcome
from handlers.settings import Settings

logger = logging.getLogger(__name__)

# Azure ML job names: letters, digits, "_" and "-"; ours stay well inside its length limit.
_STEM_CHARACTERS = re.compile(r"[^a-z0-9_-]+")
_STEM_LENGTH = 40
_HASH_LENGTH = 20


def job_name_for(container: str, blob_name: str, version: str, path: str, attempt: int = 0) -> str:
    """The job name we ask for: the same for every delivery and retry of one claim of one
    version, another for each resubmission (``attempt``); readable by the last part of
    ``path`` (the file's, or the folder's in folder scope)."""
    last = posixpath.basename(path.rstrip("/")) or container
    stem = _STEM_CHARACTERS.sub("-", last.lower()).strip("-_")[:_STEM_LENGTH].strip("-_")
    digest = hashlib.sha256(f"{container}/{blob_name}\n{version}".encode()).hexdigest()
    name = f"job-{stem}-{digest[:_HASH_LENGTH]}" if stem else f"job-{digest[:_HASH_LENGTH]}"
    return f"{name}-r{attempt}" if attempt else name


def job_input(event: BlobCreated, settings: BatchSettings, blob_url: str) -> tuple[str, str] | str:
    """The job's input URI and its path in the container, or why this blob starts no job.

    File scope: the blob itself. Folder scope: the folder the marker blob was written into,
    and nothing for any other blob.
    """
    if not settings.folder_scope:
        return blob_url, event.blob_name
    folder, name = posixpath.split(event.blob_name)
    if name != settings.folder_marker:
        return (
            f"BATCH_JOB_SCOPE is folder: a file starts nothing; its folder's job starts when "
            f"{settings.folder_marker} is written into it"
        )
    return blob_url[: len(blob_url) - len(name)], folder + "/" if folder else ""


def job_fields(settings: BatchSettings, name: str, input_uri: str, path: str) -> dict[str, Any]:
    """What a claim records of the job it will post (see ``spec_of``)."""
    fields: dict[str, Any] = {
        "scope": settings.job_scope,
        "input": input_uri,
        "jobRequested": name,
        "requestId": str(uuid.uuid4()),
        "path": path,
    }
    output = settings.output_for(path, name)
    if output is not None:
        fields["output"] = output
    return fields


def spec_of(record: dict[str, Any]) -> JobSpec:
    """The job a claimed record stands for; records from before job names had only a URL."""
    url = str(record.get("input") or record.get("url") or "")
    name = record.get("jobRequested")
    if not isinstance(name, str):
        blob = str(record.get("blob"))
        name = job_name_for(str(record.get("container")), blob, str(record.get("eTag")), blob)
    output = record.get("output")
    return JobSpec(
        name=name,
        input_uri=url,
        output_uri=output if isinstance(output, str) else None,
        request_id=str(record.get("requestId") or uuid.uuid4()),
    )


def resubmission(settings: BatchSettings, record: dict[str, Any], attempt: int) -> dict[str, Any]:
    """The job fields of a resubmission: a new name (a job name is used once per workspace),
    a new request id and, when outputs are configured, a new output path."""
    blob = str(record.get("blob"))
    path = str(record.get("path") or blob)
    name = job_name_for(str(record.get("container")), blob, str(record.get("eTag")), path, attempt)
    input_uri = str(record.get("input") or record.get("url") or "")
    return job_fields(settings, name, input_uri, path)


def dispatch_batch_job(
    event: BlobCreated,
    service: BlobServiceClient,
    settings: Settings,
    client: BatchJobClient | None,
    *,
    wait: ClaimWait | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Outcome:
    """Start exactly one job for the blob version ``event`` announces (file scope) or for the
    folder of the marker version it announces (folder scope).

    ``client`` None is dry-run: a version the ledger settled is a duplicate as ever; any
    other gets the request that would be sent, logged, and nothing recorded (not final).
    ``wait`` and ``sleep`` bound how long a duplicate waits for the claim's holder.
    """
    blob_url = service.get_blob_client(event.container, event.blob_name).url
    target = job_input(event, settings.batch, blob_url)
    if isinstance(target, str):
        return Outcome("ignored", target, setting="BATCH_JOB_SCOPE")
    input_uri, path = target
    name = job_name_for(event.container, event.blob_name, event.version, path)
    fields = job_fields(settings.batch, name, input_uri, path)
    if client is None:
        return settled(event, service, settings) or _dry_run(settings, spec_of(fields))
    client.token()  # fails before anything is claimed, and keeps claim-to-post short
    ledger = service.get_container_client(settings.ledger_container)
    held = claim(ledger, event, blob_url, wait=wait or ClaimWait(), sleep=sleep, job=fields)
    if isinstance(held, Outcome):
        return held
    return post_claimed(held, client, sleep)


def settled(event: BlobCreated, service: BlobServiceClient, settings: Settings) -> Outcome | None:
    """What the ledger already settled for the event's version (``duplicate``), or None while
    it is still to do. Reads only: without an endpoint, and for the ops commands' dry runs."""
    ledger = service.get_blob_client(settings.ledger_container, ledger_name(event))
    found = read_ledger(ledger)
    return None if found is None else recorded_outcome(found[0], ledger.blob_name)


def _dry_run(settings: Settings, job: JobSpec) -> Outcome:
    headers, body = job_request(settings.batch, job)
    headers["Authorization"] = f"Bearer <token for {settings.batch.token_scope}>"
    headers["repeatability_request-id"] = "<one per claim>"
    return Outcome(
        "dry-run",
        f"BATCH_ENDPOINT_URI is not set; would POST <BATCH_ENDPOINT_URI> "
        f"headers={json.dumps(headers)} body={json.dumps(body)}",
        setting="BATCH_ENDPOINT_URI",
    )


def post_claimed(held: Claim, client: BatchJobClient, sleep: Callable[[float], None]) -> Outcome:
    """Mark the claimed version's job open, post it and record it: the steps after a claim,
    shared by the first dispatch, an operator's resubmission and the tracker's second try
    of a job the endpoint never created."""
    job = spec_of(held.record)
    try:
        held.mark_open()
    except TransientError:
        held.release()
        raise
    try:
        job_name = client.submit(job)
    except DispatchRejectedError as exc:
        held.rejected(exc.status_code, exc.body)
        raise
    except OutcomeUnknownError as exc:
        held.unknown(exc.reason)
        exc.ledger_blob = held.where
        raise
    except (TransientError, ConfigurationError):
        held.release()
        raise
    honoured = job_name == job.name
    if not honoured:
        logger.warning(
            "the batch endpoint named job %s, not %s as asked: an unknown outcome of this "
            "endpoint cannot be looked up by name and waits for a person",
            job_name,
            job.name,
        )
    batch_endpoint.remember(held.container, client.endpoint_uri, job_name, honoured)
    problem = held.dispatched(job_name, sleep)
    where = f"job {job_name} for {job.input_uri}"
    if job.output_uri is not None:
        where += f" output {job.output_uri}"
    if problem is not None:
        # The job exists: raising would only make Event Grid retry into the claim, which
        # turns "unknown" once stale; say here which job it is.
        logger.error(
            "job %s was started for %s but ledger blob %s could not be updated (%s); "
            "it will read as unknown once the claim is stale",
            job_name,
            job.input_uri,
            held.where,
            problem,
        )
        return Outcome("dispatched", f"{where}; ledger not updated")
    return Outcome("dispatched", where)
