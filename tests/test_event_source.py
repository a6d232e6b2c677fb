"""The local event source end to end: the standard storage SDK talks to Azurite through the
pass-through, each blob-creating write becomes a BlobCreated event routed like Event Grid,
delivered in-process or to a webhook, retried, dead-lettered, and kept across restarts."""

from __future__ import annotations

import io
import json
import os
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import BlobServiceClient, ContentSettings
from PIL import Image

from handlers.context import reset_context
from tests.support.local_loop import RecordingTarget, routes_for
from tests.support.names import unique
from tests.support.polling import poll
from tools import azurite, deadletter_format
from tools.eventsource import (
    EventSource,
    EventSourceConfig,
    InProcessTarget,
    PortInUseError,
    Report,
    RetryTiming,
    Target,
    WebhookTarget,
)
from tools.eventsource.proxy import PassThrough
from tools.routes import Routes
from tools.standins.functions_host import FunctionsHostStandIn

pytestmark = pytest.mark.azurite

FAST = RetryTiming(time_scale=0.01, max_delay=1.0)


def jpeg(size: tuple[int, int] = (320, 200)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 40, 40)).save(buffer, "JPEG")
    return buffer.getvalue()


SourceFactory = Callable[..., EventSource]


@pytest.fixture
def make_source(
    azurite_service: azurite.Azurite, containers: dict[str, str], tmp_path: Path
) -> Iterator[SourceFactory]:
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


def point_functions_at(source: EventSource) -> None:
    """The functions read the blobs through the event source, as under `make run`."""
    os.environ["DATA_STORAGE"] = source.connection_string
    reset_context()


def client(source: EventSource, **options: Any) -> BlobServiceClient:
    return BlobServiceClient.from_connection_string(source.connection_string, **options)


def delivered_events(target: RecordingTarget, source: EventSource) -> list[dict[str, Any]]:
    """Every event for writes made so far, once none is left to deliver.

    The pass-through records an event before it relays Azurite's answer, so when an upload
    has returned its events are queued; an empty queue means all of them reached the target.
    """
    poll(lambda: not source.queue.pending(), 10, "the queue to drain")
    return target.events()


def thumbnail_of(service: BlobServiceClient, containers: dict[str, str], name: str) -> bytes:
    blob = service.get_blob_client(containers["thumbnails"], f"{containers['images']}/{name}")
    return poll(
        lambda: blob.download_blob().readall() if blob.exists() else None, 10, f"thumbnail {name}"
    )


# --- end to end with the functions ---------------------------------------------------------


def test_upload_through_the_pass_through_makes_a_thumbnail(
    app_env: dict[str, str], containers: dict[str, str], make_source: SourceFactory
) -> None:
    source = make_source(InProcessTarget())
    point_functions_at(source)
    service = client(source)
    name = "holiday/beach day #1 é.jpg"  # spaces, '#', unicode round-trip
    service.get_blob_client(containers["images"], name).upload_blob(jpeg((640, 400)))

    thumbnail = Image.open(io.BytesIO(thumbnail_of(service, containers, name)))
    assert max(thumbnail.size) == 128


def test_batch_route_gets_cloud_events(
    app_env: dict[str, str], containers: dict[str, str], make_source: SourceFactory
) -> None:
    target = RecordingTarget()
    source = make_source(target)
    service = client(source)
    service.get_blob_client(containers["incoming"], "incoming/rows.csv").upload_blob(b"a,b\n")
    service.get_blob_client(containers["incoming"], "elsewhere/rows.csv").upload_blob(b"a,b\n")

    (event,) = delivered_events(target, source)
    assert target.deliveries[0][0] == "dispatch_batch_job"
    assert event["specversion"] == "1.0"
    assert event["type"] == "Microsoft.Storage.BlobCreated"
    assert event["subject"] == (
        f"/blobServices/default/containers/{containers['incoming']}/blobs/incoming/rows.csv"
    )
    assert event["source"].endswith(f"/storageAccounts/{azurite.ACCOUNT}")


