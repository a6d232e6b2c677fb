"""The event source delivers like Event Grid: to the functions (in-process or through the
host's webhook), retried, dead-lettered in Event Grid's format, waiting for a host that is
down, and kept across restarts."""

from __future__ import annotations

import io
import json
import os
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from azure.storage.blob import BlobServiceClient
from PIL import Image

from tests.support.event_source import (
    RecordedSource,
    RecordingTarget,
    SourceFactory,
    client,
    jpeg,
    point_functions_at,
    thumbnail_of,
)
from tests.support.polling import poll
from tools import azurite, deadletter_format
from tools.eventsource import InProcessTarget, Report, WebhookTarget
from tools.standins.functions_host import FunctionsHostStandIn

# Every test runs with the app settings on its own containers (the functions read them).
pytestmark = [pytest.mark.azurite, pytest.mark.usefixtures("app_env")]


# --- end to end with the functions ---------------------------------------------------------


def test_upload_through_the_pass_through_makes_a_thumbnail(
    containers: dict[str, str], make_source: SourceFactory
) -> None:
    source = make_source(InProcessTarget())
    point_functions_at(source)
    service = client(source)
    name = "holiday/beach day #1 é.jpg"  # spaces, '#', unicode round-trip
    service.get_blob_client(containers["images"], name).upload_blob(jpeg((640, 400)))

    thumbnail = Image.open(io.BytesIO(thumbnail_of(service, containers, name)))
    assert max(thumbnail.size) == 128


# --- retries, dead-letters, hosts that are down, restarts -------------------------------------


def dead_letters(service: BlobServiceClient, container: str) -> list[tuple[str, Any]]:
    blobs = service.get_container_client(container)
    if not blobs.exists():
        return []
    return [
        (item.name, json.loads(blobs.get_blob_client(item.name).download_blob().readall()))
        for item in blobs.list_blobs()
    ]


def first_dead_letter(service: BlobServiceClient, container: str) -> tuple[str, Any]:
    """(name, JSON) of the first dead-letter blob, once there is one."""
    return poll(
        lambda: (found := dead_letters(service, container)) and found[0],
        10,
        "the dead-letter blob",
    )


def test_a_failing_handler_is_retried_then_dead_lettered(
    containers: dict[str, str],
    make_source: SourceFactory,
    blob_service: BlobServiceClient,
) -> None:
    os.environ["THUMBNAIL_SIZE"] = "1"  # a configuration error: the function raises
    target = InProcessTarget()
    source = make_source(target, maxDeliveryAttempts=3)
    point_functions_at(source)
    reports: list[Report] = []
    source.dispatcher.listeners.append(reports.append)
    before = datetime.now(UTC)
    upload = client(source).get_blob_client(containers["images"], "broken.jpg").upload_blob(jpeg())

    (name, document) = first_dead_letter(blob_service, containers["deadletter"])
    after = datetime.now(UTC)
    parsed = deadletter_format.parse_name(name)
    assert parsed.subscription == "THUMBNAILS"
    assert uuid.UUID(parsed.id).version == 4
    hours = {t.replace(minute=0, second=0, microsecond=0) for t in (before, after)}
    assert parsed.hour in hours
    (event,) = document
    assert event["data"]["eTag"] == upload["etag"]
    assert event["eventType"] == "Microsoft.Storage.BlobCreated"
    assert event["deadLetterReason"] == "MaxDeliveryAttemptsExceeded"
    assert event["deliveryAttempts"] == 3
    assert event["lastDeliveryOutcome"] == "GenericError"
    assert event["lastHttpStatusCode"] == 500
    published = datetime.fromisoformat(event["publishTime"])
    last_attempt = datetime.fromisoformat(event["lastDeliveryAttemptTime"])
    assert before <= published <= last_attempt <= after
    attempts = [report for report in reports if report.result is not None]
    assert [report.delivery.attempts for report in attempts] == [1, 2, 3]
    # Backoff: 10 s then 30 s in Event Grid's schedule, times the 0.01 scale.
    times = [report.delivery.last_attempt or 0.0 for report in attempts]
    assert times[1] - times[0] >= 0.1
    assert times[2] - times[1] >= 0.3
    assert source.queue.pending() == []


