"""create_thumbnail against a real Azurite, invoked as the host would invoke it."""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from azure.storage.blob import BlobServiceClient
from PIL import Image

from handlers.outcomes import Outcome
from handlers.thumbnails import SOURCE_ETAG, made_from, thumbnail_name
from tests.support import images as gen
from tests.support.faults import deliver_at_once
from tests.support.host import invoke, outcome_of
from tools import events as build

pytestmark = pytest.mark.azurite

Upload = Callable[..., dict[str, Any]]


def statuses(*events: dict[str, Any]) -> list[str]:
    """What ``create_thumbnail`` comes to for each event, delivered one after another."""
    return [outcome_of("create_thumbnail", event).status for event in events]


@dataclass(frozen=True)
class Photos:
    """This test's image container on Azurite and the thumbnail container the app writes to."""

    service: BlobServiceClient
    images: str
    thumbnails: str
    upload_event: Upload

    def upload(
        self, name: str, data: bytes, schema: str = build.EVENT_GRID_SCHEMA, *, to: str = ""
    ) -> dict[str, Any]:
        """Upload ``data`` as ``name`` (to the image container unless ``to`` names another);
        the event Azure sends for it."""
        return self.upload_event(to or self.images, name, data, schema)

    def thumbnail(self, name: str) -> tuple[bytes, Any]:
        """The bytes and properties of the thumbnail of image ``name``: the source's path
        mirrored into the thumbnail container."""
        client = self.service.get_blob_client(self.thumbnails, f"{self.images}/{name}")
        return client.download_blob().readall(), client.get_blob_properties()

    def names(self, container: str = "") -> list[str]:
        """The blobs in ``container`` (the thumbnail container unless given)."""
        client = self.service.get_container_client(container or self.thumbnails)
        return [blob.name for blob in client.list_blobs()]

    def no_thumbnails(self) -> bool:
        return not self.service.get_container_client(self.thumbnails).exists()


@pytest.fixture
def photos(
    app_env: dict[str, str],
    containers: dict[str, str],
    upload_event: Upload,
    blob_service: BlobServiceClient,
) -> Photos:
    """The app pointed at this test's containers (dry-run batch), seen from the storage side."""
    return Photos(blob_service, containers["images"], containers["thumbnails"], upload_event)


@pytest.mark.parametrize("schema", [build.EVENT_GRID_SCHEMA, build.CLOUD_EVENT_SCHEMA])
def test_writes_a_thumbnail_with_metadata(schema: str, photos: Photos) -> None:
    name = "holiday/2026 beach #1 +ünï%.jpg"
    event = photos.upload(name, gen.encode(gen.halves((1600, 900)), "JPEG"), schema)
    outcome = outcome_of("create_thumbnail", event)

    data, props = photos.thumbnail(name)
    image = gen.open_bytes(data)
    assert (image.format, image.size) == ("JPEG", (128, 72))
    assert props.content_settings.content_type == "image/jpeg"
    assert props.metadata[SOURCE_ETAG] == event["data"]["eTag"].strip('"')
    assert props.metadata["source_url"] == event["data"]["url"]
    thumbnail = f"{photos.thumbnails}/{thumbnail_name(photos.images, name)}"
    assert outcome == Outcome(
        "written", f"thumbnail {thumbnail} 128x72 image/jpeg from JPEG 1600x900"
    )


def test_transparent_png_is_stored_as_png(photos: Photos) -> None:
    event = photos.upload("logo.png", gen.encode(gen.transparent_rgba((512, 256)), "PNG"))
    invoke("create_thumbnail", event)
    data, props = photos.thumbnail("logo.png")
    assert props.content_settings.content_type == "image/png"
    assert gen.open_bytes(data).mode == "RGBA"


def test_heic_upload_gets_a_jpeg_thumbnail_under_the_mirrored_name(photos: Photos) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # portrait, as a phone held upright records it
    heic = gen.encode(gen.halves((1600, 1200)), "HEIF", exif=exif.tobytes())
    event = photos.upload("phone/IMG_0001.HEIC", heic)
    invoke("create_thumbnail", event)
    data, props = photos.thumbnail("phone/IMG_0001.HEIC")
    image = gen.open_bytes(data)
    assert (image.format, image.size) == ("JPEG", (96, 128))
    assert props.content_settings.content_type == "image/jpeg"


