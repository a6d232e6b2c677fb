"""Animated sources through create_thumbnail against a real Azurite, invoked as the host
would invoke it: animated WebP out, frame count, durations and loop kept, the cap, and the
still formats."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import pytest
from azure.storage.blob import BlobServiceClient
from PIL import Image

from handlers.context import reset_context
from handlers.outcomes import Outcome
from handlers.thumbnails import SOURCE_ETAG
from tests.support import gifs
from tests.support.host import invoke, outcome_of

pytestmark = pytest.mark.azurite

DURATIONS = [30, 60, 90, 120, 150, 180, 210, 240, 270, 300, 500, 1000, 40, 80, 2000, 70]


class Stored:
    """This test's image container on Azurite and the thumbnails the app writes for it."""

    def __init__(
        self,
        service: BlobServiceClient,
        containers: dict[str, str],
        upload_event: Callable[..., dict[str, Any]],
    ) -> None:
        self.service = service
        self.images = containers["images"]
        self.thumbnails = containers["thumbnails"]
        self._upload = upload_event

    def upload(self, name: str, data: bytes) -> dict[str, Any]:
        return self._upload(self.images, name, data)

    def thumbnail(self, name: str) -> tuple[bytes, Any]:
        client = self.service.get_blob_client(self.thumbnails, f"{self.images}/{name}")
        return client.download_blob().readall(), client.get_blob_properties()


@pytest.fixture
def stored(
    app_env: dict[str, str],
    containers: dict[str, str],
    upload_event: Callable[..., dict[str, Any]],
    blob_service: BlobServiceClient,
) -> Stored:
    return Stored(blob_service, containers, upload_event)


def with_settings(monkeypatch: pytest.MonkeyPatch, **values: str) -> None:
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    reset_context()


def frames_and_durations(data: bytes) -> tuple[list[Image.Image], list[int]]:
    decoded = gifs.frames_of(data)
    return [frame for frame, _ in decoded], [duration for _, duration in decoded]


def test_animated_gif_gives_an_animated_webp_with_the_same_frames_and_durations(
    stored: Stored,
) -> None:
    frames = gifs.distinct_frames(len(DURATIONS), (480, 270))
    event = stored.upload("party/dance.gif", gifs.animated(frames, "GIF", DURATIONS, loop=0))
    outcome = outcome_of("create_thumbnail", event)

    data, props = stored.thumbnail("party/dance.gif")
    image = Image.open(io.BytesIO(data))
    assert (image.format, image.is_animated, image.info["loop"]) == ("WEBP", True, 0)
    decoded, durations = frames_and_durations(data)
    assert len(decoded) == len(DURATIONS)
    assert durations == DURATIONS
    assert {frame.size for frame in decoded} == {(128, 72)}
    assert props.content_settings.content_type == "image/webp"
    assert props.metadata[SOURCE_ETAG] == event["data"]["eTag"].strip('"')
    assert outcome == Outcome(
        "written",
        f"thumbnail {stored.thumbnails}/{stored.images}/party/dance.gif 128x72 image/webp "
        f"from GIF 480x270; animated, {len(DURATIONS)} frames",
    )
    # A second delivery of the same event writes nothing.
    assert outcome_of("create_thumbnail", event).status == "duplicate"


def test_animated_webp_source_gives_an_animated_webp(
    stored: Stored, monkeypatch: pytest.MonkeyPatch
) -> None:
    with_settings(monkeypatch, THUMBNAIL_FORMAT="webp")
    frames = gifs.distinct_frames(6, (640, 480))
    source = gifs.animated(frames, "WEBP", DURATIONS[:6], loop=2, quality=90)
    invoke("create_thumbnail", stored.upload("loop.webp", source))
    data, props = stored.thumbnail("loop.webp")
    decoded, durations = frames_and_durations(data)
    assert (len(decoded), durations) == (6, DURATIONS[:6])
    assert {frame.size for frame in decoded} == {(128, 96)}
    assert Image.open(io.BytesIO(data)).info["loop"] == 2
    assert props.content_settings.content_type == "image/webp"


@pytest.mark.parametrize(
    ("setting", "fmt", "content_type"),
    [("jpeg", "JPEG", "image/jpeg"), ("png", "PNG", "image/png")],
)
def test_a_still_format_gives_the_first_frame(
    setting: str, fmt: str, content_type: str, stored: Stored, monkeypatch: pytest.MonkeyPatch
) -> None:
    with_settings(monkeypatch, THUMBNAIL_FORMAT=setting)
    red, blue = (
        Image.new("RGB", (400, 200), (220, 20, 20)),
        Image.new("RGB", (400, 200), (20, 20, 220)),
    )
    invoke(
        "create_thumbnail", stored.upload("flag.gif", gifs.animated([red, blue], "GIF", [500, 500]))
    )
    data, props = stored.thumbnail("flag.gif")
    image = Image.open(io.BytesIO(data))
    assert (image.format, image.size, getattr(image, "n_frames", 1)) == (fmt, (128, 64), 1)
    red_seen = image.convert("RGB").getpixel((64, 32))
    assert red_seen[0] > 180 and red_seen[2] < 60
    assert props.content_settings.content_type == content_type


def test_thumbnail_max_frames_keeps_the_first_frames(
    stored: Stored, monkeypatch: pytest.MonkeyPatch
) -> None:
    with_settings(monkeypatch, THUMBNAIL_MAX_FRAMES="5")
    frames = gifs.distinct_frames(len(DURATIONS), (200, 200))
    event = stored.upload("long.gif", gifs.animated(frames, "GIF", DURATIONS))
    outcome = outcome_of("create_thumbnail", event)
    data, _ = stored.thumbnail("long.gif")
    decoded, durations = frames_and_durations(data)
    assert (len(decoded), durations) == (5, DURATIONS[:5])
    assert outcome.detail.endswith(
        f"; animated, first 5 of {len(DURATIONS)} frames (THUMBNAIL_MAX_FRAMES)"
    )


def test_max_frames_one_makes_every_thumbnail_a_still(
    stored: Stored, monkeypatch: pytest.MonkeyPatch
) -> None:
    with_settings(monkeypatch, THUMBNAIL_MAX_FRAMES="1")
    frames = gifs.distinct_frames(4, (200, 100))
    invoke("create_thumbnail", stored.upload("still.gif", gifs.animated(frames, "GIF", [100] * 4)))
    data, props = stored.thumbnail("still.gif")
    assert Image.open(io.BytesIO(data)).format == "JPEG"
    assert props.content_settings.content_type == "image/jpeg"
