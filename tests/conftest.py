"""Fixtures: a real Azurite per session, local stand-ins for Azure endpoints, and a clean
environment and process context for every test."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.storage.blob import BlobServiceClient

from handlers.context import reset_context
from tests.support.event_source import FAST, SourceFactory, routes_for
from tests.support.names import unique
from tools import azurite
from tools import events as event_builders
from tools.eventsource import EventSource, EventSourceConfig, RetryTiming, Target
from tools.routes import Routes
from tools.standins import JobsEndpoint, ManagedIdentityEndpoint


@pytest.fixture(autouse=True)
def restore_environ() -> Iterator[None]:
    saved = dict(os.environ)
    reset_context()
    yield
    os.environ.clear()
    os.environ.update(saved)
    reset_context()


@pytest.fixture(scope="session")
def azurite_service() -> Iterator[azurite.Azurite]:
    with azurite.start() as service:
        yield service


@pytest.fixture
def blob_service(azurite_service: azurite.Azurite) -> BlobServiceClient:
    return BlobServiceClient.from_connection_string(azurite_service.connection_string)


@pytest.fixture
def containers(blob_service: BlobServiceClient) -> dict[str, str]:
    """This test's own source and output containers; the sources exist, outputs do not yet."""
    names = {
        "images": unique("images"),
        "incoming": unique("batch-input"),
        "thumbnails": unique("thumbs"),
        "ledger": unique("ledger"),
        "deadletter": unique("deadletter"),
    }
    blob_service.create_container(names["images"])
    blob_service.create_container(names["incoming"])
    return names


@pytest.fixture
def app_env(azurite_service: azurite.Azurite, containers: dict[str, str]) -> dict[str, str]:
    """App settings pointing the functions at Azurite and this test's containers (dry-run)."""
    env = {
        "DATA_STORAGE": azurite_service.connection_string,
        "THUMBNAIL_CONTAINER": containers["thumbnails"],
        "DISPATCH_LEDGER_CONTAINER": containers["ledger"],
        "DEADLETTER_CONTAINER": containers["deadletter"],
    }
    os.environ.pop("BATCH_ENDPOINT_URI", None)
    os.environ.update(env)
    reset_context()
    return env


@pytest.fixture
def identity() -> Iterator[ManagedIdentityEndpoint]:
    """A local App Service managed-identity endpoint (set its environment() to use it)."""
    server = ManagedIdentityEndpoint()
    yield server
    server.stop()


@pytest.fixture
def jobs(identity: ManagedIdentityEndpoint) -> Iterator[JobsEndpoint]:
    """A local batch endpoint that accepts the identity's token (default or 'blue' deployment)."""
    server = JobsEndpoint(accepted_token=identity.token, deployments=("blue",))
    yield server
    server.stop()


@pytest.fixture
def make_source(
    azurite_service: azurite.Azurite, containers: dict[str, str], tmp_path: Path
) -> Iterator[SourceFactory]:
    """Start event sources in front of the session's Azurite, routed to this test's
    containers (retry policy overrides in ``retry``); all of them stop after the test."""
    started: list[EventSource] = []

    def make(
        target: Target,
        *,
        routes: Routes | None = None,
        state_dir: Path | None = None,
        port: int = 0,
        timing: RetryTiming = FAST,
        **retry: int,
    ) -> EventSource:
        config = EventSourceConfig(
            port=port,
            upstream_port=azurite_service.port,
            state_dir=state_dir or tmp_path / "state",
            routes=routes or routes_for(containers, **retry),
            timing=timing,
        )
        source = EventSource(config, target).start()
        started.append(source)
        return source

    yield make
    for source in started:
        source.stop()


@pytest.fixture
def upload_event(
    blob_service: BlobServiceClient, azurite_service: azurite.Azurite
) -> Callable[..., dict[str, Any]]:
    """Upload bytes as a blob and return the BlobCreated event Azure would send for it."""

    def upload(
        container: str,
        name: str,
        data: bytes,
        schema: str = event_builders.EVENT_GRID_SCHEMA,
        content_type: str = "application/octet-stream",
    ) -> dict[str, Any]:
        from azure.storage.blob import ContentSettings

        result = blob_service.get_blob_client(container, name).upload_blob(
            data, overwrite=True, content_settings=ContentSettings(content_type=content_type)
        )
        return event_builders.blob_created(
            account=azurite.ACCOUNT,
            service_url=azurite_service.blob_url,
            container=container,
            blob_name=name,
            etag=str(result["etag"]),
            content_type=content_type,
            content_length=len(data),
            schema=schema,
        )

    return upload


# What a test needs, by the fixtures it uses: its markers must say so, so that `-m "not
# azurite"` and the like select what they promise.
_NEEDS = {
    "azurite": {"azurite_service"},
    "http": {"identity", "jobs"},
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    missing = []
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        for marker, fixtures in _NEEDS.items():
            if used & fixtures and item.get_closest_marker(marker) is None:
                missing.append(
                    f"{item.nodeid}: uses {sorted(used & fixtures)}, not marked {marker}"
                )
    if missing:
        raise pytest.UsageError(
            "tests without the marker of what they need:\n" + "\n".join(missing)
        )
