"""Clients made once per process and reused by every invocation.

The Functions worker keeps the process alive between events, so the blob client's
connection pool, the credential's token cache and the HTTP session survive across them.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass

import requests
from azure.core.credentials import TokenCredential
from azure.storage.blob import BlobServiceClient, ExponentialRetry, LinearRetry
from requests.adapters import HTTPAdapter

from handlers.batch_client import BatchJobClient
from handlers.batch_ledger import ClaimWait
from handlers.credentials import AppCredential
from handlers.events import AccountEndpoint
from handlers.memory import DecodeBudget, shared
from handlers.settings import Settings

logger = logging.getLogger(__name__)

StorageRetry = ExponentialRetry | LinearRetry


# Storage retries stay short (two, about 1 s and 3 s apart; against an endpoint that is down
# a call gives up after about 8 s): Event Grid counts a response after 30 s as failed and
# retries on its own schedule, which is the retry that matters.
def _storage_retry() -> ExponentialRetry:
    return ExponentialRetry(
        initial_backoff=1, increment_base=2, retry_total=2, random_jitter_range=1
    )


_HTTP_POOL = 32


class AppContext:
    """Settings plus the clients built from them, each created on first use and then shared.

    ``storage_retry`` and ``claim_wait`` are the process's policies for riding out storage
    errors and for waiting on another delivery's claim, ``decode_budget`` the budget image
    decodes take their memory from (by default the process-wide one of
    THUMBNAIL_DECODE_BUDGET_MB); the defaults are production's, and a caller that needs other
    timings (a test, a tool) passes its own rather than changing them.
    """

    def __init__(
        self,
        settings: Settings,
        credential: TokenCredential | None = None,
        *,
        storage_retry: StorageRetry | None = None,
        claim_wait: ClaimWait | None = None,
        decode_budget: DecodeBudget | None = None,
    ) -> None:
        self.settings = settings
        self.claim_wait = claim_wait or ClaimWait()
        self.decode_budget = decode_budget or shared(settings.thumbnail_decode_budget_mb)
        self._storage_retry = storage_retry
        self._credential = credential
        self._blob_service: BlobServiceClient | None = None
        self._http: requests.Session | None = None
        self._batch_client: BatchJobClient | None = None
        self._lock = threading.RLock()

    @classmethod
    def from_env(
        cls,
        env: Mapping[str, str] | None = None,
        *,
        storage_retry: StorageRetry | None = None,
        claim_wait: ClaimWait | None = None,
    ) -> AppContext:
        return cls(
            Settings.from_env(os.environ if env is None else env),
            storage_retry=storage_retry,
            claim_wait=claim_wait,
        )

    @property
    def credential(self) -> TokenCredential:
        """One DefaultAzureCredential per process (it caches tokens until they expire),
        whose failures log as one line (handlers/credentials.py)."""
        with self._lock:
            if self._credential is None:
                client_id = self.settings.storage.client_id or self.settings.client_id
                self._credential = AppCredential(managed_identity_client_id=client_id)
            return self._credential

    @property
    def blob_service(self) -> BlobServiceClient:
        with self._lock:
            if self._blob_service is None:
                self._blob_service = self._make_blob_service()
            return self._blob_service

    @property
    def account(self) -> AccountEndpoint:
        service = self.blob_service
        return AccountEndpoint(name=str(service.account_name), blob_url=service.url.rstrip("/"))

    @property
    def http(self) -> requests.Session:
        with self._lock:
            if self._http is None:
                session = requests.Session()
                adapter = HTTPAdapter(pool_connections=4, pool_maxsize=_HTTP_POOL, max_retries=0)
                session.mount("https://", adapter)
                session.mount("http://", adapter)
                self._http = session
            return self._http

    @property
    def batch_client(self) -> BatchJobClient | None:
        """The batch endpoint client, or None in dry-run (BATCH_ENDPOINT_URI unset)."""
        if self.settings.batch.dry_run:
            return None
        with self._lock:
            if self._batch_client is None:
                self._batch_client = BatchJobClient(self.settings.batch, self.http, self.credential)
            return self._batch_client

    def _make_blob_service(self) -> BlobServiceClient:
        storage = self.settings.storage
        retry = self._storage_retry or _storage_retry()
        if storage.connection_string is not None:
            return BlobServiceClient.from_connection_string(
                storage.connection_string,
                retry_policy=retry,
                connection_timeout=10,
                read_timeout=60,
            )
        assert storage.account_url is not None
        return BlobServiceClient(
            storage.account_url,
            credential=self.credential,
            retry_policy=retry,
            connection_timeout=10,
            read_timeout=60,
        )


@dataclass
class _Holder:
    context: AppContext | None = None


_holder = _Holder()
_holder_lock = threading.Lock()


def get_context() -> AppContext:
    """The process-wide context, built from the environment on first use."""
    with _holder_lock:
        if _holder.context is None:
            _holder.context = AppContext.from_env()
        return _holder.context


def reset_context() -> None:
    """Forget the process-wide context (tests and tools that change the environment)."""
    with _holder_lock:
        _holder.context = None
