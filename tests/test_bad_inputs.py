"""Adversarial inputs through the whole function, as the host invokes it: broken images of
every accepted format, bombs, things that are not images, malformed and oversized events,
urls that point elsewhere, names that cannot be used.

Each one must come to the ``failed`` outcome with a reason naming the problem, logged in
one clear ERROR line, return normally so that Event Grid does not retry it, and write
nothing: no thumbnail, no ledger blob, no job, and no request to any other host.
"""

from __future__ import annotations

import io
import logging
import random
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from azure.storage.blob import BlobServiceClient
from PIL import Image

from handlers import batch_index
from tests.support import images as gen
from tests.support.faults import batch_environment
from tests.support.host import outcome_of
from tools import azurite
from tools import events as build
from tools.standins import JobsEndpoint, ManagedIdentityEndpoint, RecordingServer

pytestmark = [pytest.mark.azurite, pytest.mark.http]

THUMBNAIL = ("create_thumbnail",)
BOTH = ("create_thumbnail", "dispatch_batch_job")


@dataclass(frozen=True)
class Where:
    """What an adversarial event may point at."""

    blob_url: str  # the configured account's endpoint
    azurite_port: int
    recorder_port: int
    container: str
    name: str


Mutate = Callable[[dict[str, Any], Where], dict[str, Any]]


@dataclass(frozen=True)
class Case:
    id: str
    reason: str  # must appear in the failed line
    data: Callable[[], bytes] | None = None  # blob content; a small valid JPEG when None
    name: str = "upload/bad.jpg"
    mutate: Mutate | None = None  # turns the real event into the adversarial one
    functions: tuple[str, ...] = THUMBNAIL


# ---- image bytes --------------------------------------------------------------------


def noisy(size: tuple[int, int] = (300, 200), seed: int = 3) -> Image.Image:
    rng = random.Random(seed)
    return Image.frombytes("RGB", size, rng.randbytes(size[0] * size[1] * 3))


def encoded(fmt: str, **options: Any) -> bytes:
    return gen.encode(noisy(), fmt, **options)


