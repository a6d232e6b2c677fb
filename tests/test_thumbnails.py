"""create_thumbnail against a real Azurite, invoked as the host would invoke it."""

from __future__ import annotations

import json
import logging
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from azure.storage.blob import BlobServiceClient
from PIL import Image

from handlers.outcomes import Outcome
from handlers.thumbnails import SOURCE_ETAG, made_from, thumbnail_name
from tests.support import images as gen
from tests.support.host import invoke, outcome_of
from tools import events as build

pytestmark = pytest.mark.azurite

Upload = Callable[..., dict[str, Any]]


def statuses(*events: dict[str, Any]) -> list[str]:
    """What ``create_thumbnail`` comes to for each event, delivered one after another."""
    return [outcome_of("create_thumbnail", event).status for event in events]


def read(service: BlobServiceClient, container: str, name: str) -> tuple[bytes, Any]:
    client = service.get_blob_client(container, name)
    return client.download_blob().readall(), client.get_blob_properties()


@pytest.mark.parametrize("schema", [build.EVENT_GRID_SCHEMA, build.CLOUD_EVENT_SCHEMA])
def test_writes_a_thumbnail_with_metadata(
    schema: str,
    app_env: dict[str, str],
    containers: dict[str, str],
    upload_event: Upload,
    blob_service: BlobServiceClient,
) -> None:
    name = "holiday/2026 beach #1 +ünï%.jpg"
    event = upload_event(
        containers["images"], name, gen.encode(gen.halves((1600, 900)), "JPEG"), schema
    )
    outcome = outcome_of("create_thumbnail", event)

    data, props = read(
        blob_service, containers["thumbnails"], thumbnail_name(containers["images"], name)
    )
    image = gen.open_bytes(data)
    assert (image.format, image.size) == ("JPEG", (128, 72))
    assert props.content_settings.content_type == "image/jpeg"
    assert props.metadata[SOURCE_ETAG] == event["data"]["eTag"].strip('"')
    assert props.metadata["source_url"] == event["data"]["url"]
    thumbnail = f"{containers['thumbnails']}/{thumbnail_name(containers['images'], name)}"
    assert outcome == Outcome(
        "written", f"thumbnail {thumbnail} 128x72 image/jpeg from JPEG 1600x900"
    )


def test_transparent_png_is_stored_as_png(
    app_env: dict[str, str],
    containers: dict[str, str],
    upload_event: Upload,
    blob_service: BlobServiceClient,
) -> None:
    event = upload_event(
        containers["images"], "logo.png", gen.encode(gen.transparent_rgba((512, 256)), "PNG")
    )
    invoke("create_thumbnail", event)
    data, props = read(blob_service, containers["thumbnails"], f"{containers['images']}/logo.png")
    assert props.content_settings.content_type == "image/png"
    assert gen.open_bytes(data).mode == "RGBA"


def test_heic_upload_gets_a_jpeg_thumbnail_under_the_mirrored_name(
    app_env: dict[str, str],
    containers: dict[str, str],
    upload_event: Upload,
    blob_service: BlobServiceClient,
) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # portrait, as a phone held upright records it
    heic = gen.encode(gen.halves((1600, 1200)), "HEIF", exif=exif.tobytes())
    event = upload_event(containers["images"], "phone/IMG_0001.HEIC", heic)
    invoke("create_thumbnail", event)
    data, props = read(
        blob_service, containers["thumbnails"], f"{containers['images']}/phone/IMG_0001.HEIC"
    )
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
    app_env: dict[str, str],
    containers: dict[str, str],
    upload_event: Upload,
    blob_service: BlobServiceClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from handlers.context import reset_context

    monkeypatch.setenv("THUMBNAIL_FORMAT", setting)
    reset_context()
    event = upload_event(
        containers["images"], "poster.gif", gen.encode(gen.transparent_rgba((400, 200)), "GIF")
    )
    invoke("create_thumbnail", event)
    names = [
        b.name for b in blob_service.get_container_client(containers["thumbnails"]).list_blobs()
    ]
    assert names == [f"{containers['images']}/poster.gif"]  # the name never depends on format
    data, props = read(blob_service, containers["thumbnails"], names[0])
    assert gen.open_bytes(data).format == fmt
    assert props.content_settings.content_type == content_type