# --- which writes make events, and what they say --------------------------------------------


def test_put_blob_event_is_shaped_like_azures(
    app_env: dict[str, str], containers: dict[str, str], make_source: SourceFactory
) -> None:
    target = RecordingTarget()
    source = make_source(target)
    blob = client(source).get_blob_client(containers["images"], "a/b c.png")
    data = b"\x89PNG not really" * 100
    sent: dict[str, str] = {}
    result = blob.upload_blob(
        data,
        content_settings=ContentSettings(content_type="image/png"),
        raw_request_hook=lambda request: sent.update(request.http_request.headers),
        raw_response_hook=lambda response: sent.update(
            request_id=response.http_response.headers["x-ms-request-id"]
        ),
    )

    (event,) = delivered_events(target, source)
    assert target.deliveries[0][0] == "create_thumbnail"
    assert set(event) == {
        "id",
        "topic",
        "subject",
        "eventType",
        "eventTime",
        "data",
        "dataVersion",
        "metadataVersion",
    }
    assert event["eventType"] == "Microsoft.Storage.BlobCreated"
    assert (
        event["subject"]
        == f"/blobServices/default/containers/{containers['images']}/blobs/a/b c.png"
    )
    data_fields = event["data"]
    assert data_fields["api"] == "PutBlob"
    assert data_fields["eTag"] == result["etag"]
    assert data_fields["contentType"] == "image/png"
    assert data_fields["contentLength"] == len(data)
    assert data_fields["blobType"] == "BlockBlob"
    assert data_fields["url"] == f"{source.blob_url}/{containers['images']}/a/b%20c.png"
    assert data_fields["clientRequestId"] == sent["x-ms-client-request-id"]
    assert data_fields["requestId"] == sent["request_id"]
    assert re.fullmatch(r"[0-9a-f]{48}", data_fields["sequencer"])


def test_chunked_upload_makes_exactly_one_event(
    app_env: dict[str, str], containers: dict[str, str], make_source: SourceFactory
) -> None:
    target = RecordingTarget()
    source = make_source(target)
    service = client(source, max_single_put_size=256 * 1024, max_block_size=256 * 1024)
    data = os.urandom(5 * 256 * 1024 + 123)
    result = service.get_blob_client(containers["images"], "big/scan.tif").upload_blob(
        data, content_settings=ContentSettings(content_type="image/tiff"), max_concurrency=2
    )

    (event,) = delivered_events(target, source)
    assert event["data"]["api"] == "PutBlockList"
    assert event["data"]["contentLength"] == len(data)  # read back from Azurite
    assert event["data"]["contentType"] == "image/tiff"
    assert event["data"]["eTag"] == result["etag"]


def test_overwrite_makes_a_new_event(
    app_env: dict[str, str], containers: dict[str, str], make_source: SourceFactory
) -> None:
    target = RecordingTarget()
    source = make_source(target)
    blob = client(source).get_blob_client(containers["images"], "again.jpg")
    first = blob.upload_blob(b"one")
    second = blob.upload_blob(b"two!", overwrite=True)

    events = delivered_events(target, source)
    assert [event["data"]["eTag"] for event in events] == [first["etag"], second["etag"]]
    assert events[0]["id"] != events[1]["id"]
    assert events[0]["data"]["sequencer"] < events[1]["data"]["sequencer"]
    assert events[1]["data"]["contentLength"] == 4


def test_a_copy_makes_an_event_with_the_copys_properties(
    app_env: dict[str, str], containers: dict[str, str], make_source: SourceFactory
) -> None:
    target = RecordingTarget()
    source = make_source(target)
    service = client(source)
    original = service.get_blob_client(containers["incoming"], "source.jpg")
    original.upload_blob(b"x" * 1000, content_settings=ContentSettings(content_type="image/jpeg"))
    copied = service.get_blob_client(containers["images"], "copied.jpg")
    copied.start_copy_from_url(original.url)

    (event,) = delivered_events(target, source)
    data = event["data"]
    assert data["api"] == "CopyBlob"
    assert data["contentLength"] == 1000  # read back from Azurite
    assert data["contentType"] == "image/jpeg"
    assert data["eTag"] == copied.get_blob_properties().etag
    assert event["subject"].endswith("/blobs/copied.jpg")


