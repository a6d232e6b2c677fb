"""What the app has learnt about its batch endpoint, kept in the ledger container.

Two facts need an answer the endpoint gave earlier: whether it keeps the job names we ask
for (only then can an ``unknown`` outcome be looked up by name), and a job it is known to
have (a GET of one tells a wrong endpoint path, where every job answers 404, from a deleted
job). The first few dispatches of each process write both to ``_endpoint/facts.json``: a few jobs,
so that one of them being deleted still leaves another to ask. One file per ledger, not per
URI: after BATCH_ENDPOINT_URI changes, the jobs started under the old one are what tells
whether the new one answers.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass

from azure.core.exceptions import AzureError, ResourceNotFoundError
from azure.storage.blob import ContainerClient, ContentSettings

logger = logging.getLogger(__name__)

PREFIX = "_endpoint/"  # "_": not a ledger record (batch_index.is_reserved)
KNOWN_JOBS = 3
# What this process last wrote, per (ledger container, endpoint).
_written: dict[tuple[str, str], EndpointFacts] = {}
_lock = threading.Lock()


@dataclass(frozen=True)
class EndpointFacts:
    endpoint_uri: str  # the URI the answers came from
    honours_names: bool
    known_jobs: tuple[str, ...]

    def keeps_names(self, endpoint_uri: str) -> bool:
        """Whether ``endpoint_uri`` is known to keep the job names we ask for."""
        return self.honours_names and self.endpoint_uri == endpoint_uri


FACTS = f"{PREFIX}facts.json"


def remember(container: ContainerClient, endpoint_uri: str, job_name: str, honoured: bool) -> None:
    """Note what the endpoint's answer to a POST showed, once per process and value; a
    failure costs only the lookups that need it, so it is logged and the dispatch goes on."""
    key = (container.container_name, endpoint_uri)
    with _lock:
        before = _written.get(key)
        if before is not None and before.honours_names == honoured:
            if len(before.known_jobs) >= KNOWN_JOBS or job_name in before.known_jobs:
                return
            jobs = (*before.known_jobs, job_name)
        else:
            jobs = (job_name,)
        _written[key] = EndpointFacts(endpoint_uri, honoured, jobs)
    body = {"endpoint": endpoint_uri, "honoursNames": honoured, "knownJobs": list(jobs)}
    try:
        container.get_blob_client(FACTS).upload_blob(
            json.dumps(body),
            overwrite=True,
            content_settings=ContentSettings(content_type="application/json"),
        )
    except AzureError as exc:
        with _lock:
            if before is None:
                _written.pop(key, None)
            else:
                _written[key] = before
        logger.warning("could not note what the batch endpoint answered (%s)", exc)


def recall(container: ContainerClient) -> EndpointFacts | None:
    """What was noted of the endpoint, or None when nothing (or nothing readable) was."""
    try:
        data = container.get_blob_client(FACTS).download_blob().readall()
        found = json.loads(data)
    except ResourceNotFoundError:
        return None
    except (AzureError, ValueError) as exc:
        logger.warning("could not read what was noted of the batch endpoint (%s)", exc)
        return None
    if not isinstance(found, dict):
        return None
    uri, honours, jobs = found.get("endpoint"), found.get("honoursNames"), found.get("knownJobs")
    if not isinstance(uri, str) or not isinstance(honours, bool) or not isinstance(jobs, list):
        return None
    return EndpointFacts(uri, honours, tuple(job for job in jobs if isinstance(job, str)))


def forget_written() -> None:
    """Tests start each endpoint afresh."""
    with _lock:
        _written.clear()
