"""Fixtures: a real Azurite per session, local stand-ins for Azure endpoints, and a clean
environment and process context for every test."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.storage.blob import BlobServiceClient

from handlers.context import reset_context
from tests.support.batch import Batch
from tests.support.event_source import (
    FAST,
    RecordedSource,
    RecordingTarget,
    SourceFactory,
    routes_for,
)
from tests.support.faults import batch_environment
from tests.support.names import unique
from tests.support.uploads import upload
from tools import azurite, local_env
from tools import events as build
from tools.eventsource import EventSource, EventSourceConfig, RetryTiming, Target
from tools.routes import Routes
from tools.standins import JobsEndpoint, ManagedIdentityEndpoint


@pytest.fixture(autouse=True)
def restore_environ() -> Iterator[None]:
    # The ops commands must not pick up a developer's running `make run` (.local/ops.env).
    os.environ[local_env.FILE_SETTING] = ""
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
def dispatching(identity: ManagedIdentityEndpoint, jobs: JobsEndpoint) -> JobsEndpoint:
    """This process pointed at the identity and jobs stand-ins, so batch dispatch posts jobs
    instead of a dry run; the jobs endpoint."""
    batch_environment(identity, jobs)
    return jobs


@pytest.fixture
def batch_env(
    app_env: dict[str, str], identity: ManagedIdentityEndpoint, jobs: JobsEndpoint
) -> dict[str, str]:
    """The app settings of app_env, with batch dispatch pointed at the identity and jobs
    stand-ins instead of a dry run."""
    return {**app_env, **batch_environment(identity, jobs)}


@pytest.fixture
def csv_event(
    containers: dict[str, str], upload_event: Callable[..., dict[str, Any]]
) -> Callable[[str], dict[str, Any]]:
    """Upload a small CSV into this test's batch input; return its BlobCreated event."""

    def make(name: str = "incoming/heart.csv") -> dict[str, Any]:
        return upload_event(
            containers["incoming"], name, b"age,sex\n63,1\n", build.CLOUD_EVENT_SCHEMA, "text/csv"
        )

    return make


@pytest.fixture
def batch(
    batch_env: dict[str, str],
    jobs: JobsEndpoint,
    containers: dict[str, str],
    blob_service: BlobServiceClient,
    csv_event: Callable[[str], dict[str, Any]],
) -> Batch:
    """The app dispatching to the jobs stand-in (batch_env), with this test's containers."""
    return Batch(jobs, blob_service, containers["incoming"], containers["ledger"], csv_event)


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
def recorded(make_source: SourceFactory) -> RecordedSource:
    """An event source on this test's routes that delivers to a recording target."""
    target = RecordingTarget()
    return RecordedSource(target, make_source(target))


@pytest.fixture
def upload_event(
    blob_service: BlobServiceClient, azurite_service: azurite.Azurite
) -> Callable[..., dict[str, Any]]:
    """Upload bytes as a blob and return the BlobCreated event Azure would send for it:
    ``upload_event(container, name, data, schema=..., content_type=...)``."""
    return functools.partial(upload, blob_service, azurite_service.blob_url)


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
