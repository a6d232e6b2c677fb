"""Start one Azure ML batch endpoint job per new blob version.

The ledger (handlers/batch_ledger.py) makes repeated and concurrent deliveries start one job;
the client (handlers/batch_client.py) speaks to the endpoint. This module puts them in order:
token, claim, post, record.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable

from azure.storage.blob import BlobServiceClient

from handlers.batch_client import BatchJobClient, job_request
from handlers.batch_ledger import (
    Claim,
    ClaimWait,
    claim,
    ledger_name,
    read_ledger,
    recorded_outcome,
)
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


def dispatch_batch_job(
    event: BlobCreated,
    service: BlobServiceClient,
    settings: Settings,
    client: BatchJobClient | None,
    *,
    wait: ClaimWait | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Outcome:
    """Start exactly one job for the blob version ``event`` announces.

    ``client`` None is dry-run: a version the ledger settled is a duplicate as ever; any
    other gets the request that would be sent, logged, and nothing recorded (not final).
    ``wait`` and ``sleep`` bound how long a duplicate waits for the claim's holder.
    """
    blob_url = service.get_blob_client(event.container, event.blob_name).url
    if client is None:
        return settled(event, service, settings) or _dry_run(settings, blob_url)
    client.token()  # fails before anything is claimed, and keeps claim-to-post short
    ledger = service.get_container_client(settings.ledger_container)
    held = claim(ledger, event, blob_url, wait=wait or ClaimWait(), sleep=sleep)
    if isinstance(held, Outcome):
        return held
    return post_claimed(held, client, blob_url, sleep)


def settled(event: BlobCreated, service: BlobServiceClient, settings: Settings) -> Outcome | None:
    """What the ledger already settled for the event's version (``duplicate``), or None while
    it is still to do. Reads only: without an endpoint, and for the ops commands' dry runs."""
    ledger = service.get_blob_client(settings.ledger_container, ledger_name(event))
    found = read_ledger(ledger)
    return None if found is None else recorded_outcome(found[0], ledger.blob_name)


def _dry_run(settings: Settings, blob_url: str) -> Outcome:
    headers, body = job_request(settings.batch, blob_url)
    headers["Authorization"] = f"Bearer <token for {settings.batch.token_scope}>"
    return Outcome(
        "dry-run",
        f"BATCH_ENDPOINT_URI is not set; would POST <BATCH_ENDPOINT_URI> "
        f"headers={json.dumps(headers)} body={json.dumps(body)}",
        setting="BATCH_ENDPOINT_URI",
    )


def post_claimed(
    held: Claim, client: BatchJobClient, blob_url: str, sleep: Callable[[float], None]
) -> Outcome:
    """Mark the claimed version's job open, post it and record it: the steps after a claim,
    shared by the first dispatch and an operator's resubmission."""
    try:
        held.mark_open()
    except TransientError:
        held.release()
        raise
    try:
        job_name = client.submit(blob_url)
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
    problem = held.dispatched(job_name, sleep)
    if problem is not None:
        # The job exists: raising would only make Event Grid retry into the claim, which
        # turns "unknown" once stale; say here which job it is.
        logger.error(
            "job %s was started for %s but ledger blob %s could not be updated (%s); "
            "it will read as unknown once the claim is stale",
            job_name,
            blob_url,
            held.where,
            problem,
        )
        return Outcome("dispatched", f"job {job_name} for {blob_url}; ledger not updated")
    return Outcome("dispatched", f"job {job_name} for {blob_url}")
