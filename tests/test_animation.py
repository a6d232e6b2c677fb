"""Animated GIF and WebP sources as animated WebP thumbnails (handlers.animation), on bytes."""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from PIL import Image, ImageCms

from handlers import animation
from handlers.errors import InvalidBlobError, TooLargeToDecodeError
from handlers.images import make_thumbnail
from handlers.memory import DecodeBudget
from tests.support import gifs
from tests.support.gifs import BLUE, CLEAR, GREEN, RED, Patch, solid
from tools import icc

LIMIT = 150_000_000
SRGB = ImageCms.createProfile("sRGB")


def webp_frames(data: bytes) -> list[tuple[Image.Image, int]]:
    image = Image.open(io.BytesIO(data))
    assert (image.format, getattr(image, "is_animated", False)) == ("WEBP", True)
    return gifs.frames_of(data)


def close(colour: tuple[int, ...], expected: tuple[int, ...], tolerance: int = 12) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(colour, expected, strict=True))


def test_animated_gif_keeps_frame_count_durations_and_size() -> None:
    frames = gifs.distinct_frames(12, (480, 270))
    durations = [20, 40, 60, 80, 100, 120, 140, 160, 180, 200, 1000, 2500]
    source = gifs.animated(frames, "GIF", durations, loop=0)
    result = make_thumbnail(source, 128, LIMIT)
    assert (result.content_type, result.width, result.height) == ("image/webp", 128, 72)
    decoded = webp_frames(result.data)
    assert [duration for _, duration in decoded] == durations
    assert all(frame.size == (128, 72) for frame, _ in decoded)
    for (frame, _), original in zip(decoded, frames, strict=True):
        # Each frame shows its own source frame, not another one's.
        expected = original.resize((128, 72), Image.Resampling.LANCZOS).getpixel((120, 36))
        assert close(frame.getpixel((120, 36))[:3], expected, 16)
    assert result.note == "animated, 12 frames"


@pytest.mark.parametrize(
    ("loop", "expected"),
    [(0, 0), (None, 1), (1, 2), (4, 5)],
    ids=["forever", "no loop record: once", "1 repeat: 2 plays", "4 repeats: 5 plays"],
)
def test_gif_loop_count_becomes_webp_plays(loop: int | None, expected: int) -> None:
    source = gifs.animated(gifs.distinct_frames(3, (64, 64)), "GIF", [50, 50, 50], loop=loop)
    result = make_thumbnail(source, 32, LIMIT)
    assert Image.open(io.BytesIO(result.data)).info["loop"] == expected


def test_animated_webp_source_keeps_frames_durations_and_loop() -> None:
    frames = gifs.distinct_frames(5, (300, 300))
    source = gifs.animated(frames, "WEBP", [30, 70, 110, 150, 190], loop=3, lossless=True)
    result = make_thumbnail(source, 128, LIMIT, "webp")
    decoded = webp_frames(result.data)
    assert [duration for _, duration in decoded] == [30, 70, 110, 150, 190]
    assert Image.open(io.BytesIO(result.data)).info["loop"] == 3
    assert (result.source_format, result.width, result.height) == ("WEBP", 128, 128)


def test_disposal_restore_previous_brings_back_the_frame_before() -> None:
    """Frame 2 (blue, disposal 3) is undone before frame 3 paints green elsewhere: frame 3
    shows red where the blue was, never the blue."""
    source = gifs.gif_of_patches(
        (64, 64),
        [
            Patch(solid((64, 64), RED), (0, 0), 1, 100),
            Patch(solid((24, 24), BLUE), (4, 4), 3, 200),
            Patch(solid((24, 24), GREEN), (36, 36), 1, 300),
        ],
    )
    decoded = webp_frames(make_thumbnail(source, 64, LIMIT).data)
    assert [duration for _, duration in decoded] == [100, 200, 300]
    (first, _), (second, _), (third, _) = decoded
    assert close(second.getpixel((15, 15)), (*gifs.PALETTE_COLOURS[BLUE], 255))
    assert close(third.getpixel((15, 15)), (*gifs.PALETTE_COLOURS[RED], 255))
    assert close(third.getpixel((47, 47)), (*gifs.PALETTE_COLOURS[GREEN], 255))
    assert close(first.getpixel((47, 47)), (*gifs.PALETTE_COLOURS[RED], 255))