def test_new_version_in_another_format_replaces_the_thumbnail_in_place(
    app_env: dict[str, str],
    containers: dict[str, str],
    upload_event: Upload,
    blob_service: BlobServiceClient,
) -> None:
    """Under auto an opaque logo gives JPEG and its transparent redesign PNG: one thumbnail
    blob either way, never a stale JPEG left beside the PNG."""
    images, thumbs = containers["images"], containers["thumbnails"]
    opaque = upload_event(images, "logo.png", gen.encode(gen.halves((400, 200)), "PNG"))
    assert statuses(opaque) == ["written"]
    _, first = read(blob_service, thumbs, f"{images}/logo.png")
    assert first.content_settings.content_type == "image/jpeg"
    clear = upload_event(images, "logo.png", gen.encode(gen.transparent_rgba((400, 200)), "PNG"))
    # A duplicate still writes nothing, nor does the old version's late redelivery.
    assert statuses(clear, clear, opaque) == ["written", "duplicate", "superseded"]
    names = [b.name for b in blob_service.get_container_client(thumbs).list_blobs()]
    assert names == [f"{images}/logo.png"]
    data, props = read(blob_service, thumbs, names[0])
    assert (gen.open_bytes(data).format, props.content_settings.content_type) == (
        "PNG",
        "image/png",
    )
    assert props.metadata[SOURCE_ETAG] == clear["data"]["eTag"].strip('"')


def test_corrupt_icc_profile_is_one_log_line_and_a_thumbnail(
    app_env: dict[str, str],
    containers: dict[str, str],
    upload_event: Upload,
    blob_service: BlobServiceClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    source = gen.encode(gen.halves((600, 400)), "JPEG", icc_profile=b"\x00" * 300)
    event = upload_event(containers["images"], "odd.jpg", source)
    outcome = outcome_of("create_thumbnail", event)
    assert outcome.status == "written"
    assert "ICC profile ignored (corrupt, 300 bytes" in outcome.detail
    # Said once, on the outcome's own line: no other log line mentions the profile.
    (mention,) = [r.getMessage() for r in caplog.records if "ICC profile" in r.getMessage()]
    assert mention.endswith(outcome.detail)
    data, _ = read(blob_service, containers["thumbnails"], f"{containers['images']}/odd.jpg")
    assert "icc_profile" not in gen.open_bytes(data).info


def test_made_from_tells_which_version_the_thumbnail_shows(
    app_env: dict[str, str],
    containers: dict[str, str],
    upload_event: Upload,
    blob_service: BlobServiceClient,
) -> None:
    from handlers.context import get_context

    settings = get_context().settings
    images = containers["images"]
    blob_service.create_container(containers["thumbnails"])
    assert made_from(blob_service, settings, images, "m.jpg") is None
    event = upload_event(images, "m.jpg", gen.encode(gen.halves((300, 200)), "JPEG"))
    invoke("create_thumbnail", event)
    assert made_from(blob_service, settings, images, "m.jpg") == event["data"]["eTag"].strip('"')
    newer = upload_event(images, "m.jpg", gen.encode(gen.halves((200, 300)), "JPEG"))
    assert made_from(blob_service, settings, images, "m.jpg") != newer["data"]["eTag"].strip('"')


def test_duplicate_delivery_writes_nothing(
    app_env: dict[str, str],
    containers: dict[str, str],
    upload_event: Upload,
    blob_service: BlobServiceClient,
) -> None:
    event = upload_event(containers["images"], "a.jpg", gen.encode(gen.halves((600, 400)), "JPEG"))
    assert statuses(event) == ["written"]
    _, first = read(blob_service, containers["thumbnails"], f"{containers['images']}/a.jpg")
    replayed = {**event, "id": "replayed-with-another-id"}
    assert statuses(event, replayed) == ["duplicate", "duplicate"]
    _, after = read(blob_service, containers["thumbnails"], f"{containers['images']}/a.jpg")
    assert after.etag == first.etag
    assert after.last_modified == first.last_modified


def test_concurrent_deliveries_write_once(
    app_env: dict[str, str],
    containers: dict[str, str],
    upload_event: Upload,
    blob_service: BlobServiceClient,
) -> None:
    event = upload_event(
        containers["images"], "race.png", gen.encode(gen.halves((2000, 1500)), "PNG")
    )
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []
    outcomes: list[Outcome] = []

    def deliver() -> None:
        barrier.wait()
        try:
            outcomes.append(outcome_of("create_thumbnail", event))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=deliver) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    assert Counter(outcome.status for outcome in outcomes) == {"written": 1, "duplicate": 7}
    _, props = read(blob_service, containers["thumbnails"], f"{containers['images']}/race.png")
    assert props.metadata[SOURCE_ETAG] == event["data"]["eTag"].strip('"')


