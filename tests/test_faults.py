"""Faults underneath the functions: storage going away mid-run and coming back, and a batch
endpoint that throttles, fails and answers too late. Event Grid's retry is simulated by
delivering again every event whose invocation raised; in the end everything is processed
once, nothing is lost and nothing is done twice."""

from __future__ import annotations

import json
import logging
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from azure.storage.blob import BlobServiceClient, LinearRetry

from handlers import batch_index
from handlers.batch_client import BatchJobClient, DispatchRetry
from handlers.batch_ledger import ClaimWait
from handlers.context import AppContext, reset_context
from handlers.outcomes import Outcome
from handlers.pipeline import handle
from handlers.thumbnails import SOURCE_ETAG
from tests.support import images as gen
from tests.support.faults import (
    FaultProxy,
    RedeliveryReport,
    batch_environment,
    outcomes_by_blob,
    redeliver_until_done,
    run_round,
    with_duplicates,
)
from tests.support.host import outcome_of
from tests.support.polling import poll
from tests.support.uploads import upload
from tools import azurite
from tools import events as build
from tools.standins import JobsEndpoint, ManagedIdentityEndpoint, Recorded, Scripted

pytestmark = [pytest.mark.azurite, pytest.mark.http, pytest.mark.slow]

WORKERS = 8


@pytest.fixture
def proxy(azurite_service: azurite.Azurite) -> Iterator[FaultProxy]:
    server = FaultProxy(azurite_service.port)
    yield server
    server.stop()


@dataclass
class RestartableAzurite:
    """An Azurite of this test's own that keeps its data on disk, so that it can be stopped
    and started again on the same port."""

    port: int
    location: Path
    running: azurite.Azurite

    def stop(self) -> None:
        self.running.stop()

    def start(self) -> None:
        self.running = azurite.start(port=self.port, location=self.location)


@pytest.fixture
def own_azurite(tmp_path: Path) -> Iterator[RestartableAzurite]:
    port = azurite.free_port()
    location = tmp_path / "azurite"
    storage = RestartableAzurite(port, location, azurite.start(port=port, location=location))
    yield storage
    storage.stop()


def use_storage(blob_port: int, containers: dict[str, str]) -> str:
    """Point the app at the blob endpoint on ``blob_port``; return that endpoint's URL."""
    os.environ.update(
        {
            "DATA_STORAGE": azurite.connection_string(blob_port),
            "THUMBNAIL_CONTAINER": containers["thumbnails"],
            "DISPATCH_LEDGER_CONTAINER": containers["ledger"],
            "DEADLETTER_CONTAINER": containers["deadletter"],
        }
    )
    os.environ.pop("BATCH_ENDPOINT_URI", None)
    reset_context()
    return f"http://127.0.0.1:{blob_port}/{azurite.ACCOUNT}"


def thumbnails_by_name(service: BlobServiceClient, container: str) -> dict[str, dict[str, str]]:
    client = service.get_container_client(container)
    if not client.exists():
        return {}
    return {blob.name: blob.metadata for blob in client.list_blobs(include=["metadata"])}


def ledger_records(service: BlobServiceClient, container: str) -> list[dict[str, Any]]:
    client = service.get_container_client(container)
    if not client.exists():
        return []
    return [
        json.loads(client.download_blob(blob.name).readall())
        for blob in client.list_blobs()
        if not batch_index.is_reserved(blob.name)  # the open-jobs markers are not records
    ]


