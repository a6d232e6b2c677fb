"""The event source's pass-through: everything the storage SDK sends reaches Azurite and
comes back unchanged, streamed, on reused connections."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import BlobServiceClient

from tests.support.event_source import RecordedSource, RecordingTarget, SourceFactory, client
from tests.support.faults import reset_connection
from tests.support.names import unique
from tests.support.polling import poll
from tools import azurite
from tools.eventsource import PortInUseError
from tools.eventsource.proxy import PassThrough

pytestmark = pytest.mark.azurite


# --- everything else passes through unchanged ------------------------------------------------


def test_reads_lists_deletes_and_container_operations_pass_through(
    containers: dict[str, str],
    recorded: RecordedSource,
    blob_service: BlobServiceClient,
) -> None:
    through = recorded.service
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
    assert recorded.target.events() == []  # none of this creates blobs in a routed container


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
    containers: dict[str, str],
    recorded: RecordedSource,
    azurite_service: azurite.Azurite,
) -> None:
    """Same request straight to Azurite and through the pass-through: same answer, apart
    from the per-request id and date."""
    source = recorded.source
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
    containers: dict[str, str], recorded: RecordedSource
) -> None:
    source = recorded.source
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
        # Read all of it: closing with the answer unread would reset the connection.
        length = 0
        while (line := reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        reader.read(length)

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


def test_a_client_that_resets_its_connection_is_one_log_line_not_a_traceback(
    recorded: RecordedSource,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.INFO, logger="tools.eventsource.proxy")
    source = recorded.source
    reset_connection(source.port)
    (line,) = poll(
        lambda: [r.getMessage() for r in caplog.records if "went away" in r.getMessage()],
        5,
        "the reset to be logged",
    )
    assert line.startswith("pass-through: client 127.0.0.1:") and "reset" in line
    assert capfd.readouterr().err == ""


def test_keep_alive_connections_are_reused(
    containers: dict[str, str], recorded: RecordedSource
) -> None:
    source = recorded.source
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
    containers: dict[str, str], recorded: RecordedSource
) -> None:
    """One 128 MiB Put Blob (SAS-signed, body from a generator, so the client holds 1 MiB
    at a time) through the pass-through running in this process: the process's memory
    grows by far less than the upload."""
    from datetime import timedelta
    from http.client import HTTPConnection

    from azure.storage.blob import BlobSasPermissions, generate_blob_sas

    source = recorded.source
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
    (event,) = recorded.delivered()
    assert event["data"]["contentLength"] == size
    assert event["data"]["api"] == "PutBlob"


def test_a_taken_port_is_reported_clearly(make_source: SourceFactory) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(PortInUseError, match=f"port {port} .* already in use"):
            make_source(RecordingTarget(), port=port)
