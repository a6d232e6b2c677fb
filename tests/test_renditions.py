"""Issue 19: renditions, cover crops, placeholders, headers and stale thumbnails, through
create_thumbnail against a real Azurite, invoked as the host would invoke it."""

# The ops fixtures come from tests/test_ops.py; pytest finds them by their imported names,
# which the test parameters then shadow on purpose.
# ruff: noqa: F811

from __future__ import annotations

import os
import random
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError
from azure.storage.blob import BlobServiceClient
from PIL import Image, ImageStat

from handlers import images
from handlers.context import AppContext, reset_context
from handlers.memory import DecodeBudget, MiB
from handlers.settings import Settings
from handlers.thumbnails import BLURHASH, FINGERPRINT, SOURCE_ETAG
from tests.support import gifs
from tests.support import images as gen
from tests.support.host import outcome_of
from tests.test_animation import webp_frames
from tests.test_blurhash import decoded, mean_colour
from tests.test_memory import reads_of, storage_proxy, through  # noqa: F401  (a fixture)
from tests.test_ops import Ops, ops, routes_file, state_dir  # noqa: F401  (fixtures)
from tools.counting_proxy import CountingProxy

pytestmark = pytest.mark.azurite

Upload = Callable[..., dict[str, Any]]
SIZES = "128,256,64"
IMMUTABLE = "public, max-age=31536000, immutable"


@pytest.fixture
def thumbs(
    app_env: dict[str, str],
    containers: dict[str, str],
    upload_event: Upload,
    blob_service: BlobServiceClient,
) -> Iterator[Thumbs]:
    yield Thumbs(blob_service, containers, upload_event)


class Thumbs:
    """This test's containers, and the settings the app runs under (changed with ``use``)."""

    def __init__(
        self, service: BlobServiceClient, containers: dict[str, str], upload: Upload
    ) -> None:
        self.service = service
        self.images = containers["images"]
        self.thumbnails = containers["thumbnails"]
        self._upload = upload

    def use(self, **settings: str) -> None:
        for name, value in settings.items():
            os.environ[name] = value
        reset_context()

    def upload(self, name: str, data: bytes) -> dict[str, Any]:
        return self._upload(self.images, name, data)

    def blob(self, name: str) -> Any:
        return self.service.get_blob_client(self.thumbnails, name)

    def read(self, name: str) -> tuple[Image.Image, Any]:
        client = self.blob(name)
        return gen.open_bytes(client.download_blob().readall()), client.get_blob_properties()

    def etags(self) -> dict[str, str]:
        listed = self.service.get_container_client(self.thumbnails).list_blobs()
        return {blob.name: str(blob.etag) for blob in listed}


def test_every_rendition_has_its_size_name_and_headers(thumbs: Thumbs) -> None:
    thumbs.use(THUMBNAIL_SIZES=SIZES)
    event = thumbs.upload("trip/beach.jpg", gen.encode(gen.halves((1600, 900)), "JPEG"))
    outcome = outcome_of("create_thumbnail", event)
    assert outcome.status == "written", outcome.detail
    i = thumbs.images
    expected = {f"{i}/trip/beach.jpg": (128, 72), f"256/{i}/trip/beach.jpg": (256, 144)}
    expected[f"64/{i}/trip/beach.jpg"] = (64, 36)
    assert set(thumbs.etags()) == set(expected)
    fingerprints = set()
    for name, size in expected.items():
        image, props = thumbs.read(name)
        assert (image.format, image.size) == ("JPEG", size)
        assert props.content_settings.content_type == "image/jpeg"
        assert props.content_settings.cache_control == IMMUTABLE
        assert props.metadata[SOURCE_ETAG] == event["data"]["eTag"].strip('"')
        assert (props.metadata["sourcewidth"], props.metadata["sourceheight"]) == ("1600", "900")
        assert len(props.metadata[BLURHASH]) == 4 + 2 * 4 * 3  # 4x3 components
        fingerprints.add(props.metadata[FINGERPRINT])
    assert len(fingerprints) == 1
    assert f"{thumbs.thumbnails}/{i}/trip/beach.jpg 128x72 image/jpeg" in outcome.detail
    assert f"also 256/{i}/trip/beach.jpg 256x144, 64/{i}/trip/beach.jpg 64x36" in outcome.detail