@pytest.mark.parametrize(
    ("method", "target", "headers", "expected"),
    [
        ("PUT", "/acc/c/a/b.jpg", {"x-ms-blob-type": "BlockBlob"}, "PutBlob"),
        ("PUT", "/acc/c/b.jpg", {"x-ms-blob-type": "PageBlob"}, "PutBlob"),
        ("PUT", "/acc/c/b.jpg?comp=blocklist", {}, "PutBlockList"),
        ("PUT", "/acc/c/b.jpg", {"x-ms-copy-source": "http://x/y"}, "CopyBlob"),
        (
            "PUT",
            "/acc/c/b.jpg",
            {"x-ms-copy-source": "http://x/y", "x-ms-requires-sync": "true"},
            "CopyBlob",
        ),
        (
            "PUT",
            "/acc/c/b.jpg",
            {"x-ms-copy-source": "http://x/y", "x-ms-blob-type": "BlockBlob"},
            "PutBlobFromUrl",  # Azurite 3.37 does not implement it; classified all the same
        ),
        ("PUT", "/acc/c/b.jpg?comp=block&blockid=QQ==", {}, None),
        ("PUT", "/acc/c/b.jpg?comp=metadata", {}, None),
        ("PUT", "/acc/c?restype=container", {}, None),
        ("GET", "/acc/c/b.jpg", {}, None),
        ("DELETE", "/acc/c/b.jpg", {}, None),
    ],
)
def test_which_requests_create_blobs(
    method: str, target: str, headers: dict[str, str], expected: str | None
) -> None:
    from email.message import Message

    from tools.eventsource.proxy import classify

    message = Message()
    for key, value in headers.items():
        message[key] = value
    found = classify(method, target, message)
    assert (found[0] if found else None) == expected
    if found:
        assert found[1:3] == ("acc", "c")


def test_blobs_outside_every_route_make_no_event(
    app_env: dict[str, str],
    containers: dict[str, str],
    make_source: SourceFactory,
    blob_service: BlobServiceClient,
) -> None:
    target = RecordingTarget()
    source = make_source(target)
    service = client(source)
    elsewhere = unique("elsewhere")
    service.create_container(elsewhere)
    service.get_blob_client(elsewhere, "photo.jpg").upload_blob(b"not routed")
    service.get_blob_client(containers["images"], "notes.txt").upload_blob(b"not an image")
    service.get_blob_client(containers["incoming"], "outgoing/rows.csv").upload_blob(b"a")
    service.create_container(containers["thumbnails"])
    service.get_blob_client(containers["thumbnails"], "x.jpg").upload_blob(b"output")

    assert delivered_events(target, source) == []
    assert source.queue.pending() == []


# --- everything else passes through unchanged ------------------------------------------------


