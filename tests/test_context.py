"""Clients are made once per process: counted where it shows, at the servers they talk to.

A new blob client or HTTP session per invocation would open new TCP connections (a pool is
per client); a new credential would ask the identity endpoint for a new token (its cache is
per credential). The jobs stand-in counts the connections it accepts; a TCP pass-through
counts Azurite's.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

import pytest
from azure.storage.blob import BlobServiceClient

from handlers.context import reset_context
from tests.support import images as gen
from tests.support.faults import FaultProxy, batch_environment
from tests.support.host import functions, invoke
from tools import azurite
from tools import events as build
from tools.standins import JobsEndpoint, ManagedIdentityEndpoint

pytestmark = [pytest.mark.azurite, pytest.mark.http]


@pytest.fixture
def identity_env(
    app_env: dict[str, str], identity: ManagedIdentityEndpoint, jobs: JobsEndpoint
) -> None:
    """The app on Azurite, the local managed identity and the local jobs endpoint."""
    batch_environment(identity, jobs)


def test_clients_are_made_once_per_process(
    identity_env: None,
    containers: dict[str, str],
    azurite_service: azurite.Azurite,
    blob_service: BlobServiceClient,
    identity: ManagedIdentityEndpoint,
    jobs: JobsEndpoint,
) -> None:
    storage = FaultProxy(azurite_service.port)
    try:
        os.environ["DATA_STORAGE"] = azurite.connection_string(storage.port)
        reset_context()
        service_url = f"http://127.0.0.1:{storage.port}/{azurite.ACCOUNT}"
        image = gen.encode(gen.halves((64, 64)), "JPEG")

        def deliver(number: int) -> None:
            name = f"n{number}.jpg"
            result = blob_service.get_blob_client(containers["images"], name).upload_blob(image)
            event = build.blob_created(
                account=azurite.ACCOUNT,
                service_url=service_url,
                container=containers["images"],
                blob_name=name,
                etag=str(result["etag"]),
                content_length=len(image),
            )
            invoke("create_thumbnail", event)
            invoke("dispatch_batch_job", event)

        deliver(0)
        first = (storage.connections, jobs.connections)
        assert first[0] >= 1 and first[1] == 1
        for number in range(1, 5):
            deliver(number)

        assert (storage.connections, jobs.connections) == first
        assert len(identity.token_requests) == 1
        assert len(jobs.jobs) == 5
        thumbnails = blob_service.get_container_client(containers["thumbnails"])
        assert len(list(thumbnails.list_blobs())) == 5
    finally:
        storage.stop()


def test_many_first_calls_at_once_share_one_token(
    identity_env: None,
    containers: dict[str, str],
    upload_event: Callable[..., dict[str, Any]],
    identity: ManagedIdentityEndpoint,
    jobs: JobsEndpoint,
) -> None:
    """A cold start under a burst: every invocation asks for the clients at once."""
    events = [
        upload_event(containers["incoming"], f"incoming/burst-{number}.csv", b"a\n1\n")
        for number in range(8)
    ]
    functions()  # index once, as the host does before the first event
    barrier = threading.Barrier(len(events))

    def deliver(event: dict[str, Any]) -> None:
        barrier.wait()
        invoke("dispatch_batch_job", event)

    threads = [threading.Thread(target=deliver, args=(event,)) for event in events]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(jobs.jobs) == 8
    assert len(identity.token_requests) == 1