def truncated(fmt: str, **options: Any) -> Callable[[], bytes]:
    def make() -> bytes:
        data = encoded(fmt, **options)
        return data[: len(data) // 2]

    return make


def flipped(fmt: str, start: float | int, length: int = 64, **options: Any) -> Callable[[], bytes]:
    """``length`` bytes inverted from ``start`` (a byte offset, or a fraction of the size)."""

    def make() -> bytes:
        data = bytearray(encoded(fmt, **options))
        first = int(len(data) * start) if isinstance(start, float) else start
        for index in range(first, first + length):
            data[index] ^= 0xFF
        return bytes(data)

    return make


def png_bomb() -> bytes:
    """A real decompression bomb: 14000x14000 grey pixels (196 MB) in about 200 kB."""
    width = height = 14_000
    compressor = zlib.compressobj(6)
    row = b"\x00" * (width + 1)
    body = b"".join(compressor.compress(row * 1000) for _ in range(height // 1000))
    body += compressor.flush()

    def chunk(kind: bytes, payload: bytes) -> bytes:
        crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")
    )


def jpeg_claiming(width: int, height: int) -> bytes:
    """A small JPEG whose frame header claims ``width`` x ``height``."""
    data = bytearray(gen.encode(gen.halves((64, 48)), "JPEG"))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def gif_claiming(width: int, height: int) -> bytes:
    data = bytearray(gen.encode(gen.halves((64, 48)).convert("P"), "GIF"))
    data[6:10] = struct.pack("<HH", width, height)  # logical screen
    descriptor = data.index(b"\x2c", 13)
    data[descriptor + 5 : descriptor + 9] = struct.pack("<HH", width, height)
    return bytes(data)


def heic_claiming(width: int, height: int) -> bytes:
    """A small HEIC whose image spatial extents ("ispe", one per item) claim ``width`` x
    ``height``. 64x64 needs no clean-aperture crop ("clap"), which would say 64x48 again."""
    data = bytearray(gen.encode(gen.halves((64, 64)), "HEIF"))
    at = data.find(b"ispe")
    while at >= 0:
        data[at + 8 : at + 16] = struct.pack(">II", width, height)  # after version and flags
        at = data.find(b"ispe", at + 4)
    return bytes(data)


HEIC = (
    struct.pack(">I", 24)
    + b"ftypheic"
    + b"\x00\x00\x00\x00mif1heic"
    + struct.pack(">I", 40)
    + b"meta"
    + b"\x00" * 32
)
SVG = (
    b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="100" height="100">'
    b'<circle cx="50" cy="50" r="40" fill="red"/></svg>'
)


# ---- event mutations ------------------------------------------------------------------


def drop(*path: str) -> Mutate:
    def mutate(event: dict[str, Any], where: Where) -> dict[str, Any]:
        target = event
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]
        return event

    return mutate


def put(path: tuple[str, ...], value: Any) -> Mutate:
    def mutate(event: dict[str, Any], where: Where) -> dict[str, Any]:
        target = event
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value(where) if callable(value) else value
        return event

    return mutate


def renamed(name: str) -> Mutate:
    """The event as Azure would send it for ``name`` (which storage never held)."""

    def mutate(event: dict[str, Any], where: Where) -> dict[str, Any]:
        fresh = build.blob_created(
            account=azurite.ACCOUNT,
            service_url=where.blob_url,
            container=where.container,
            blob_name=name,
            etag=event["data"]["eTag"],
            content_length=10,
        )
        return fresh

    return mutate


def recorder_url(host: str = "127.0.0.1", userinfo: str = "") -> Callable[[Where], str]:
    """A url on the recording server, shaped exactly like one of the account's blobs."""

    def make(where: Where) -> str:
        return (
            f"http://{userinfo}{host}:{where.recorder_port}/{azurite.ACCOUNT}/"
            f"{where.container}/{where.name}"
        )

    return make


def other_account(where: Where) -> str:
    return f"http://127.0.0.1:{where.azurite_port}/otheraccount/{where.container}/{where.name}"


NOT_AN_IMAGE = "not an image in a supported format"
NOT_OURS = "is not a blob of storage account devstoreaccount1; it was not fetched"

CASES = [
    # Truncated and corrupt images of every accepted format.
    Case("jpeg-truncated", "corrupt or truncated JPEG", truncated("JPEG")),
    Case("jpeg-corrupt-scan", "corrupt or truncated JPEG", flipped("JPEG", 200, 8)),
    # A broken marker segment: Pillow no longer recognises it; the line shows its first bytes.
    Case("jpeg-corrupt-marker", "starts with b'\\xff\\xd8\\xff", flipped("JPEG", 24, 8)),
    Case("jpeg-only-the-start", "corrupt image header", lambda: encoded("JPEG")[:40]),
    Case("png-truncated", "corrupt or truncated PNG", truncated("PNG"), "a.png"),
    Case("png-corrupt-data", "corrupt or truncated PNG", flipped("PNG", 0.25), "a.png"),
    Case(
        "png-corrupt-header",
        "corrupt PNG image: its header cannot be read",
        flipped("PNG", 12, 28),
        "a.png",
    ),
    Case("gif-truncated", "corrupt or truncated GIF", truncated("GIF"), "a.gif"),
    Case("gif-corrupt-data", "corrupt or truncated GIF", flipped("GIF", 0.25), "a.gif"),
    Case("webp-truncated", "corrupt image header", truncated("WEBP"), "a.webp"),
    Case("webp-corrupt-header", "corrupt image header", flipped("WEBP", 20, 8), "a.webp"),
    Case("webp-corrupt-frame", "corrupt or truncated WEBP", flipped("WEBP", 30, 8), "a.webp"),
    Case("tiff-truncated", "corrupt or truncated TIFF", truncated("TIFF"), "a.tif"),
    Case(
        "tiff-corrupt-lzw",
        "corrupt or truncated TIFF",
        flipped("TIFF", 0.25, compression="tiff_lzw"),
        "a.tiff",
    ),
    Case("bmp-truncated", "corrupt or truncated BMP", truncated("BMP"), "a.bmp"),
    Case("bmp-corrupt-header", "corrupt image header", flipped("BMP", 12, 28), "a.bmp"),
    # HEIC cut short keeps its header (the coded data is at the end): the decoder fails.
    Case("heic-truncated", "corrupt or truncated HEIF", truncated("HEIF"), "IMG_0001.HEIC"),
    # libavif checks every item's extent while parsing: a cut AVIF fails at the header.
    Case("avif-truncated", "corrupt AVIF image", truncated("AVIF"), "a.avif"),
    Case("heic-header-only", "corrupt HEIF image", lambda: HEIC, "phone.heic"),
    # Bombs and shapes that would cost memory or give a useless thumbnail.
    # Pillow's own guard (2 x Image.MAX_IMAGE_PIXELS, 178,956,970) answers first above it.
    Case("png-decompression-bomb", "refused as a decompression bomb", png_bomb, "bomb.png"),
    Case(
        "jpeg-claiming-60000x60000",
        "refused as a decompression bomb",
        lambda: jpeg_claiming(60000, 60000),
    ),
    Case(
        "gif-claiming-65535x65535",
        "refused as a decompression bomb",
        lambda: gif_claiming(65535, 65535),
        "g.gif",
    ),
    Case(
        "jpeg-claiming-13000x12000",
        "156000000 pixels, over THUMBNAIL_MAX_PIXELS (150000000)",
        lambda: jpeg_claiming(13000, 12000),
    ),
    Case(
        "heic-claiming-30000x30000",
        "refused as a decompression bomb",
        lambda: heic_claiming(30000, 30000),
        "bomb.heic",
    ),
    # Not images at all, whatever the name says.
    Case("zero-bytes", "the blob is empty (0 bytes)", lambda: b""),
    Case("text-named-jpg", NOT_AN_IMAGE, lambda: b"just some text, honest\n" * 20),
    Case("html-named-jpg", NOT_AN_IMAGE, lambda: b"<!doctype html><html><body>hi</body></html>"),
    Case("svg", NOT_AN_IMAGE, lambda: SVG, "vector.svg"),
    Case("svg-named-png", NOT_AN_IMAGE, lambda: SVG, "vector.png"),
    Case("pdf-named-png", NOT_AN_IMAGE, lambda: b"%PDF-1.7\n" + b"0" * 200, "doc.png"),
    Case("psd", NOT_AN_IMAGE, lambda: b"8BPS\x00\x01" + b"\x00" * 60, "layers.psd"),
    # Malformed and oversized events, for both functions.
    Case(
        "data-not-an-object",
        "data is missing or not a JSON object",
        mutate=put(("data",), "x"),
        functions=BOTH,
    ),
    Case(
        "data-missing", "data is missing or not a JSON object", mutate=drop("data"), functions=BOTH
    ),
    Case("subject-missing", "subject is missing", mutate=drop("subject"), functions=BOTH),
    Case("subject-a-number", "subject is a int", mutate=put(("subject",), 42), functions=BOTH),
    Case(
        "subject-not-a-blob",
        "is not /blobServices/default/containers/<container>/blobs/<name>",
        mutate=put(("subject",), "/blobServices/default/containers/images"),
        functions=BOTH,
    ),
    Case("event-type-missing", "eventType is missing", mutate=drop("eventType"), functions=BOTH),
    Case("id-a-number", "id is a int", mutate=put(("id",), 7), functions=BOTH),
    Case("url-missing", "data.url is missing", mutate=drop("data", "url"), functions=BOTH),
    Case(
        "url-a-list",
        "data.url is a list",
        mutate=put(("data", "url"), ["http://x"]),
        functions=BOTH,
    ),
    Case("etag-missing", "data.eTag is missing", mutate=drop("data", "eTag"), functions=BOTH),
    Case(
        "content-length-negative",
        "data.contentLength -5 is not a non-negative integer",
        mutate=put(("data", "contentLength"), -5),
        functions=BOTH,
    ),
    Case(
        "content-length-a-string",
        "data.contentLength '12' is not a non-negative integer",
        mutate=put(("data", "contentLength"), "12"),
        functions=BOTH,
    ),
    Case(
        "oversized-subject",
        "subject has 200000 characters; at most 4096",
        mutate=put(("subject",), "/blobServices/default/containers/c/blobs/" + "x" * 199_959),
        functions=BOTH,
    ),
    Case(
        "oversized-url",
        "data.url has 50000 characters; at most 4096",
        mutate=put(("data", "url"), "http://127.0.0.1/" + "y" * 49_983),
        functions=BOTH,
    ),
    # Urls that name another host or account: refused, and never fetched.
    Case("url-other-host", NOT_OURS, mutate=put(("data", "url"), recorder_url()), functions=BOTH),
    Case(
        "url-other-host-by-name",
        NOT_OURS,
        mutate=put(("data", "url"), recorder_url("localhost")),
        functions=BOTH,
    ),
    Case(
        "url-with-userinfo",
        NOT_OURS,
        mutate=put(("data", "url"), recorder_url(userinfo="devstoreaccount1@")),
        functions=BOTH,
    ),
    Case("url-other-account", NOT_OURS, mutate=put(("data", "url"), other_account), functions=BOTH),
    Case(
        "url-public-cloud",
        NOT_OURS,
        mutate=put(("data", "url"), "https://evil.blob.core.windows.net/images/a.jpg"),
        functions=BOTH,
    ),
    Case(
        "url-with-sas",
        NOT_OURS,
        mutate=put(("data", "url"), lambda w: f"{w.blob_url}/{w.container}/{w.name}?sv=2024&sig=x"),
        functions=BOTH,
    ),
    Case(
        "url-bad-percent-encoding",
        NOT_OURS,
        mutate=put(("data", "url"), lambda w: f"{w.blob_url}/{w.container}/a%FF.jpg"),
        functions=BOTH,
    ),
    Case(
        "topic-other-account",
        "topic names storage account 'evilcorp'",
        mutate=put(("topic",), build.topic("evilcorp")),
        functions=BOTH,
    ),
    Case(
        "subject-and-url-disagree",
        "but data.url names",
        mutate=put(("subject",), lambda w: build.subject(w.container, "other.jpg")),
        functions=BOTH,
    ),
    # Names that cannot be used.
    Case(
        "name-with-dot-dot",
        "has a '.' or '..' segment",
        mutate=renamed("a/../secret.jpg"),
        functions=BOTH,
    ),
    Case(
        "name-with-control-character",
        "contains control characters",
        mutate=renamed("bell\x07.jpg"),
        functions=BOTH,
    ),
    Case(
        "name-with-newline",
        "contains control characters",
        mutate=renamed("two\nlines.jpg"),
        functions=BOTH,
    ),
    Case(
        "name-of-1025-characters",
        "blob name has 1025 characters; the limit is 1024",
        mutate=renamed("n" * 1021 + ".jpg"),
        functions=BOTH,
    ),
    # 1024 characters is a legal blob name, but its thumbnail's name (<container>/<name>)
    # would not be: the thumbnail is refused; the batch job is unaffected (tested below).
    Case("name-of-1024-characters", "blob names are limited to 1024", name="n" * 1020 + ".jpg"),
]


# ---- fixtures -------------------------------------------------------------------------


# The stand-ins are shared by the cases (each test clears their logs): stopping a server
# waits for its poll interval, which would dominate this file's run time.
@pytest.fixture(scope="module")
def shared_identity() -> Iterator[ManagedIdentityEndpoint]:
    server = ManagedIdentityEndpoint()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def shared_jobs(shared_identity: ManagedIdentityEndpoint) -> Iterator[JobsEndpoint]:
    server = JobsEndpoint(accepted_token=shared_identity.token)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def shared_recorder() -> Iterator[RecordingServer]:
    server = RecordingServer()
    yield server
    server.stop()


@pytest.fixture
def identity(shared_identity: ManagedIdentityEndpoint) -> ManagedIdentityEndpoint:
    shared_identity.clear()
    return shared_identity


@pytest.fixture
def jobs(shared_jobs: JobsEndpoint) -> JobsEndpoint:
    shared_jobs.clear()
    return shared_jobs


@pytest.fixture
def recorder(shared_recorder: RecordingServer) -> RecordingServer:
    shared_recorder.clear()
    return shared_recorder


def small_jpeg() -> bytes:
    buffer = io.BytesIO()
    gen.halves((96, 64)).save(buffer, "JPEG")
    return buffer.getvalue()


def is_empty(service: BlobServiceClient, container: str) -> bool:
    client = service.get_container_client(container)
    return not client.exists() or not list(client.list_blobs())


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input_fails_once_clearly_and_writes_nothing(
    case: Case,
    app_env: dict[str, str],
    containers: dict[str, str],
    azurite_service: azurite.Azurite,
    blob_service: BlobServiceClient,
    upload_event: Callable[..., dict[str, Any]],
    identity: ManagedIdentityEndpoint,
    jobs: JobsEndpoint,
    recorder: RecordingServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    batch_environment(identity, jobs)
    images = containers["images"]
    data = case.data() if case.data is not None else small_jpeg()
    event = upload_event(images, case.name, data)
    where = Where(
        blob_url=azurite_service.blob_url,
        azurite_port=azurite_service.port,
        recorder_port=recorder.port,
        container=images,
        name=case.name,
    )
    if case.mutate is not None:
        event = case.mutate(event, where)

    for function in case.functions:
        caplog.clear()
        caplog.set_level(logging.INFO)
        # Returns (raising would make Event Grid retry), as a permanent failure.
        outcome = outcome_of(function, event)
        if case.reason == NOT_AN_IMAGE:
            # Not an image at all is no failure of the app (issue 16): one INFO line.
            assert outcome.status == "ignored" and case.reason in outcome.detail, outcome
            errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
            assert errors == [], [line[:300] for line in errors]
            lines = [r.getMessage() for r in caplog.records if r.name == "handlers.pipeline"]
            assert len(lines) == 1 and f"outcome=ignored reason={case.reason}" in lines[0]
            continue
        assert outcome.status == "failed" and case.reason in outcome.detail, outcome
        errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(errors) == 1, [line[:300] for line in errors]
        assert case.reason in errors[0], errors[0][:500]

    assert is_empty(blob_service, containers["thumbnails"])
    assert is_empty(blob_service, containers["ledger"])
    assert jobs.posts() == [] and jobs.jobs == {}
    assert identity.token_requests == []
    assert recorder.requests == []


def test_a_1024_character_name_is_still_dispatched_once(
    app_env: dict[str, str],
    containers: dict[str, str],
    upload_event: Callable[..., dict[str, Any]],
    identity: ManagedIdentityEndpoint,
    jobs: JobsEndpoint,
    blob_service: BlobServiceClient,
) -> None:
    """The batch job names the blob by url and its ledger blob by a hash of the name, so
    the longest legal name is no problem there: one job, one ledger record."""
    batch_environment(identity, jobs)
    name = "incoming/" + "n" * 1011 + ".csv"
    assert len(name) == 1024
    event = upload_event(containers["incoming"], name, b"a\n1\n", build.CLOUD_EVENT_SCHEMA)
    assert outcome_of("dispatch_batch_job", event).status == "dispatched"
    assert outcome_of("dispatch_batch_job", event).status == "duplicate"
    assert len(jobs.jobs) == 1
    ledger = blob_service.get_container_client(containers["ledger"])
    names = [blob.name for blob in ledger.list_blobs()]
    assert len([name for name in names if not batch_index.is_reserved(name)]) == 1
    assert len([name for name in names if name.startswith(batch_index.OPEN_PREFIX)]) == 1