@pytest.mark.parametrize(
    ("setting", "fmt", "content_type"),
    [("webp", "WEBP", "image/webp"), ("png", "PNG", "image/png"), ("jpeg", "JPEG", "image/jpeg")],
)
def test_thumbnail_format_setting_sets_bytes_and_content_type(
    setting: str,
    fmt: str,
    content_type: str,
    photos: Photos,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from handlers.context import reset_context

    monkeypatch.setenv("THUMBNAIL_FORMAT", setting)
    reset_context()
    event = photos.upload("poster.gif", gen.encode(gen.transparent_rgba((400, 200)), "GIF"))
    invoke("create_thumbnail", event)
    # The name never depends on the format.
    assert photos.names() == [f"{photos.images}/poster.gif"]
    data, props = photos.thumbnail("poster.gif")
    assert gen.open_bytes(data).format == fmt
    assert props.content_settings.content_type == content_type


def test_new_version_in_another_format_replaces_the_thumbnail_in_place(photos: Photos) -> None:
    """Under auto an opaque logo gives JPEG and its transparent redesign PNG: one thumbnail
    blob either way, never a stale JPEG left beside the PNG."""
    opaque = photos.upload("logo.png", gen.encode(gen.halves((400, 200)), "PNG"))
    assert statuses(opaque) == ["written"]
    _, first = photos.thumbnail("logo.png")
    assert first.content_settings.content_type == "image/jpeg"
    clear = photos.upload("logo.png", gen.encode(gen.transparent_rgba((400, 200)), "PNG"))
    # A duplicate still writes nothing, nor does the old version's late redelivery.
    assert statuses(clear, clear, opaque) == ["written", "duplicate", "superseded"]
    assert photos.names() == [f"{photos.images}/logo.png"]
    data, props = photos.thumbnail("logo.png")
    assert (gen.open_bytes(data).format, props.content_settings.content_type) == (
        "PNG",
        "image/png",
    )
    assert props.metadata[SOURCE_ETAG] == clear["data"]["eTag"].strip('"')


def test_corrupt_icc_profile_is_one_log_line_and_a_thumbnail(
    photos: Photos, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    source = gen.encode(gen.halves((600, 400)), "JPEG", icc_profile=b"\x00" * 300)
    event = photos.upload("odd.jpg", source)
    outcome = outcome_of("create_thumbnail", event)
    assert outcome.status == "written"
    assert "ICC profile ignored (corrupt, 300 bytes" in outcome.detail
    # Said once, on the outcome's own line: no other log line mentions the profile.
    (mention,) = [r.getMessage() for r in caplog.records if "ICC profile" in r.getMessage()]
    assert mention.endswith(outcome.detail)
    data, _ = photos.thumbnail("odd.jpg")
    assert "icc_profile" not in gen.open_bytes(data).info


def test_made_from_tells_which_version_the_thumbnail_shows(photos: Photos) -> None:
    from handlers.context import get_context

    settings = get_context().settings
    service, images = photos.service, photos.images
    service.create_container(photos.thumbnails)
    assert made_from(service, settings, images, "m.jpg") is None
    event = photos.upload("m.jpg", gen.encode(gen.halves((300, 200)), "JPEG"))
    invoke("create_thumbnail", event)
    assert made_from(service, settings, images, "m.jpg") == event["data"]["eTag"].strip('"')
    newer = photos.upload("m.jpg", gen.encode(gen.halves((200, 300)), "JPEG"))
    assert made_from(service, settings, images, "m.jpg") != newer["data"]["eTag"].strip('"')


def test_duplicate_delivery_writes_nothing(photos: Photos) -> None:
    event = photos.upload("a.jpg", gen.encode(gen.halves((600, 400)), "JPEG"))
    assert statuses(event) == ["written"]
    _, first = photos.thumbnail("a.jpg")
    replayed = {**event, "id": "replayed-with-another-id"}
    assert statuses(event, replayed) == ["duplicate", "duplicate"]
    _, after = photos.thumbnail("a.jpg")
    assert after.etag == first.etag
    assert after.last_modified == first.last_modified


def test_concurrent_deliveries_write_once(photos: Photos) -> None:
    event = photos.upload("race.png", gen.encode(gen.halves((2000, 1500)), "PNG"))
    outcomes = deliver_at_once([("create_thumbnail", event)] * 8, outcome_of)
    assert Counter(outcome.status for outcome in outcomes) == {"written": 1, "duplicate": 7}
    _, props = photos.thumbnail("race.png")
    assert props.metadata[SOURCE_ETAG] == event["data"]["eTag"].strip('"')


def test_new_version_replaces_and_stale_event_does_not(photos: Photos) -> None:
    first = photos.upload("v.jpg", gen.encode(gen.halves((800, 400)), "JPEG"))
    assert statuses(first) == ["written"]
    second = photos.upload("v.jpg", gen.encode(gen.halves((400, 800)), "JPEG"))
    assert statuses(second) == ["written"]
    data, props = photos.thumbnail("v.jpg")
    assert gen.open_bytes(data).size == (64, 128)
    assert props.metadata[SOURCE_ETAG] == second["data"]["eTag"].strip('"')

    assert statuses(first) == ["superseded"]  # late redelivery of the old version
    _, after = photos.thumbnail("v.jpg")
    assert after.etag == props.etag


def test_event_for_a_version_already_overwritten_writes_nothing(photos: Photos) -> None:
    old = photos.upload("w.jpg", gen.encode(gen.halves((300, 300)), "JPEG"))
    photos.upload("w.jpg", gen.encode(gen.halves((300, 600)), "JPEG"))
    assert statuses(old) == ["superseded"]
    assert photos.no_thumbnails()


@pytest.mark.parametrize("output", ["thumbnails", "ledger", "deadletter"])
def test_events_for_output_containers_are_ignored(
    output: str, photos: Photos, containers: dict[str, str]
) -> None:
    """The recursion guard: a filter that also matched the thumbnail container changes nothing."""
    photos.service.create_container(containers[output])
    jpeg = gen.encode(gen.halves((300, 300)), "JPEG")
    event = photos.upload("images-x/a.jpg", jpeg, to=containers[output])
    for function in ("create_thumbnail", "dispatch_batch_job"):
        outcome = outcome_of(function, event)
        assert outcome.status == "ignored"
        assert "output containers" in outcome.detail
    assert photos.names(containers[output]) == ["images-x/a.jpg"]


def test_permanent_failures_are_logged_and_not_retried(photos: Photos) -> None:
    cases = {
        "corrupt.jpg": b"\xff\xd8\xff\xe0<html>not an image</html>",
        "empty.png": b"",
        "truncated.jpg": gen.encode(gen.halves((900, 600)), "JPEG")[:3000],
    }
    events = [photos.upload(name, data) for name, data in cases.items()]
    gone = photos.upload("deleted.jpg", gen.encode(gen.halves((100, 100)), "JPEG"))
    photos.service.get_blob_client(photos.images, "deleted.jpg").delete_blob()
    events.append(gone)
    # Each returns normally: Event Grid will not retry.
    failed = [outcome_of("create_thumbnail", event) for event in events]
    for outcome, reason in zip(
        failed, ["corrupt image header", "empty (0 bytes)", "truncated", "deleted"], strict=True
    ):
        assert outcome.status == "failed"
        assert reason in outcome.detail
    assert photos.no_thumbnails()


def test_a_blob_that_is_no_image_at_all_is_ignored_not_failed(photos: Photos) -> None:
    """Issue 16: a text file that reaches the function is not this app's to thumbnail."""
    event = photos.upload("notes.txt", b"<html>not an image</html>")
    outcome = outcome_of("create_thumbnail", event)
    assert outcome.status == "ignored" and outcome.final
    assert outcome.detail.startswith("not an image in a supported format")
    assert photos.no_thumbnails()


def test_size_limits_refuse_without_downloading(
    photos: Photos, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("THUMBNAIL_MAX_BYTES", "1000")
    monkeypatch.setenv("THUMBNAIL_MAX_PIXELS", "10000")
    from handlers.context import reset_context

    reset_context()
    big = photos.upload("big.png", gen.encode(gen.halves((500, 500)), "PNG"))
    lied = {**big, "data": {**big["data"], "contentLength": 10}}  # the event understates it
    wide = photos.upload("wide.png", gen.encode(Image.new("L", (200, 200)), "PNG"))
    failed = [outcome_of("create_thumbnail", event) for event in (big, lied, wide)]
    assert [outcome.status for outcome in failed] == ["failed"] * 3
    assert "not downloaded" in failed[0].detail
    assert "over THUMBNAIL_MAX_BYTES" in failed[1].detail
    assert "over THUMBNAIL_MAX_PIXELS" in failed[2].detail


def test_bad_settings_raise_naming_the_setting(
    photos: Photos, monkeypatch: pytest.MonkeyPatch
) -> None:
    from handlers.context import reset_context
    from handlers.errors import ConfigurationError

    monkeypatch.setenv("THUMBNAIL_SIZE", "huge")
    reset_context()
    event = photos.upload("s.jpg", gen.encode(gen.halves((100, 100)), "JPEG"))
    with pytest.raises(ConfigurationError, match="THUMBNAIL_SIZE"):
        invoke("create_thumbnail", event)


@pytest.mark.slow  # real retry back-offs: seconds by design
def test_storage_unreachable_is_transient(photos: Photos, monkeypatch: pytest.MonkeyPatch) -> None:
    """Storage down: the function raises, so Event Grid retries (and finally dead-letters)."""
    from handlers.context import reset_context
    from handlers.errors import StorageUnavailableError
    from tools import azurite

    event = photos.upload("later.jpg", gen.encode(gen.halves((100, 100)), "JPEG"))
    dead_port = azurite.free_port()
    monkeypatch.setenv("DATA_STORAGE", azurite.connection_string(dead_port))
    reset_context()
    moved = json.loads(
        json.dumps(event).replace(
            event["data"]["url"].split("/devstoreaccount1")[0], f"http://127.0.0.1:{dead_port}"
        )
    )
    with pytest.raises(StorageUnavailableError):
        invoke("create_thumbnail", moved)
