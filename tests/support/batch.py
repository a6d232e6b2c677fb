"""The batch suites' hold on the app: CSV uploads dispatched to the jobs stand-in, and the
ledger the app keeps about them on Azurite, read the way the tests check it."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from azure.storage.blob import BlobServiceClient, ContainerClient

from handlers import batch_index
from handlers.batch_ledger import ledger_name, ledger_prefix
from handlers.events import AccountEndpoint, BlobCreated, parse_event
from tests.support.host import invoke
from tools import azurite
from tools.standins import JobsEndpoint


def blob_created(event: dict[str, Any]) -> BlobCreated:
    """The app's reading of a batch-input event Azurite's account sent."""
    account = AccountEndpoint(azurite.ACCOUNT, event["data"]["url"].split("/batch-input")[0])
    parsed = parse_event(event, account)
    assert isinstance(parsed, BlobCreated)
    return parsed


@dataclass(frozen=True)
class Batch:
    """The app dispatching to the local jobs endpoint, and the ledger it keeps on Azurite."""

    jobs: JobsEndpoint
    service: BlobServiceClient
    incoming: str  # the container batch input is uploaded to
    ledger: str  # DISPATCH_LEDGER_CONTAINER
    upload: Callable[[str], dict[str, Any]]  # a CSV blob uploaded: its BlobCreated event

    def dispatch(self, name: str) -> dict[str, Any]:
        """Upload ``name`` and run dispatch_batch_job on its event as the host does."""
        event = self.upload(name)
        invoke("dispatch_batch_job", event)
        return event

    def dispatch_job(self, name: str) -> str:
        """Dispatch ``name``, which must start exactly one job; that job's name."""
        before = set(self.jobs.jobs)
        self.dispatch(name)
        (job,) = set(self.jobs.jobs) - before
        return job

    def ledger_client(self) -> ContainerClient:
        return self.service.get_container_client(self.ledger)

    def record(self, event: dict[str, Any]) -> Any:
        """The ledger record of the version ``event`` announces, or None when there is none."""
        client = self.service.get_blob_client(self.ledger, ledger_name(blob_created(event)))
        if not client.exists():
            return None
        return json.loads(client.download_blob().readall())

    def record_name(self, name: str) -> str:
        """The ledger blob of blob ``name``, which has exactly one version recorded."""
        (blob,) = self.ledger_client().list_blobs(
            name_starts_with=ledger_prefix(self.incoming, name)
        )
        return str(blob.name)

    def record_of(self, name: str) -> dict[str, Any]:
        """The one ledger record of blob ``name``."""
        data = self.ledger_client().get_blob_client(self.record_name(name)).download_blob()
        found: dict[str, Any] = json.loads(data.readall())
        return found

    def markers(self) -> list[str]:
        """The open-jobs markers now in the ledger (the cursor is not one)."""
        return [
            blob.name
            for blob in self.ledger_client().list_blobs(name_starts_with=batch_index.OPEN_PREFIX)
            if blob.name != batch_index.CURSOR
        ]