def test_an_event_past_its_time_to_live_is_dead_lettered_with_cloud_event_fields(
    containers: dict[str, str],
    make_source: SourceFactory,
    blob_service: BlobServiceClient,
) -> None:
    target = RecordingTarget(statuses=[503])
    # One minute to live at the 0.01 scale: 0.6 s; 30 attempts would take far longer.
    source = make_source(target, eventTimeToLiveInMinutes=1, maxDeliveryAttempts=30)
    client(source).get_blob_client(containers["incoming"], "incoming/late.csv").upload_blob(b"a")

    (name, document) = first_dead_letter(blob_service, containers["deadletter"])
    assert name.startswith("BATCH/")
    (event,) = document
    assert event["specversion"] == "1.0"
    assert event["deadletterreason"] == "TimeToLiveExceeded"
    assert event["lastdeliveryoutcome"] == "Busy"
    assert event["lasthttpstatuscode"] == 503
    assert 1 <= event["deliveryattempts"] < 30
    assert event["deliveryattempts"] == len(target.deliveries)


def test_a_bad_request_is_not_retried(
    containers: dict[str, str], recorded: RecordedSource, blob_service: BlobServiceClient
) -> None:
    target = recorded.target
    target.statuses[:] = [400]
    recorded.service.get_blob_client(containers["images"], "bad.jpg").upload_blob(b"x")

    (_, document) = first_dead_letter(blob_service, containers["deadletter"])
    assert document[0]["deadLetterReason"] == "UndeliverableDueToHttpBadRequest"
    assert document[0]["deliveryAttempts"] == 1
    assert len(target.deliveries) == 1


@pytest.mark.http
def test_webhook_delivery_is_what_func_start_expects(
    containers: dict[str, str], make_source: SourceFactory
) -> None:
    host = FunctionsHostStandIn(run_functions=False, status=202)
    try:
        source = make_source(WebhookTarget(host.url))
        service = client(source)
        upload = service.get_blob_client(containers["images"], "hook.jpg").upload_blob(b"x")
        service.get_blob_client(containers["incoming"], "incoming/hook.csv").upload_blob(b"y")
        poll(lambda: len(host.requests) == 2 and not source.queue.pending(), 10, "2 webhooks")
    finally:
        host.stop()
    by_function = {request.query["functionName"][0]: request for request in host.requests}
    assert set(by_function) == {"create_thumbnail", "dispatch_batch_job"}
    for request in host.requests:
        assert request.method == "POST"
        assert request.path == "/runtime/webhooks/EventGrid"
        assert list(request.query) == ["functionName"]
        assert request.headers["Content-Type"] == "application/json"
        assert request.headers["aeg-event-type"] == "Notification"
        assert int(request.headers["Content-Length"]) == len(request.body)
    (thumbnail_event,) = by_function["create_thumbnail"].json()
    assert thumbnail_event["eventType"] == "Microsoft.Storage.BlobCreated"
    assert thumbnail_event["data"]["eTag"] == upload["etag"]
    (batch_event,) = by_function["dispatch_batch_job"].json()
    assert batch_event["specversion"] == "1.0"


@pytest.mark.http
def test_an_upload_made_while_the_host_is_down_is_delivered_when_it_comes_up(
    containers: dict[str, str], make_source: SourceFactory
) -> None:
    host_port = azurite.free_port()
    source = make_source(WebhookTarget(f"http://127.0.0.1:{host_port}"))
    point_functions_at(source)
    service = client(source)
    service.get_blob_client(containers["images"], "waiting.jpg").upload_blob(jpeg())
    time.sleep(0.5)  # the host stays down a while; the event must wait, not be used up
    (pending,) = source.queue.pending()
    assert pending.attempts == 0

    host = FunctionsHostStandIn(host_port)
    try:
        thumbnail_of(service, containers, "waiting.jpg")
        poll(lambda: not source.queue.pending(), 10, "the delivery to complete")
    finally:
        host.stop()
    assert len(host.requests) == 1


@pytest.mark.http
def test_pending_deliveries_survive_a_restart_of_the_event_source(
    containers: dict[str, str],
    make_source: SourceFactory,
    tmp_path: Path,
) -> None:
    host_port, source_port = azurite.free_port(), azurite.free_port()
    state = tmp_path / "restart"
    first = make_source(
        WebhookTarget(f"http://127.0.0.1:{host_port}"), state_dir=state, port=source_port
    )
    point_functions_at(first)
    client(first).get_blob_client(containers["images"], "restart.jpg").upload_blob(jpeg())
    assert len(first.queue.pending()) == 1
    first.stop()

    host = FunctionsHostStandIn(host_port)
    try:
        second = make_source(
            WebhookTarget(f"http://127.0.0.1:{host_port}"), state_dir=state, port=source_port
        )
        thumbnail_of(client(second), containers, "restart.jpg")
        poll(lambda: not second.queue.pending(), 10, "the queue to drain")
    finally:
        host.stop()
    (request,) = host.requests
    assert request.json()[0]["subject"].endswith("/blobs/restart.jpg")