@pytest.mark.parametrize("own_index", [True, False], ids=["frame names it", "frame does not"])
def test_disposal_restore_background_clears_to_transparent(own_index: bool) -> None:
    """A sprite on a transparent canvas: after a disposal-2 frame its area is transparent
    again, as browsers show it, whether or not that frame names a transparent index."""
    source = gifs.gif_of_patches(
        (64, 64),
        [
            Patch(solid((64, 64), CLEAR), (0, 0), 1, 100, transparent=True),
            Patch(solid((24, 24), BLUE), (4, 4), 2, 200, transparent=own_index),
            Patch(solid((24, 24), GREEN), (36, 36), 1, 300, transparent=True),
        ],
    )
    result = make_thumbnail(source, 64, LIMIT)
    (first, _), (second, _), (third, _) = webp_frames(result.data)
    assert first.getpixel((15, 15))[3] == 0
    assert close(second.getpixel((15, 15)), (*gifs.PALETTE_COLOURS[BLUE], 255))
    assert third.getpixel((15, 15))[3] == 0  # the blue sprite is gone, not painted over
    assert close(third.getpixel((47, 47)), (*gifs.PALETTE_COLOURS[GREEN], 255))
    assert third.getpixel((2, 60))[3] == 0


def test_transparency_over_earlier_frames_shows_them_through() -> None:
    """A later frame's transparent pixels leave what is under them (disposal 1)."""
    patch = solid((32, 32), CLEAR)
    patch.paste(GREEN, (8, 8, 24, 24))
    source = gifs.gif_of_patches(
        (64, 64),
        [
            Patch(solid((64, 64), RED), (0, 0), 1, 100),
            Patch(patch, (0, 0), 1, 100, transparent=True),
        ],
    )
    (_, _), (second, _) = webp_frames(make_thumbnail(source, 64, LIMIT).data)
    assert close(second.getpixel((2, 2)), (*gifs.PALETTE_COLOURS[RED], 255))
    assert close(second.getpixel((16, 16)), (*gifs.PALETTE_COLOURS[GREEN], 255))


def test_frames_are_capped_to_the_first_ones() -> None:
    durations = [10 * (index + 1) for index in range(30)]
    source = gifs.animated(gifs.distinct_frames(30, (96, 96)), "GIF", durations)
    result = make_thumbnail(source, 64, LIMIT, "auto", max_frames=8)
    assert [duration for _, duration in webp_frames(result.data)] == durations[:8]
    assert result.note == "animated, first 8 of 30 frames (THUMBNAIL_MAX_FRAMES)"


def test_identical_frames_merge_and_keep_their_time() -> None:
    """libwebp folds a frame identical to the one before into it: fewer frames, the same
    timeline."""
    red, blue = Image.new("RGB", (64, 64), (220, 20, 20)), Image.new("RGB", (64, 64), (20, 20, 220))
    source = gifs.animated([red, red, blue], "GIF", [100, 200, 300])
    decoded = webp_frames(make_thumbnail(source, 64, LIMIT).data)
    assert [duration for _, duration in decoded] == [300, 300]


