"""dispatch_batch_job against Azurite, a local jobs endpoint and a local managed identity.

The stand-ins speak the documented contracts (tools/standins/), so the real
azure-identity and requests code runs end to end.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from azure.storage.blob import BlobServiceClient

from handlers.batch_client import BatchJobClient, DispatchRetry, JobSpec
from handlers.batch_jobs import dispatch_batch_job
from handlers.batch_ledger import CLAIM_TIMEOUT, find_record, ledger_name, ledger_prefix
from handlers.context import AppContext, reset_context
from handlers.errors import (
    ConfigurationError,
    DispatchRejectedError,
    DispatchUnavailableError,
    OutcomeUnknownError,
)
from handlers.outcomes import Outcome
from handlers.pipeline import handle
from tests.support.batch import Batch, blob_created
from tests.support.faults import deliver_at_once
from tests.support.host import invoke, outcome_of
from tools import azurite
from tools.standins import ManagedIdentityEndpoint, Scripted

pytestmark = [pytest.mark.azurite, pytest.mark.http]


@pytest.fixture
def batch_env(batch_env: dict[str, str]) -> dict[str, str]:
    """The shared batch settings, with deployment 'blue' and input 'heart_data'."""
    extra = {"BATCH_DEPLOYMENT": "blue", "BATCH_INPUT_NAME": "heart_data"}
    os.environ.update(extra)
    reset_context()
    return batch_env | extra


def deliver(event: dict[str, Any]) -> Outcome:
    """What the trigger does with the event, returning the outcome it logs."""
    return handle("dispatch_batch_job", event)


def test_posts_the_documented_job_and_records_it(
    batch: Batch, identity: ManagedIdentityEndpoint
) -> None:
    event = batch.upload("incoming/2026/heart disease #3.csv")
    outcome = outcome_of("dispatch_batch_job", event)

    (request,) = batch.jobs.posts()
    assert request.path == "/jobs"
    assert request.headers["Authorization"] == f"Bearer {identity.token}"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["azureml-model-deployment"] == "blue"
    (job_name,) = batch.jobs.jobs
    assert request.json() == {
        "properties": {
            "inputData": {"heart_data": {"jobInputType": "UriFile", "uri": event["data"]["url"]}},
            "name": job_name,
        }
    }
    assert job_name.startswith("job-heart-disease-3-csv-")
    record = batch.record(event)
    assert record["status"] == "dispatched"
    assert record["jobName"] == record["jobRequested"] == job_name
    assert request.headers["repeatability_request-id"] == record["requestId"]
    assert record["eTag"] == event["data"]["eTag"].strip('"')
    assert record["blob"] == "incoming/2026/heart disease #3.csv"
    assert outcome == Outcome("dispatched", f"job {job_name} for {event['data']['url']}")
    (token_request,) = identity.token_requests
    assert token_request.query["resource"] == ["https://ml.azure.com"]


def test_default_deployment_sends_no_deployment_header(
    batch: Batch, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BATCH_DEPLOYMENT")
    reset_context()
    invoke("dispatch_batch_job", batch.upload("incoming/day1/a.csv"))
    (request,) = batch.jobs.posts()
    assert "azureml-model-deployment" not in request.headers


def test_duplicate_and_concurrent_deliveries_start_one_job(batch: Batch) -> None:
    event = batch.upload("incoming/once.csv")
    outcomes = deliver_at_once([("dispatch_batch_job", event)] * 8, outcome_of)
    outcomes.append(deliver({**event, "id": "redelivered"}))
    assert len(batch.jobs.jobs) == 1
    assert len(batch.jobs.posts()) == 1
    assert Counter(outcome.status for outcome in outcomes) == {"dispatched": 1, "duplicate": 8}
    (job_name,) = batch.jobs.jobs
    assert all(job_name in outcome.detail for outcome in outcomes)


def test_a_new_version_gets_its_own_job(batch: Batch) -> None:
    invoke("dispatch_batch_job", batch.upload("incoming/v.csv"))
    invoke("dispatch_batch_job", batch.upload("incoming/v.csv"))
    assert len(batch.jobs.jobs) == 2


def test_429_honours_retry_after(batch: Batch) -> None:
    batch.jobs.script.append(
        Scripted(429, {"error": {"code": "TooManyRequests"}}, {"Retry-After": "1"})
    )
    invoke("dispatch_batch_job", batch.upload("incoming/busy.csv"))
    assert len(batch.jobs.jobs) == 1
    first, second = batch.jobs.posts()
    assert second.received - first.received >= 0.95


def test_429_with_a_long_retry_after_leaves_it_to_event_grid(batch: Batch) -> None:
    batch.jobs.script.append(Scripted(429, None, {"Retry-After": "120"}))
    event = batch.upload("incoming/later.csv")
    with pytest.raises(DispatchUnavailableError, match="Retry-After 120"):
        invoke("dispatch_batch_job", event)
    assert len(batch.jobs.posts()) == 1
    assert batch.record(event) is None  # claim released for the retry
    invoke("dispatch_batch_job", event)  # Event Grid's retry
    assert len(batch.jobs.jobs) == 1


def test_500_then_success(batch: Batch) -> None:
    batch.jobs.script.append(Scripted(500, {"error": {"code": "InternalServerError"}}))
    invoke("dispatch_batch_job", batch.upload("incoming/flaky.csv"))
    assert len(batch.jobs.posts()) == 2
    assert len(batch.jobs.jobs) == 1


@pytest.mark.slow  # real retry back-offs: seconds by design
def test_persistent_5xx_raises_and_is_never_recorded_as_done(batch: Batch) -> None:
    batch.jobs.script.extend([Scripted(503), Scripted(500), Scripted(408)])
    event = batch.upload("incoming/down.csv")
    with pytest.raises(DispatchUnavailableError, match="408 after 3 attempts"):
        invoke("dispatch_batch_job", event)
    assert batch.record(event) is None
    invoke("dispatch_batch_job", event)
    assert len(batch.jobs.jobs) == 1
    assert batch.record(event)["status"] == "dispatched"


def test_400_is_permanent_logged_and_recorded(batch: Batch) -> None:
    body = {"error": {"code": "UserError", "message": "input is not readable"}}
    batch.jobs.script.append(Scripted(400, body))
    event = batch.upload("incoming/bad.csv")
    outcome = deliver(event)  # returns normally: not retried
    assert outcome.status == "failed"
    assert "400" in outcome.detail and "input is not readable" in outcome.detail
    record = batch.record(event)
    assert (record["status"], record["statusCode"]) == ("rejected", 400)
    assert deliver(event).status == "duplicate"
    assert len(batch.jobs.posts()) == 1


def test_unauthorized_is_configuration_and_retried(batch: Batch) -> None:
    batch.jobs.accepted_token = "someone-else"
    event = batch.upload("incoming/denied.csv")
    with pytest.raises(ConfigurationError, match="AzureML Data Scientist"):
        invoke("dispatch_batch_job", event)
    assert batch.record(event) is None


def test_no_answer_is_recorded_as_unknown_and_never_posted_twice(
    batch: Batch, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BATCH_TIMEOUT_SECONDS", "0.5")
    reset_context()
    # Starts the job, answers late.
    batch.jobs.script.append(Scripted(200, delay=1.5, then_normal=True))
    event = batch.upload("incoming/slow.csv")
    outcome = deliver(event)
    assert outcome.status == "failed"
    assert "may exist" in outcome.detail
    name = ledger_name(blob_created(event))
    assert f"delete ledger blob {batch.ledger}/{name} to dispatch" in outcome.detail
    assert deliver(event).status == "duplicate"
    assert len(batch.jobs.jobs) == 1
    assert len(batch.jobs.posts()) == 1
    record = batch.record(event)
    assert record["status"] == "unknown"
    assert record["reason"].endswith("the job may exist")  # the reason, without the advice


def test_an_unknown_outcome_is_raised_once_not_wrapped_in_itself(
    batch: Batch, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BATCH_TIMEOUT_SECONDS", "0.5")
    ctx = AppContext.from_env(os.environ)
    batch.jobs.script.append(Scripted(200, delay=1.5, then_normal=True))
    event = blob_created(batch.upload("incoming/raised.csv"))
    with pytest.raises(OutcomeUnknownError) as raised:
        dispatch_batch_job(event, ctx.blob_service, ctx.settings, ctx.batch_client)
    assert raised.value.ledger_blob == f"{batch.ledger}/{ledger_name(event)}"
    assert isinstance(raised.value.__cause__, requests.ReadTimeout)


@pytest.mark.slow  # real retry back-offs: seconds by design
def test_unreachable_endpoint_is_transient(batch: Batch, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BATCH_ENDPOINT_URI", f"http://127.0.0.1:{azurite.free_port()}/jobs")
    reset_context()
    event = batch.upload("incoming/nowhere.csv")
    with pytest.raises(DispatchUnavailableError, match="could not connect"):
        invoke("dispatch_batch_job", event)
    assert batch.record(event) is None


@pytest.mark.slow  # real retry back-offs: seconds by design
def test_token_endpoint_failure_is_transient(
    batch: Batch, identity: ManagedIdentityEndpoint
) -> None:
    identity.script.extend([Scripted(500, {"error": "unavailable"})] * 10)
    with pytest.raises(DispatchUnavailableError, match="no token"):
        invoke("dispatch_batch_job", batch.upload("incoming/notoken.csv"))
    assert batch.jobs.posts() == []


def test_dry_run_logs_the_request_and_records_nothing(
    app_env: dict[str, str],
    containers: dict[str, str],
    blob_service: BlobServiceClient,
    csv_event: Callable[[str], dict[str, Any]],
) -> None:
    event = csv_event("incoming/dry.csv")
    outcome = deliver(event)
    assert outcome.status == "dry-run"
    body = json.loads(outcome.detail.split("body=", 1)[1])
    assert body["properties"]["inputData"]["input_data"]["uri"] == event["data"]["url"]
    assert "Bearer <token for https://ml.azure.com/.default>" in outcome.detail
    assert not blob_service.get_container_client(containers["ledger"]).exists()


def test_user_assigned_identity_client_id_is_used(
    batch: Batch, identity: ManagedIdentityEndpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AZURE_CLIENT_ID", "11111111-2222-3333-4444-555555555555")
    reset_context()
    invoke("dispatch_batch_job", batch.upload("incoming/uami.csv"))
    (token_request,) = identity.token_requests
    assert token_request.query["client_id"] == ["11111111-2222-3333-4444-555555555555"]
    assert len(batch.jobs.jobs) == 1


def test_a_stale_claim_is_recorded_as_unknown_and_never_posted(batch: Batch) -> None:
    """A delivery that died between claiming and recording may have posted: never post again."""
    event = batch.upload("incoming/orphan.csv")
    name = ledger_name(blob_created(event))
    claimed_at = (datetime.now(UTC) - CLAIM_TIMEOUT - timedelta(seconds=5)).isoformat()
    batch.service.create_container(batch.ledger)
    batch.service.get_blob_client(batch.ledger, name).upload_blob(
        json.dumps({"status": "dispatching", "claimedAt": claimed_at, "eventId": "dead"})
    )
    first, second = deliver(event), deliver(event)
    assert batch.jobs.posts() == []
    record = batch.record(event)
    assert record["status"] == "unknown"
    assert first.status == "failed"
    assert "never recorded the outcome" in first.detail
    assert f"delete ledger blob {batch.ledger}/{name}" in first.detail
    assert second.status == "duplicate"


A_JOB = JobSpec(
    "job-a-csv-1", "http://127.0.0.1/x/a.csv", None, "0f0e5c1e-4b7a-4f52-9d0e-8b3c2a1f6e5d"
)


def client_with(waits: list[float]) -> BatchJobClient:
    """The app's batch client on the app's session and credential, with recorded waits."""
    ctx = AppContext.from_env(os.environ)
    retry = DispatchRetry(sleep=waits.append)
    return BatchJobClient(ctx.settings.batch, ctx.http, ctx.credential, retry)


def test_waits_one_then_two_seconds_then_gives_up(batch: Batch) -> None:
    waits: list[float] = []
    batch.jobs.script.extend([Scripted(500), Scripted(502), Scripted(500)])
    with pytest.raises(DispatchUnavailableError, match="500 after 3 attempts"):
        client_with(waits).submit(A_JOB)
    assert waits == [1.0, 2.0]
    assert len(batch.jobs.posts()) == 3


def test_retry_after_is_honoured_on_any_retried_answer_and_unreadable_ones_back_off(
    batch: Batch,
) -> None:
    waits: list[float] = []
    batch.jobs.script.extend(
        [
            Scripted(503, None, {"Retry-After": "3"}),
            Scripted(429, None, {"Retry-After": "soon"}),
        ]
    )
    name = client_with(waits).submit(A_JOB)
    assert name in batch.jobs.jobs
    assert waits == [3.0, 2.0]  # as asked, then the backoff after the second failure


def test_413_with_retry_after_is_a_rejection_not_a_retry(batch: Batch) -> None:
    batch.jobs.script.append(Scripted(413, {"error": {"code": "TooLarge"}}, {"Retry-After": "1"}))
    with pytest.raises(DispatchRejectedError, match="413") as raised:
        client_with([]).submit(A_JOB)
    assert "TooLarge" in raised.value.body
    assert len(batch.jobs.posts()) == 1


def test_a_connection_dropped_after_the_request_is_never_posted_again(
    batch_env: dict[str, str],
) -> None:
    """The endpoint read the whole request and hung up: it may have started the job."""
    received: list[bytes] = []
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(30)

    def hang_up_after_reading() -> None:
        with contextlib.suppress(OSError):
            while True:
                connection, _ = listener.accept()
                with connection:
                    received.append(connection.recv(65536))

    threading.Thread(target=hang_up_after_reading, daemon=True).start()
    os.environ["BATCH_ENDPOINT_URI"] = f"http://127.0.0.1:{listener.getsockname()[1]}/jobs"
    try:
        with pytest.raises(OutcomeUnknownError, match="the job may exist"):
            client_with([]).submit(A_JOB)
    finally:
        listener.close()
    assert len(received) == 1 and received[0].startswith(b"POST /jobs")


def test_ledger_lookups_for_tools(batch: Batch) -> None:
    """Tools find a blob's records by prefix and ask whether a version was dispatched."""
    ctx = AppContext.from_env(os.environ)
    first, second = batch.upload("incoming/twice.csv"), batch.upload("incoming/twice.csv")
    batch.jobs.script.append(Scripted(404, {"error": {"code": "DeploymentNotFound"}}))
    assert deliver(first).status == "failed"
    assert deliver(second).status == "dispatched"
    untouched = blob_created(batch.upload("incoming/other.csv"))

    prefix = ledger_prefix(batch.incoming, "incoming/twice.csv")
    listed = {b.name for b in batch.service.get_container_client(batch.ledger).list_blobs(prefix)}
    versions = {ledger_name(blob_created(e)) for e in (first, second)}
    assert listed == versions and len(versions) == 2
    assert not ledger_prefix(batch.incoming, "incoming/other.csv").startswith(prefix)

    rejected = find_record(ctx.blob_service, ctx.settings, blob_created(first))
    dispatched = find_record(ctx.blob_service, ctx.settings, blob_created(second))
    assert rejected is not None and dispatched is not None
    assert (rejected.status, rejected.job_name) == ("rejected", None)
    assert (dispatched.status, dispatched.job_name) == ("dispatched", next(iter(batch.jobs.jobs)))
    assert (dispatched.container, dispatched.name) == (
        batch.ledger,
        ledger_name(blob_created(second)),
    )
    assert find_record(ctx.blob_service, ctx.settings, untouched) is None
