"""The Azure ML batch endpoint's REST API: a bearer token, POST a job, GET its status,
bounded retries.

Retries are urllib3's, mounted on the shared session for the endpoint's URLs only; a request
that may have reached the endpoint is never sent twice, because that could start two jobs.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any, Self
from urllib.parse import quote

import requests
from azure.core.credentials import TokenCredential
from azure.core.exceptions import AzureError
from requests.adapters import HTTPAdapter
from urllib3 import BaseHTTPResponse
from urllib3.exceptions import InvalidHeader, MaxRetryError
from urllib3.util.retry import Retry

from handlers.batch_settings import BatchSettings
from handlers.errors import (
    ConfigurationError,
    DispatchRejectedError,
    DispatchUnavailableError,
    OutcomeUnknownError,
)

logger = logging.getLogger(__name__)

_MAX_BODY_LOGGED = 2000
# A status request is small; the tracker's run checks its time budget only between jobs, so
# each request stays short: 3 attempts of 20 s plus the backoff end well inside the 5-minute
# function timeout even when BATCH_TIMEOUT_SECONDS allows a long POST.
STATUS_TIMEOUT_SECONDS = 20.0
# Answers a later attempt can change: timeouts, throttling, server errors.
RETRY_STATUSES = frozenset({408, 429, *range(500, 600)})
# One per invocation the host may run at once, so that none waits for a connection.
_CONNECTIONS = 32
# What a job deleted on the service side is recorded as (the endpoint answers 404).
NOT_FOUND = "NotFound"
# Azure ML's JobStatus values; a job in one of FINAL never changes again.
STATUSES = frozenset(
    {
        "NotStarted", "Starting", "Provisioning", "Preparing", "Queued", "Running",
        "Finalizing", "CancelRequested", "Completed", "Failed", "Canceled",
        "NotResponding", "Paused", "Unknown",
    }
)  # fmt: skip
FINAL = frozenset({"Completed", "Failed", "Canceled", NOT_FOUND})
# Azure ML job names; anything else is never put into a URL.
JOB_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$")


class DispatchRetry(Retry):
    """urllib3's Retry, set up for the batch endpoint; Event Grid retries after the last try.

    Connection failures and 408/429/5xx answers are retried, POST and GET alike. Read errors
    are not (``read=False`` re-raises them), nor errors of no known kind (``other=0``): the
    endpoint may have taken the request, and a second POST would start a second job. After
    the last attempt the last answer comes back
    (``raise_on_status=False``) for the client to judge. The waits are 1x, then 2x
    ``backoff_factor``, or what Retry-After asks for; a Retry-After over
    ``max_retry_after`` raises DispatchUnavailableError instead of holding the invocation.
    ``sleep`` lets tests shorten and record the waits.
    """

    # Only status_forcelist decides: urllib3 would also retry a 413 that carries
    # Retry-After, and a 413 is a rejection here.
    RETRY_AFTER_STATUS_CODES: frozenset[int] = frozenset()

    def __init__(
        self,
        total: bool | int | None = 2,
        *,
        read: bool | int | None = False,
        other: int | None = 0,
        allowed_methods: Collection[str] | None = frozenset({"GET", "POST"}),
        status_forcelist: Collection[int] | None = RETRY_STATUSES,
        backoff_factor: float = 1.0,
        raise_on_status: bool = False,
        max_retry_after: float = 10.0,
        sleep: Callable[[float], None] = time.sleep,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            total,
            read=read,
            other=other,
            allowed_methods=allowed_methods,
            status_forcelist=status_forcelist,
            backoff_factor=backoff_factor,
            raise_on_status=raise_on_status,
            **kwargs,
        )
        self.max_retry_after = max_retry_after
        self.sleeper = sleep

    @property
    def attempts(self) -> int:
        """Requests this policy allows in all: the first and its retries."""
        return self.total + 1 if isinstance(self.total, int) else 1

    def new(self, **kw: Any) -> Self:
        # urllib3 makes a new Retry after every attempt; ours carries its own settings over.
        return super().new(**{"max_retry_after": self.max_retry_after, "sleep": self.sleeper, **kw})

    def get_backoff_time(self) -> float:
        # urllib3 waits nothing after the first failure; an endpoint that just failed
        # deserves the pause.
        failures = len(self.history)
        if failures == 0:
            return 0.0
        return float(min(self.backoff_max, self.backoff_factor * 2 ** (failures - 1)))

    def get_retry_after(self, response: BaseHTTPResponse) -> float | None:
        try:
            return super().get_retry_after(response)
        except InvalidHeader:
            return None  # unreadable: the backoff applies

    def sleep(self, response: BaseHTTPResponse | None = None) -> None:
        # Called between attempts, after urllib3 has drained the answer (its connection is
        # back in the pool), so raising here ends the request with nothing left open.
        wait = None
        if response is not None and self.respect_retry_after_header:
            wait = self.get_retry_after(response)
        if wait is None:
            wait = self.get_backoff_time()
        elif response is not None and wait > self.max_retry_after:
            raise DispatchUnavailableError(
                f"the endpoint answered {response.status} with Retry-After {wait:g} s"
            )
        last = self.history[-1] if self.history else None
        if last is not None and last.status is not None:
            problem = f"the endpoint answered {last.status}"
        else:
            problem = f"could not connect ({type(last.error).__name__ if last else '?'})"
        logger.info("batch endpoint: %s; retrying in %.1f s", problem, wait)
        self.sleeper(float(wait))

    def connect_failure(self, exc: requests.RequestException) -> Exception | None:
        """The error that made urllib3 give up connecting, or None when it was another.

        Connecting is the one step this policy retries, chosen by urllib3's own test for an
        error raised before the request was sent; read errors come back as they are, so a
        request that failed any other way may have reached the endpoint.
        """
        gave_up = exc.args[0] if exc.args else None
        reason = gave_up.reason if isinstance(gave_up, MaxRetryError) else None
        return reason if reason is not None and self._is_connection_error(reason) else None


@dataclass(frozen=True)
class JobSpec:
    """One job as a claim fixes it: the name we ask for, its input and output, and the
    ``repeatability_request-id`` every send of this claim carries."""

    name: str
    input_uri: str
    output_uri: str | None
    request_id: str


def job_request(settings: BatchSettings, job: JobSpec) -> tuple[dict[str, str], dict[str, Any]]:
    """Headers (without Authorization) and JSON body of ``job``, in the form azure-ai-ml's
    ``invoke()`` posts (camelCase ``inputData``/``outputData``, the job's ``name``)."""
    properties: dict[str, Any] = {
        "inputData": {
            settings.input_name: {"jobInputType": settings.input_type, "uri": job.input_uri}
        },
        "name": job.name,
    }
    if job.output_uri is not None:
        properties["outputData"] = {
            settings.output_name: {"jobOutputType": "UriFolder", "uri": job.output_uri}
        }
    headers = {"Content-Type": "application/json", "repeatability_request-id": job.request_id}
    if settings.deployment:
        headers["azureml-model-deployment"] = settings.deployment
    return headers, {"properties": properties}


class BatchJobClient:
    """Posts jobs to the batch endpoint with a cached bearer token and bounded retries.

    Mounts its own adapter, carrying ``retry``, on ``session`` for the endpoint's URLs only,
    so other uses of the session keep theirs.
    """

    def __init__(
        self,
        settings: BatchSettings,
        session: requests.Session,
        credential: TokenCredential,
        retry: DispatchRetry | None = None,
    ) -> None:
        if settings.endpoint_uri is None:
            raise ValueError("BatchJobClient needs BATCH_ENDPOINT_URI")
        self.settings = settings
        self.endpoint_uri = settings.endpoint_uri
        self.session = session
        self.credential = credential
        self.retry = retry if retry is not None else DispatchRetry()
        session.mount(
            self.endpoint_uri,
            HTTPAdapter(pool_connections=1, pool_maxsize=_CONNECTIONS, max_retries=self.retry),
        )
        # One token request even when many threads start at once: the first fills the cache.
        self._token_lock = threading.Lock()

    def submit(self, job: JobSpec) -> str:
        """Start ``job``; return the name the endpoint gave it (ours, unless it ignored it).

        Raises DispatchUnavailableError (retry later), DispatchRejectedError (4xx),
        OutcomeUnknownError (sent, no answer), ConfigurationError (401/403).
        """
        headers, body = job_request(self.settings, job)
        headers["Authorization"] = f"Bearer {self.token()}"
        timeout = self.settings.timeout_seconds
        try:
            response = self.session.post(
                self.endpoint_uri, json=body, headers=headers, timeout=(min(10.0, timeout), timeout)
            )
        except requests.RequestException as exc:
            reason = self.retry.connect_failure(exc)
            if reason is not None:
                raise DispatchUnavailableError(
                    f"could not connect ({type(reason).__name__}) "
                    f"after {self.retry.attempts} attempts"
                ) from exc
            raise OutcomeUnknownError(
                f"the request was sent but no answer came back ({type(exc).__name__}); "
                "the job may exist"
            ) from exc
        self._raise_for_status(response)
        return _job_name(response)

    def job_status(self, job_name: str) -> str:
        """The job's ``properties.status``, verbatim, or NOT_FOUND when the endpoint answers 404.

        A GET changes nothing, so every failure is left for the next look: 408/429/5xx after
        the policy's attempts, connection and read errors, and an answer without a status
        raise DispatchUnavailableError; 401/403 raise ConfigurationError; another 4xx raises
        DispatchRejectedError.
        """
        if not JOB_NAME.match(job_name):
            raise DispatchRejectedError(f"{job_name!r} is not a job name", 0, "")
        url = f"{self.endpoint_uri.rstrip('/')}/{quote(job_name, safe='')}"
        headers = {"Authorization": f"Bearer {self.token()}"}
        timeout = min(self.settings.timeout_seconds, STATUS_TIMEOUT_SECONDS)
        try:
            response = self.session.get(url, headers=headers, timeout=(min(10.0, timeout), timeout))
        except requests.RequestException as exc:
            raise DispatchUnavailableError(
                f"no answer about job {job_name} ({type(exc).__name__})"
            ) from exc
        if response.status_code == 404:
            return NOT_FOUND
        self._raise_for_status(response)
        return _job_status(response)

    def _raise_for_status(self, response: requests.Response) -> None:
        """Raise for an answer outside 2xx, judged alike for a POST and a GET: 401/403 are
        the identity's role (ConfigurationError), a retried status that is still there after
        the policy's attempts is for later (DispatchUnavailableError), any other is a
        rejection (DispatchRejectedError)."""
        status = response.status_code
        if 200 <= status < 300:
            return
        text = response.text[:_MAX_BODY_LOGGED]
        if status in (401, 403):
            raise ConfigurationError(
                "AZURE_CLIENT_ID",
                f"the batch endpoint refused the identity ({status}: {text}); "
                "it needs AzureML Data Scientist on the workspace",
            )
        if status in RETRY_STATUSES:
            raise DispatchUnavailableError(
                f"the endpoint answered {status} after {self.retry.attempts} attempts"
            )
        raise DispatchRejectedError(f"the endpoint answered {status}: {text}", status, text)

    def token(self) -> str:
        """A bearer token for the endpoint, from the credential's cache when it has one."""
        try:
            with self._token_lock:
                return self.credential.get_token(self.settings.token_scope).token
        except AzureError as exc:
            raise DispatchUnavailableError(
                f"no token for {self.settings.token_scope}: {exc}"
            ) from exc


def _job_name(response: requests.Response) -> str:
    try:
        job = response.json()
    except ValueError:
        job = None
    if isinstance(job, dict):
        name = job.get("name")
        if isinstance(name, str) and name:
            return name
        job_id = job.get("id")
        if isinstance(job_id, str) and job_id.strip("/"):
            return job_id.rstrip("/").rsplit("/", 1)[-1]
    logger.warning(
        "batch endpoint answered %s without a job id: %s", response.status_code, response.text[:200]
    )
    return "(no job id in the response)"


def _job_status(response: requests.Response) -> str:
    try:
        job = response.json()
    except ValueError:
        job = None
    properties = job.get("properties") if isinstance(job, dict) else None
    status = properties.get("status") if isinstance(properties, dict) else None
    if isinstance(status, str) and status.strip() and len(status) <= 100:
        return status
    raise DispatchUnavailableError(
        f"the endpoint answered {response.status_code} without properties.status: "
        f"{response.text[:200]!r}"
    )