class RecordingBudget:
    """A decode budget with ``limit`` (handlers.memory.DecodeBudget's interface) that
    records every reservation asked of it."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.asked: list[tuple[int, str]] = []

    @contextmanager
    def reserve(self, size: int, what: str) -> Iterator[None]:
        self.asked.append((size, what))
        yield


def _opened(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data))


def test_the_budget_is_asked_for_the_predicted_bytes_of_every_kept_frame() -> None:
    source = gifs.animated(gifs.distinct_frames(20, (480, 270)), "GIF", [40] * 20)
    budget = RecordingBudget(1 << 30)
    result = animation.animated_thumbnail(_opened(source), 128, 100, 80, budget=budget)
    cost = animation.frame_cost(_opened(source), 128)
    assert budget.asked == [(cost.total(20), "480x270 GIF of 20 frames")]
    # Each kept frame is an RGBA thumbnail; the canvas is decoded one frame at a time.
    assert cost.per_frame == 128 * 72 * 4
    assert cost.fixed > 480 * 270 * 4
    assert len(result.durations) == 20


def test_frames_are_capped_by_what_the_budget_can_ever_hold() -> None:
    source = gifs.animated(gifs.distinct_frames(20, (480, 270)), "GIF", [40] * 20)
    cost = animation.frame_cost(_opened(source), 128)
    budget = RecordingBudget(cost.total(6) + cost.per_frame // 2)
    result = animation.animated_thumbnail(_opened(source), 128, 100, 80, budget=budget)
    assert [size for size, _ in budget.asked] == [cost.total(6)]
    assert len(webp_frames(result.data)) == 6
    assert result.note == "animated, first 6 of 20 frames (the decode budget)"


def test_a_budget_that_holds_no_frame_is_still_asked_for_one() -> None:
    """The budget decides (handlers.memory refuses what exceeds it as too large)."""
    source = gifs.animated(gifs.distinct_frames(4, (480, 270)), "GIF", [40] * 4)
    budget = RecordingBudget(1024)
    animation.animated_thumbnail(_opened(source), 128, 100, 80, budget=budget)
    assert [size for size, _ in budget.asked] == [
        animation.frame_cost(_opened(source), 128).total(1)
    ]


def test_still_sources_are_not_animated() -> None:
    still_gif = gifs.animated([Image.new("RGB", (64, 64))], "GIF", [100])
    assert not animation.is_animated(_opened(still_gif))
    assert make_thumbnail(still_gif, 32, LIMIT).content_type == "image/jpeg"
    still_webp = gifs.animated([Image.new("RGB", (64, 64))], "WEBP", [100])
    assert not animation.is_animated(_opened(still_webp))
    moving = gifs.animated(gifs.distinct_frames(2, (64, 64)), "GIF", [100, 100])
    assert animation.is_animated(_opened(moving))


def test_thumbnail_box_matches_the_still_path() -> None:
    """Every shape the still path gives, the animation gives too."""
    for shape in [(4000, 30), (30, 4000), (333, 500), (64, 64), (100, 40)]:
        frames = [Image.new("RGB", shape, colour) for colour in ((200, 0, 0), (0, 0, 200))]
        moving = make_thumbnail(gifs.animated(frames, "GIF", [50, 50]), 128, LIMIT)
        still = make_thumbnail(gifs.animated(frames, "GIF", [50, 50]), 128, LIMIT, "png")
        assert (moving.width, moving.height) == (still.width, still.height), shape


def test_max_frames_below_one_is_a_programming_error() -> None:
    source = gifs.animated(gifs.distinct_frames(2, (64, 64)), "GIF", [100, 100])
    with pytest.raises(ValueError, match="max_frames"):
        animation.animated_thumbnail(_opened(source), 32, 0, 80)


def test_make_thumbnail_reserves_the_frames_in_the_process_decode_budget() -> None:
    """Through the real handlers.memory budget: the frames are capped to what it can hold and
    reserved while they live; a budget smaller than one frame refuses the image for good."""
    source = gifs.animated(gifs.distinct_frames(20, (480, 270)), "GIF", [40] * 20)
    cost = animation.frame_cost(_opened(source), 128)
    budget = DecodeBudget(cost.total(6) + cost.per_frame // 2, wait_seconds=0)
    result = make_thumbnail(source, 128, LIMIT, "auto", budget)
    assert len(webp_frames(result.data)) == 6
    assert result.note == "animated, first 6 of 20 frames (the decode budget)"
    assert budget.peak == cost.total(6)
    with pytest.raises(TooLargeToDecodeError):
        make_thumbnail(source, 128, LIMIT, "auto", DecodeBudget(1024, wait_seconds=0))


def test_a_frame_cut_short_is_a_corrupt_image() -> None:
    """Event Grid announces only complete blobs: a GIF whose frame data stops early is
    broken, and refused as the still path refuses a truncated image."""
    source = gifs.animated(gifs.distinct_frames(6, (200, 200)), "GIF", [50] * 6)
    with pytest.raises(InvalidBlobError, match="corrupt or truncated GIF"):
        make_thumbnail(source[: len(source) * 2 // 3], 64, LIMIT)


def test_animated_webp_is_turned_upright_by_its_exif_orientation() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # the camera was held upright: rotate 90 degrees clockwise
    frames = gifs.distinct_frames(3, (200, 100))
    source = gifs.animated(frames, "WEBP", [50, 60, 70], lossless=True, exif=exif.tobytes())
    result = make_thumbnail(source, 128, LIMIT)
    decoded = webp_frames(result.data)
    assert (result.width, result.height) == (64, 128)
    assert {frame.size for frame, _ in decoded} == {(64, 128)}
    # Frame 1's white bar stands at x 50..70 of 200 in the stored pixels; turned clockwise
    # it lies across rows 50..70 of 200, rows 32..45 of the 128 px thumbnail.
    frame = decoded[1][0]
    assert close(frame.getpixel((32, 38))[:3], (255, 255, 255), 30)
    assert not close(frame.getpixel((32, 100))[:3], (255, 255, 255), 30)


def test_animated_webp_with_a_profile_is_converted_to_srgb_frame_by_frame() -> None:
    """As the still path: every frame through littlecms with the source's ICC profile, and
    no profile in the output."""
    profile = icc.adobe_rgb()
    orange, green = (200, 60, 40), (40, 180, 60)
    frames = [Image.new("RGB", (96, 96), colour) for colour in (orange, green)]
    source = gifs.animated(frames, "WEBP", [80, 80], lossless=True, icc_profile=profile)
    result = make_thumbnail(source, 64, LIMIT)
    assert "icc_profile" not in Image.open(io.BytesIO(result.data)).info
    for (frame, _), colour in zip(webp_frames(result.data), (orange, green), strict=True):
        transform = ImageCms.buildTransform(
            ImageCms.ImageCmsProfile(io.BytesIO(profile)), SRGB, "RGB", "RGB"
        )
        expected = ImageCms.applyTransform(Image.new("RGB", (1, 1), colour), transform)
        assert expected is not None
        wanted = expected.getpixel((0, 0))
        assert not close(colour, wanted, 6)  # the naive reading would be off
        assert close(frame.getpixel((32, 32))[:3], wanted, 6)