def test_reads_lists_deletes_and_container_operations_pass_through(
    app_env: dict[str, str],
    containers: dict[str, str],
    make_source: SourceFactory,
    blob_service: BlobServiceClient,
) -> None:
    target = RecordingTarget()
    source = make_source(target)
    through = client(source)
    name = unique("passthrough")
    container = through.create_container(name, metadata={"purpose": "test"})
    data = os.urandom(300_000)
    container.upload_blob("dir/one.bin", data)
    container.upload_blob("dir/two.bin", b"2")
    direct = blob_service.get_container_client(name)

    assert direct.get_container_properties().metadata == {"purpose": "test"}
    assert container.get_container_properties().etag == direct.get_container_properties().etag
    assert [b.name for b in container.list_blobs()] == [b.name for b in direct.list_blobs()]
    assert [b.name for b in container.walk_blobs()] == ["dir/"]
    blob = container.get_blob_client("dir/one.bin")
    assert blob.download_blob().readall() == data
    assert blob.download_blob(offset=1000, length=5000).readall() == data[1000:6000]
    assert (
        blob.get_blob_properties().etag
        == direct.get_blob_client("dir/one.bin").get_blob_properties().etag
    )
    blob.set_blob_metadata({"k": "v"})
    assert direct.get_blob_client("dir/one.bin").get_blob_properties().metadata == {"k": "v"}
    with pytest.raises(ResourceNotFoundError) as missing:
        container.get_blob_client("nope").download_blob()
    assert missing.value.error_code == "BlobNotFound"
    blob.delete_blob()
    assert not direct.get_blob_client("dir/one.bin").exists()
    through.delete_container(name)
    assert not direct.exists()
    assert target.events() == []  # none of this creates blobs in a routed container