def test_new_version_replaces_and_stale_event_does_not(
    app_env: dict[str, str],
    containers: dict[str, str],
    upload_event: Upload,
    blob_service: BlobServiceClient,
) -> None:
    first = upload_event(containers["images"], "v.jpg", gen.encode(gen.halves((800, 400)), "JPEG"))
    assert statuses(first) == ["written"]
    second = upload_event(containers["images"], "v.jpg", gen.encode(gen.halves((400, 800)), "JPEG"))
    assert statuses(second) == ["written"]
    data, props = read(blob_service, containers["thumbnails"], f"{containers['images']}/v.jpg")
    assert gen.open_bytes(data).size == (64, 128)
    assert props.metadata[SOURCE_ETAG] == second["data"]["eTag"].strip('"')

    assert statuses(first) == ["superseded"]  # late redelivery of the old version
    _, after = read(blob_service, containers["thumbnails"], f"{containers['images']}/v.jpg")
    assert after.etag == props.etag


def test_event_for_a_version_already_overwritten_writes_nothing(
    app_env: dict[str, str],
    containers: dict[str, str],
    upload_event: Upload,
    blob_service: BlobServiceClient,
) -> None:
    old = upload_event(containers["images"], "w.jpg", gen.encode(gen.halves((300, 300)), "JPEG"))
    upload_event(containers["images"], "w.jpg", gen.encode(gen.halves((300, 600)), "JPEG"))
    assert statuses(old) == ["superseded"]
    assert not blob_service.get_container_client(containers["thumbnails"]).exists()


@pytest.mark.parametrize("output", ["thumbnails", "ledger", "deadletter"])
def test_events_for_output_containers_are_ignored(
    output: str,
    app_env: dict[str, str],
    containers: dict[str, str],
    upload_event: Upload,
    blob_service: BlobServiceClient,
) -> None:
    """The recursion guard: a filter that also matched the thumbnail container changes nothing."""
    blob_service.create_container(containers[output])
    event = upload_event(
        containers[output], "images-x/a.jpg", gen.encode(gen.halves((300, 300)), "JPEG")
    )
    for function in ("create_thumbnail", "dispatch_batch_job"):
        outcome = outcome_of(function, event)
        assert outcome.status == "ignored"
        assert "output containers" in outcome.detail
    names = [b.name for b in blob_service.get_container_client(containers[output]).list_blobs()]
    assert names == ["images-x/a.jpg"]