def test_headers_follow_the_settings_and_the_format(thumbs: Thumbs) -> None:
    thumbs.use(THUMBNAIL_SIZES="96,48", THUMBNAIL_CACHE_CONTROL="public, max-age=600")
    event = thumbs.upload("logo.png", gen.encode(gen.transparent_rgba((400, 200)), "PNG"))
    assert outcome_of("create_thumbnail", event).status == "written"
    for name in (f"{thumbs.images}/logo.png", f"48/{thumbs.images}/logo.png"):
        image, props = thumbs.read(name)
        assert image.format == "PNG"
        assert props.content_settings.content_type == "image/png"
        assert props.content_settings.cache_control == "public, max-age=600"


def test_the_upright_source_size_is_recorded(thumbs: Thumbs) -> None:
    thumbs.use(THUMBNAIL_SIZES="128")
    event = thumbs.upload("portrait.jpg", gen.with_orientation(gen.halves((800, 600)), 6))
    assert outcome_of("create_thumbnail", event).status == "written"
    image, props = thumbs.read(f"{thumbs.images}/portrait.jpg")
    assert image.size == (96, 128)
    assert (props.metadata["sourcewidth"], props.metadata["sourceheight"]) == ("600", "800")


def test_n_renditions_share_one_download_and_one_decode(
    thumbs: Thumbs,
    storage_proxy: CountingProxy,
    azurite_service: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    thumbs.use(THUMBNAIL_SIZES="128,512,256,64")
    data = gen.encode(gen.halves((3000, 2000)), "JPEG")
    opened: list[tuple[int, int]] = []
    real_open = images._open

    def counted(source: bytes, max_pixels: int) -> Image.Image:
        image = real_open(source, max_pixels)
        opened.append(image.size)
        return image

    monkeypatch.setattr(images, "_open", counted)
    budget = DecodeBudget(512 * MiB)
    event = through(storage_proxy, thumbs.upload("big/one.jpg", data), azurite_service)
    ctx = AppContext(Settings.from_env(os.environ), decode_budget=budget)
    outcome = outcome_of("create_thumbnail", event, ctx)
    assert outcome.status == "written", outcome.detail
    assert len(thumbs.etags()) == 4
    assert len(reads_of(storage_proxy, thumbs.images, "big/one.jpg")) == 1  # one download
    assert opened == [(3000, 2000)]  # one open, one decode
    # What was reserved is one decode at the largest size: JPEG's 1/4 draft for 512 px.
    one_decode = images.predicted_cost(data, 512, 10**9)
    assert one_decode is not None
    assert budget.peak == one_decode.cost
    assert budget.in_use == 0


def test_duplicate_deliveries_write_nothing(thumbs: Thumbs) -> None:
    thumbs.use(THUMBNAIL_SIZES=SIZES)
    event = thumbs.upload("dup.jpg", gen.encode(gen.halves((800, 600)), "JPEG"))
    assert outcome_of("create_thumbnail", event).status == "written"
    before = thumbs.etags()
    again = [outcome_of("create_thumbnail", event) for _ in range(3)]
    assert [outcome.status for outcome in again] == ["duplicate"] * 3
    assert "(+2 renditions)" in again[0].detail
    assert thumbs.etags() == before


def test_a_failed_rendition_write_is_redone_alone(thumbs: Thumbs) -> None:
    """A lease held on one rendition makes its write fail (Azure answers 412 LeaseIdMissing):
    the delivery fails after writing the others; once the lease is
    gone the redelivery writes only that one."""
    thumbs.use(THUMBNAIL_SIZES=SIZES)
    i = thumbs.images
    locked = thumbs.blob(f"256/{i}/part.jpg")
    thumbs.service.get_container_client(thumbs.thumbnails).create_container()
    locked.upload_blob(b"an older rendition")
    lease = locked.acquire_lease(-1)
    event = thumbs.upload("part.jpg", gen.encode(gen.halves((800, 600)), "JPEG"))
    # The error escapes the function, so the host fails the delivery and Event Grid retries it.
    with pytest.raises(HttpResponseError, match="LeaseIdMissing"):
        outcome_of("create_thumbnail", event)
    first = thumbs.etags()
    assert set(first) == {f"{i}/part.jpg", f"256/{i}/part.jpg", f"64/{i}/part.jpg"}
    assert thumbs.read(f"{i}/part.jpg")[1].metadata[SOURCE_ETAG] == event["data"]["eTag"].strip('"')
    lease.release()
    outcome = outcome_of("create_thumbnail", event)
    assert outcome.status == "written", outcome.detail
    after = thumbs.etags()
    assert after[f"{i}/part.jpg"] == first[f"{i}/part.jpg"]
    assert after[f"64/{i}/part.jpg"] == first[f"64/{i}/part.jpg"]
    assert after[f"256/{i}/part.jpg"] != first[f"256/{i}/part.jpg"]
    image, _ = thumbs.read(f"256/{i}/part.jpg")
    assert image.size == (256, 192)


def _detail_off_centre(size: tuple[int, int], patch: tuple[int, int, int, int]) -> Image.Image:
    """A flat grey image with a patch of coarse noise (20 px cells, so that it survives the
    reduction to a thumbnail) in ``patch``: the only detail in it."""
    image = Image.new("RGB", size, (128, 128, 128))
    rng = random.Random(3)
    left, top, right, bottom = patch
    cells = Image.new("RGB", ((right - left) // 20, (bottom - top) // 20))
    cells.putdata(
        [tuple(rng.randrange(256) for _ in range(3)) for _ in range(cells.width * cells.height)]
    )
    image.paste(cells.resize((right - left, bottom - top), Image.Resampling.NEAREST), (left, top))
    return image


def test_cover_keeps_the_detailed_subject_in_the_frame(thumbs: Thumbs) -> None:
    thumbs.use(THUMBNAIL_SIZES="128,64", THUMBNAIL_FIT="cover", THUMBNAIL_ASPECT="1:1")
    # 1200x600: a centred square would be x 300..900 and miss the patch at 960..1160.
    source = _detail_off_centre((1200, 600), (960, 200, 1160, 400))
    event = thumbs.upload("subject.png", gen.encode(source, "PNG"))
    assert outcome_of("create_thumbnail", event).status == "written"
    for name, side in (
        (f"{thumbs.images}/subject.png", 128),
        (f"64/{thumbs.images}/subject.png", 64),
    ):
        image, _ = thumbs.read(name)
        assert image.size == (side, side)
        # The patch is at x 77..119 and y 43..85 of the 128 px square kept (source x 600..1200);
        # the left quarter, source x 600..750, is flat.
        scale = side / 600
        inside = (round(380 * scale), round(220 * scale), round(540 * scale), round(380 * scale))
        right = ImageStat.Stat(image.crop(inside))
        left = ImageStat.Stat(image.crop((0, 0, side // 4, side)))
        assert min(right.stddev) > 30, right.stddev
        assert max(left.stddev) < 5, left.stddev


def test_the_blurhash_decodes_to_the_thumbnails_colours(thumbs: Thumbs) -> None:
    thumbs.use(THUMBNAIL_SIZES="128,64")
    event = thumbs.upload("halves.png", gen.encode(gen.halves((800, 600)), "PNG"))
    assert outcome_of("create_thumbnail", event).status == "written"
    image, props = thumbs.read(f"{thumbs.images}/halves.png")
    blur = decoded(props.metadata[BLURHASH], image.size)
    width, height = image.size
    whole = (0, 0, width, height)
    assert all(
        abs(a - b) <= 6
        for a, b in zip(mean_colour(blur, whole), mean_colour(image, whole), strict=True)
    )
    for box in ((0, 0, width // 3, height), (width * 2 // 3, 0, width, height)):
        got, want = mean_colour(blur, box), mean_colour(image, box)
        assert all(abs(a - b) <= 30 for a, b in zip(got, want, strict=True)), (box, got, want)


def test_blurhash_off_stores_none(thumbs: Thumbs) -> None:
    thumbs.use(THUMBNAIL_BLURHASH="off")
    event = thumbs.upload("plain.jpg", gen.encode(gen.halves((400, 300)), "JPEG"))
    assert outcome_of("create_thumbnail", event).status == "written"
    _, props = thumbs.read(f"{thumbs.images}/plain.jpg")
    assert BLURHASH not in props.metadata
    assert props.metadata["sourcewidth"] == "400"


def test_an_animated_gif_gives_animated_webp_renditions(thumbs: Thumbs) -> None:
    thumbs.use(THUMBNAIL_SIZES="128,64")
    durations = [40, 80, 120, 200]
    source = gifs.animated(gifs.distinct_frames(4, (480, 270)), "GIF", durations)
    event = thumbs.upload("anim.gif", source)
    assert outcome_of("create_thumbnail", event).status == "written"
    for name, size in (
        (f"{thumbs.images}/anim.gif", (128, 72)),
        (f"64/{thumbs.images}/anim.gif", (64, 36)),
    ):
        client = thumbs.blob(name)
        frames = webp_frames(client.download_blob().readall())
        assert [duration for _, duration in frames] == durations
        assert {frame.size for frame, _ in frames} == {size}
        props = client.get_blob_properties()
        assert props.content_settings.content_type == "image/webp"
        assert props.metadata[BLURHASH]


def test_a_settings_change_redoes_the_thumbnail_and_backfill_offers_it(
    thumbs: Thumbs, ops: Ops
) -> None:
    i = thumbs.images
    event = thumbs.upload("again.jpg", gen.encode(gen.halves((800, 600)), "JPEG"))
    assert outcome_of("create_thumbnail", event).status == "written"
    done = ops("backfill", "--container", i, "--dry-run")
    assert "already done 1" in done.out, done.out

    thumbs.use(THUMBNAIL_SIZES="128,256")
    stale = ops("backfill", "--container", i, "--dry-run")
    assert "would process 1 (1 of them stale), already done 0" in stale.out, stale.out
    t = thumbs.thumbnails
    assert (
        "stale (content not checked; made from this version under other settings or missing: "
        f"{t}/{i}/again.jpg, {t}/256/{i}/again.jpg): create_thumbnail {i}/again.jpg"
    ) in stale.out

    before = thumbs.etags()
    run = ops("backfill", "--container", i)
    assert run.code == 0, run.out + run.err
    after = thumbs.etags()
    assert after[f"{i}/again.jpg"] != before[f"{i}/again.jpg"]  # redone: another fingerprint
    assert f"256/{i}/again.jpg" in after
    assert "already done 1" in ops("backfill", "--container", i, "--dry-run").out
    # The event itself, delivered again, is now a duplicate.
    assert outcome_of("create_thumbnail", event).status == "duplicate"


def test_a_redelivery_after_a_settings_change_redoes_only_the_stale(thumbs: Thumbs) -> None:
    thumbs.use(THUMBNAIL_SIZES="128")
    event = thumbs.upload("fmt.png", gen.encode(gen.halves((800, 600)), "PNG"))
    assert outcome_of("create_thumbnail", event).status == "written"
    thumbs.use(THUMBNAIL_FORMAT="webp")
    outcome = outcome_of("create_thumbnail", event)
    assert outcome.status == "written", outcome.detail
    image, props = thumbs.read(f"{thumbs.images}/fmt.png")
    assert (image.format, props.content_settings.content_type) == ("WEBP", "image/webp")
    assert outcome_of("create_thumbnail", event).status == "duplicate"


def test_each_rendition_has_the_box_a_single_size_thumbnail_would_have() -> None:
    """Resized from the rendition above, but boxed from the source's own shape: 6000x4000 at
    128 is 128x85 (85.3), not the 128x86 that halving 256x171 would give."""
    from handlers.images import make_renditions, make_thumbnail
    from handlers.renditions import Shape

    data = gen.encode(gen.halves((6000, 4000)), "JPEG")
    sizes = (512, 256, 128, 100)
    made = make_renditions(data, Shape(sizes), 10**9)
    alone = [make_thumbnail(data, size, 10**9) for size in sizes]
    assert [(r.width, r.height) for r in made.items] == [(t.width, t.height) for t in alone]
    assert [(r.width, r.height) for r in made.items][2] == (128, 85)