def raw_exchange(port: int, request: bytes) -> tuple[bytes, dict[str, str], bytes]:
    """Send one request on a new connection; return status line, headers, body."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        reader = sock.makefile("rb")
        status = reader.readline()
        headers = {}
        while (line := reader.readline()) not in (b"\r\n", b""):
            key, _, value = line.decode().partition(":")
            headers[key.strip().lower()] = value.strip()
        body = reader.read(int(headers.get("content-length", "0")))
    return status, headers, body


def test_responses_are_relayed_byte_for_byte(
    app_env: dict[str, str],
    containers: dict[str, str],
    make_source: SourceFactory,
    azurite_service: azurite.Azurite,
) -> None:
    """Same request straight to Azurite and through the pass-through: same answer, apart
    from the per-request id and date."""
    source = make_source(RecordingTarget())
    request = (
        f"GET /{azurite.ACCOUNT}/{containers['images']}?restype=container&comp=list HTTP/1.1\r\n"
        "Host: 127.0.0.1\r\nx-ms-version: 2021-08-06\r\nConnection: close\r\n\r\n"
    ).encode()
    direct = raw_exchange(azurite_service.port, request)
    relayed = raw_exchange(source.port, request)
    assert relayed[0] == direct[0]
    assert relayed[2] == direct[2]
    varying = {"x-ms-request-id", "date"}
    assert {k: v for k, v in relayed[1].items() if k not in varying} == {
        k: v for k, v in direct[1].items() if k not in varying
    }


def test_expect_100_continue_goes_through_to_azurite(
    app_env: dict[str, str], containers: dict[str, str], make_source: SourceFactory
) -> None:
    source = make_source(RecordingTarget())
    blob = client(source).get_blob_client(containers["incoming"], "expect.bin")
    path = blob.url.split(str(source.port), 1)[1]
    with socket.create_connection(("127.0.0.1", source.port), timeout=10) as sock:
        sock.sendall(
            f"PUT {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nx-ms-blob-type: BlockBlob\r\n"
            "x-ms-version: 2021-08-06\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n".encode()
        )
        reader = sock.makefile("rb")
        assert reader.readline() == b"HTTP/1.1 100 Continue\r\n"
        assert reader.readline() == b"\r\n"
        sock.sendall(b"hello")
        # Unsigned, so Azurite refuses it once it has the body; the answer is Azurite's own.
        assert reader.readline().startswith(b"HTTP/1.1 403")

    # The SDK's signed request with the same header is stored.
    blob.upload_blob(b"hello", headers={"Expect": "100-continue"})
    assert blob.download_blob().readall() == b"hello"


def test_a_refusal_before_the_body_reaches_the_client_at_once() -> None:
    """The upstream answers 417 to an Expect: 100-continue head: the client gets it without
    sending its body, and nothing of the body is forwarded."""
    listener = socket.create_server(("127.0.0.1", 0))
    received = bytearray()

    def upstream() -> None:
        connection, _ = listener.accept()
        with connection:
            while b"\r\n\r\n" not in received:
                received.extend(connection.recv(65536))
            connection.sendall(b"HTTP/1.1 417 Expectation Failed\r\nContent-Length: 2\r\n\r\nno")
            connection.settimeout(1)
            try:
                while chunk := connection.recv(65536):
                    received.extend(chunk)
            except TimeoutError:
                pass

    thread = threading.Thread(target=upstream, daemon=True)
    thread.start()
    proxy = PassThrough(0, listener.getsockname()[1], lambda write: None)
    proxy.start()
    try:
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
            sock.sendall(
                b"PUT /devstoreaccount1/c/b HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
                b"Expect: 100-continue\r\n\r\n"
            )
            reader = sock.makefile("rb")
            assert reader.readline() == b"HTTP/1.1 417 Expectation Failed\r\n"
        thread.join(5)
        assert received.endswith(b"Expect: 100-continue\r\n\r\n")
    finally:
        proxy.stop()
        listener.close()


def test_keep_alive_connections_are_reused(
    app_env: dict[str, str], containers: dict[str, str], make_source: SourceFactory
) -> None:
    source = make_source(RecordingTarget())
    service = client(source)
    container = service.get_container_client(containers["incoming"])
    for number in range(20):
        container.upload_blob(f"k/{number}.txt", b"x")
        assert container.get_blob_client(f"k/{number}.txt").download_blob().readall() == b"x"


def test_the_body_is_streamed_to_azurite_before_it_ends(make_source: SourceFactory) -> None:
    """An upstream that records what arrives: the head and the first megabyte reach it while
    the client is still holding back the rest of the body."""
    received = bytearray()
    got_first_part = threading.Event()
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def upstream() -> None:
        connection, _ = listener.accept()
        with connection:
            while chunk := connection.recv(65536):
                received.extend(chunk)
                if len(received) > 1024 * 1024:
                    got_first_part.set()
                if len(received) >= 3 * 1024 * 1024:
                    connection.sendall(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n")
                    return

    thread = threading.Thread(target=upstream, daemon=True)
    thread.start()
    proxy = PassThrough(0, port, lambda write: None)
    proxy.start()
    try:
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
            sock.sendall(
                b"PUT /devstoreaccount1/c/b HTTP/1.1\r\nHost: x\r\n"
                b"Content-Length: 3145728\r\n\r\n" + b"a" * (1024 * 1024 + 1)
            )
            assert got_first_part.wait(5), "nothing forwarded before the body ended"
            sock.sendall(b"a" * (2 * 1024 * 1024 - 1))
            assert sock.makefile("rb").readline().startswith(b"HTTP/1.1 201")
    finally:
        proxy.stop()
        listener.close()


def _rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@pytest.mark.slow
def test_a_large_upload_does_not_grow_the_pass_through_memory(
    app_env: dict[str, str], containers: dict[str, str], make_source: SourceFactory
) -> None:
    """One 128 MiB Put Blob (SAS-signed, body from a generator, so the client holds 1 MiB
    at a time) through the pass-through running in this process: the process's memory
    grows by far less than the upload."""
    from datetime import timedelta
    from http.client import HTTPConnection

    from azure.storage.blob import BlobSasPermissions, generate_blob_sas

    target = RecordingTarget()
    source = make_source(target)
    name = "incoming/huge.bin"
    sas = generate_blob_sas(
        azurite.ACCOUNT,
        containers["incoming"],
        name,
        account_key=azurite.well_known_key(),
        permission=BlobSasPermissions(create=True, write=True),
        expiry=datetime.now(UTC) + timedelta(minutes=10),
    )
    size, piece = 128 * 1024 * 1024, b"z" * (1024 * 1024)
    peak, stop = [_rss_bytes()], threading.Event()
    baseline = peak[0]

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], _rss_bytes())
            time.sleep(0.01)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    connection = HTTPConnection("127.0.0.1", source.port, timeout=120)
    try:
        connection.request(
            "PUT",
            f"/{azurite.ACCOUNT}/{containers['incoming']}/{name}?{sas}",
            body=(piece for _ in range(size // len(piece))),
            headers={
                "Content-Length": str(size),
                "x-ms-blob-type": "BlockBlob",
                "x-ms-version": "2021-08-06",
            },
        )
        response = connection.getresponse()
        response.read()
    finally:
        stop.set()
        sampler.join()
        connection.close()
    assert response.status == 201
    assert peak[0] - baseline < 32 * 1024 * 1024, f"grew by {(peak[0] - baseline) >> 20} MiB"
    (event,) = delivered_events(target, source)
    assert event["data"]["contentLength"] == size
    assert event["data"]["api"] == "PutBlob"


def test_a_taken_port_is_reported_clearly(make_source: SourceFactory) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(PortInUseError, match=f"port {port} .* already in use"):
            make_source(RecordingTarget(), port=port)


# --- retries, dead-letters, hosts that are down, restarts -------------------------------------


def dead_letters(service: BlobServiceClient, container: str) -> list[tuple[str, Any]]:
    blobs = service.get_container_client(container)
    if not blobs.exists():
        return []
    return [
        (item.name, json.loads(blobs.get_blob_client(item.name).download_blob().readall()))
        for item in blobs.list_blobs()
    ]


def test_a_failing_handler_is_retried_then_dead_lettered(
    app_env: dict[str, str],
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

    (name, document) = poll(
        lambda: (found := dead_letters(blob_service, containers["deadletter"])) and found[0],
        10,
        "the dead-letter blob",
    )
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
    app_env: dict[str, str],
    containers: dict[str, str],
    make_source: SourceFactory,
    blob_service: BlobServiceClient,
) -> None:
    target = RecordingTarget(statuses=[503])
    # One minute to live at the 0.01 scale: 0.6 s; 30 attempts would take far longer.
    source = make_source(target, eventTimeToLiveInMinutes=1, maxDeliveryAttempts=30)
    client(source).get_blob_client(containers["incoming"], "incoming/late.csv").upload_blob(b"a")

    (name, document) = poll(
        lambda: (found := dead_letters(blob_service, containers["deadletter"])) and found[0],
        10,
        "the dead-letter blob",
    )
    assert name.startswith("BATCH/")
    (event,) = document
    assert event["specversion"] == "1.0"
    assert event["deadletterreason"] == "TimeToLiveExceeded"
    assert event["lastdeliveryoutcome"] == "Busy"
    assert event["lasthttpstatuscode"] == 503
    assert 1 <= event["deliveryattempts"] < 30
    assert event["deliveryattempts"] == len(target.deliveries)


def test_a_bad_request_is_not_retried(
    app_env: dict[str, str],
    containers: dict[str, str],
    make_source: SourceFactory,
    blob_service: BlobServiceClient,
) -> None:
    target = RecordingTarget(statuses=[400])
    source = make_source(target)
    client(source).get_blob_client(containers["images"], "bad.jpg").upload_blob(b"x")

    (_, document) = poll(
        lambda: (found := dead_letters(blob_service, containers["deadletter"])) and found[0],
        10,
        "the dead-letter blob",
    )
    assert document[0]["deadLetterReason"] == "UndeliverableDueToHttpBadRequest"
    assert document[0]["deliveryAttempts"] == 1
    assert len(target.deliveries) == 1


def test_webhook_delivery_is_what_func_start_expects(
    app_env: dict[str, str], containers: dict[str, str], make_source: SourceFactory
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


def test_an_upload_made_while_the_host_is_down_is_delivered_when_it_comes_up(
    app_env: dict[str, str], containers: dict[str, str], make_source: SourceFactory
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


def test_pending_deliveries_survive_a_restart_of_the_event_source(
    app_env: dict[str, str],
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