def test_permanent_failures_are_logged_and_not_retried(
    app_env: dict[str, str],
    containers: dict[str, str],
    upload_event: Upload,
    blob_service: BlobServiceClient,
) -> None:
    images = containers["images"]
    cases = {
        "not-an-image.jpg": b"<html>not an image</html>",
        "empty.png": b"",
        "truncated.jpg": gen.encode(gen.halves((900, 600)), "JPEG")[:3000],
    }
    events = [upload_event(images, name, data) for name, data in cases.items()]
    gone = upload_event(images, "deleted.jpg", gen.encode(gen.halves((100, 100)), "JPEG"))
    blob_service.get_blob_client(images, "deleted.jpg").delete_blob()
    events.append(gone)
    # Each returns normally: Event Grid will not retry.
    failed = [outcome_of("create_thumbnail", event) for event in events]
    for outcome, reason in zip(
        failed, ["not an image", "empty (0 bytes)", "truncated", "deleted"], strict=True
    ):
        assert outcome.status == "failed"
        assert reason in outcome.detail
    assert not blob_service.get_container_client(containers["thumbnails"]).exists()


def test_size_limits_refuse_without_downloading(
    app_env: dict[str, str],
    containers: dict[str, str],
    upload_event: Upload,
    blob_service: BlobServiceClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("THUMBNAIL_MAX_BYTES", "1000")
    monkeypatch.setenv("THUMBNAIL_MAX_PIXELS", "10000")
    from handlers.context import reset_context

    reset_context()
    big = upload_event(containers["images"], "big.png", gen.encode(gen.halves((500, 500)), "PNG"))
    lied = {**big, "data": {**big["data"], "contentLength": 10}}  # the event understates it
    wide = upload_event(
        containers["images"], "wide.png", gen.encode(Image.new("L", (200, 200)), "PNG")
    )
    failed = [outcome_of("create_thumbnail", event) for event in (big, lied, wide)]
    assert [outcome.status for outcome in failed] == ["failed"] * 3
    assert "not downloaded" in failed[0].detail
    assert "over THUMBNAIL_MAX_BYTES" in failed[1].detail
    assert "over THUMBNAIL_MAX_PIXELS" in failed[2].detail


def test_bad_settings_raise_naming_the_setting(
    app_env: dict[str, str],
    containers: dict[str, str],
    upload_event: Upload,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from handlers.context import reset_context
    from handlers.errors import ConfigurationError

    monkeypatch.setenv("THUMBNAIL_SIZE", "huge")
    reset_context()
    event = upload_event(containers["images"], "s.jpg", gen.encode(gen.halves((100, 100)), "JPEG"))
    with pytest.raises(ConfigurationError, match="THUMBNAIL_SIZE"):
        invoke("create_thumbnail", event)


@pytest.mark.slow  # real retry back-offs: seconds by design
def test_storage_unreachable_is_transient(
    app_env: dict[str, str],
    containers: dict[str, str],
    upload_event: Upload,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Storage down: the function raises, so Event Grid retries (and finally dead-letters)."""
    from handlers.context import reset_context
    from handlers.errors import StorageUnavailableError
    from tools import azurite

    event = upload_event(
        containers["images"], "later.jpg", gen.encode(gen.halves((100, 100)), "JPEG")
    )
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


def test_clients_are_made_once_per_process(
    app_env: dict[str, str],
    containers: dict[str, str],
    upload_event: Upload,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from handlers import context

    built: list[context.AppContext] = []
    original = context.AppContext.from_env.__func__  # type: ignore[attr-defined]

    def counting(
        cls: type[context.AppContext], env: Any = None, **policies: Any
    ) -> context.AppContext:
        made = original(cls, env, **policies)
        built.append(made)
        return made

    monkeypatch.setattr(context.AppContext, "from_env", classmethod(counting))
    for number in range(3):
        event = upload_event(
            containers["images"], f"n{number}.jpg", gen.encode(gen.halves((64, 64)), "JPEG")
        )
        invoke("create_thumbnail", event)
        invoke("dispatch_batch_job", event)
    assert len(built) == 1