def test_azurite_stopped_and_restarted_mid_run(
    own_azurite: RestartableAzurite,
    containers: dict[str, str],
    identity: ManagedIdentityEndpoint,
    jobs: JobsEndpoint,
) -> None:
    """Storage dies under thumbnail deliveries in flight, batch events arrive while it is
    down, then it comes back: every delivery that raised is delivered again, each image ends
    with exactly one thumbnail of its version and each batch blob with exactly one job."""
    base_url = use_storage(own_azurite.port, containers)
    batch_environment(identity, jobs)
    service = BlobServiceClient.from_connection_string(azurite.connection_string(own_azurite.port))
    images, incoming = containers["images"], containers["incoming"]
    service.create_container(images)
    service.create_container(incoming)
    events = {}
    for number in range(40):
        name = f"shoot/{number:02d}.jpg"
        data = gen.encode(gen.halves((120 + number, 80 + number)), "JPEG")
        events[f"{images}/{name}"] = upload(service, base_url, images, name, data)
    order = with_duplicates(
        [("create_thumbnail", event) for event in events.values()], copies=2, seed=7
    )
    batch_events = [
        upload(service, base_url, incoming, f"incoming/{n}.csv", b"a,b\n1,2\n", schema)
        for n, schema in enumerate([build.CLOUD_EVENT_SCHEMA, build.EVENT_GRID_SCHEMA] * 4)
    ]

    report = RedeliveryReport()
    during_outage = RedeliveryReport()
    outage: dict[str, Any] = {}

    def break_storage() -> None:
        poll(lambda: report.attempts >= len(order) // 4, 60, "a quarter of the deliveries")
        own_azurite.stop()
        # Batch events that arrive now cannot even claim their blob: nothing may be posted.
        outage["batch"] = run_round(
            [("dispatch_batch_job", event) for event in batch_events],
            outcome_of,
            WORKERS,
            during_outage,
        )
        outage["posts"] = jobs.posts()
        poll(
            lambda: report.raised or report.attempts == len(order),
            60,
            "a thumbnail delivery to fail while storage is down",
        )
        own_azurite.start()

    controller = threading.Thread(target=break_storage, daemon=True)
    controller.start()
    failed = run_round(order, outcome_of, WORKERS, report)
    controller.join(timeout=120)
    assert not controller.is_alive()
    assert report.raised, "no thumbnail delivery felt the outage"
    # Storage failures are transient: raised so that Event Grid delivers again.
    assert set(report.raised_types()) == {"StorageUnavailableError"}, report.raised_types()
    assert len(outage["batch"]) == len(batch_events)
    assert set(during_outage.raised_types()) == {"StorageUnavailableError"}
    assert outage["posts"] == []
    redeliver_until_done(failed, outcome_of, WORKERS, report, max_rounds=4)
    redeliver_until_done(outage["batch"], outcome_of, WORKERS, during_outage, max_rounds=4)

    written = thumbnails_by_name(service, containers["thumbnails"])
    assert written.keys() == events.keys()  # nothing lost
    for name, metadata in written.items():
        assert metadata[SOURCE_ETAG] == events[name]["data"]["eTag"].strip('"')
    for blob, counts in outcomes_by_blob(report, "create_thumbnail").items():
        # One final outcome per delivery; at most one of them wrote. A write whose answer
        # was lost with the connection is seen as done (duplicate) by the next delivery.
        assert sum(counts.values()) == 2, (blob, counts)
        assert counts["written"] <= 1 and set(counts) <= {"written", "duplicate"}, (blob, counts)

    urls = [event["data"]["url"] for event in batch_events]
    assert jobs.job_uris() == Counter(dict.fromkeys(urls, 1))
    assert len(jobs.posts()) == len(batch_events)
    records = ledger_records(service, containers["ledger"])
    assert sorted(r["status"] for r in records) == ["dispatched"] * len(batch_events)


class StorageDropsOnFirstPost(JobsEndpoint):
    """Starts the first job, but storage goes away before the answer reaches the function."""

    def __init__(self, accepted_token: str, proxy: FaultProxy) -> None:
        self.proxy = proxy
        self.dropped = False
        super().__init__(accepted_token)

    def answer(
        self, request: Recorded, scripted: Scripted | None
    ) -> tuple[int, Any, dict[str, str]]:
        result = super().answer(request, scripted)
        if request.method == "POST" and not self.dropped:
            self.dropped = True
            self.proxy.down()
        return result


def test_storage_lost_after_the_job_was_posted_still_starts_one_job(
    containers: dict[str, str],
    blob_service: BlobServiceClient,
    proxy: FaultProxy,
    identity: ManagedIdentityEndpoint,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The job is posted, then storage goes away before the ledger says so: the function
    returns (the job exists), and every later delivery, even once the claim is stale, never
    posts a second job; the version reads as unknown for an operator to check."""
    caplog.set_level(logging.INFO)
    base_url = use_storage(proxy.port, containers)
    jobs = StorageDropsOnFirstPost(identity.token, proxy)
    try:
        batch_environment(identity, jobs)
        # The storage SDK's own retries (about 8 s against a dead endpoint) are not what this
        # is about; without them the failure reaches the handler at once.
        no_retry = LinearRetry(backoff=0, retry_total=0)
        now = AppContext.from_env(os.environ, storage_retry=no_retry)
        event = upload(
            blob_service, base_url, containers["incoming"], "incoming/late.csv", b"a\n1\n"
        )
        # Returns: the job exists.
        outcome = outcome_of("dispatch_batch_job", event, now)
        (job_name,) = jobs.jobs
        assert outcome == Outcome(
            "dispatched", f"job {job_name} for {event['data']['url']}; ledger not updated"
        )
        assert any(
            job_name in r.getMessage() and "could not be updated" in r.getMessage()
            for r in caplog.records
        )
        proxy.up()
        # Event Grid keeps retrying for up to 24 h; stand for the time it takes the claim
        # to turn stale (CLAIM_TIMEOUT) without waiting for it: by then every claim is stale.
        later = AppContext.from_env(
            os.environ, storage_retry=no_retry, claim_wait=ClaimWait(stale_after=timedelta(0))
        )

        def deliver_later(function: str, payload: dict[str, Any]) -> Outcome:
            return outcome_of(function, payload, later)

        redeliver_until_done(
            [("dispatch_batch_job", event)], deliver_later, 1, RedeliveryReport(), max_rounds=3
        )
        again = deliver_later("dispatch_batch_job", event)
        assert again.status == "duplicate" and "already unknown" in again.detail
        assert len(jobs.jobs) == 1
        assert len(jobs.posts()) == 1
        (record,) = ledger_records(blob_service, containers["ledger"])
        assert record["status"] == "unknown"
        assert "the job may exist" in record["reason"]
    finally:
        jobs.stop()


class FlappingContext(AppContext):
    """The app's context with a batch client whose waits are short and recorded, so that a
    flapping endpoint can be driven through many retries quickly."""

    def __init__(self, backoff_factor: float) -> None:
        super().__init__(AppContext.from_env(os.environ).settings)
        self.waits: list[float] = []
        retry = DispatchRetry(backoff_factor=backoff_factor, sleep=self._sleep)
        self._client = BatchJobClient(self.settings.batch, self.http, self.credential, retry)

    def _sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        time.sleep(min(seconds, 0.02))

    @property
    def batch_client(self) -> BatchJobClient:
        return self._client


def flapping_script(seed: int, count: int) -> tuple[list[Scripted], Counter[str]]:
    """A seeded mix of throttling, server errors, late answers and normal answers."""
    rng = random.Random(seed)
    kinds = {
        "normal": (45, lambda: Scripted(200, then_normal=True)),
        "429 short": (14, lambda: Scripted(429, None, {"Retry-After": rng.choice(["0", "1"])})),
        "429 long": (5, lambda: Scripted(429, None, {"Retry-After": "120"})),
        "500": (14, lambda: Scripted(500, {"error": {"code": "InternalServerError"}})),
        "503": (8, lambda: Scripted(503)),
        "late": (14, lambda: Scripted(200, delay=0.6, then_normal=True)),
    }
    names = list(kinds)
    chosen = rng.choices(names, weights=[kinds[n][0] for n in names], k=count)
    return [kinds[name][1]() for name in chosen], Counter(chosen)


def test_flapping_batch_endpoint_ends_with_one_job_per_version(
    app_env: dict[str, str],
    containers: dict[str, str],
    azurite_service: azurite.Azurite,
    blob_service: BlobServiceClient,
    dispatching: JobsEndpoint,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    jobs = dispatching
    monkeypatch.setenv("BATCH_TIMEOUT_SECONDS", "0.3")
    incoming = containers["incoming"]
    base_url = azurite_service.blob_url
    events = []
    for number in range(40):
        name = f"incoming/part-{number:02d}.csv"
        events.append(upload(blob_service, base_url, incoming, name, b"x\n1\n"))
        if number % 5 == 0:  # a second version of the same blob: a job of its own
            events.append(upload(blob_service, base_url, incoming, name, b"x\n1\n2\n"))
    versions = Counter(event["data"]["url"] for event in events)
    script, kinds = flapping_script(seed=11, count=120)
    jobs.script.extend(script)

    flapping = FlappingContext(backoff_factor=0.01)
    report = RedeliveryReport()
    order = with_duplicates([("dispatch_batch_job", event) for event in events], 2, seed=5)

    def deliver(function: str, event: dict[str, Any]) -> Outcome:
        return handle(function, event, flapping)

    failed = run_round(order, deliver, WORKERS, report)
    redeliver_until_done(failed, deliver, WORKERS, report, max_rounds=15)
    allowed = {"DispatchUnavailableError", "DispatchInProgressError"}
    assert set(report.raised_types()) <= allowed, report.raised_types()

    # The point: one job per blob version, whatever the endpoint did.
    assert jobs.job_uris() == versions
    records = ledger_records(blob_service, containers["ledger"])
    assert len(records) == len(events)
    statuses = Counter(record["status"] for record in records)
    assert set(statuses) <= {"dispatched", "unknown"}, statuses
    # A late answer is recorded as unknown and never posted again: its job is the one job.
    dispatched_names = {r["jobName"] for r in records if r["status"] == "dispatched"}
    assert dispatched_names <= set(jobs.jobs)
    assert len(jobs.jobs) - len(dispatched_names) == statuses["unknown"]
    versions_of = {f"{incoming}/{e['subject'].split('/blobs/', 1)[1]}": 0 for e in events}
    for event in events:
        versions_of[f"{incoming}/{event['subject'].split('/blobs/', 1)[1]}"] += 1
    for blob, counts in outcomes_by_blob(report, "dispatch_batch_job").items():
        # Per version: one delivery started the job (dispatched, or failed when the answer
        # came too late), the other copy found it done.
        expected = versions_of[blob]
        assert counts["dispatched"] + counts["failed"] == expected, (blob, counts)
        assert counts["duplicate"] == expected, (blob, counts)
        assert set(counts) <= {"dispatched", "failed", "duplicate"}, (blob, counts)
    print(
        f"endpoint answers {dict(kinds)}; ledger {dict(statuses)}; raised {report.raised_types()}"
    )
    if kinds["429 short"]:
        assert {0.0, 1.0} & set(flapping.waits), "Retry-After was not honoured"
