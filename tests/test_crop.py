"""The entropy crop window: libvips' rule keeps the detailed part of an image in the frame."""

from __future__ import annotations

import random

import pytest
from PIL import Image

from handlers.crop import entropy_window


def detailed_patch(size: tuple[int, int], seed: int = 3) -> Image.Image:
    rng = random.Random(seed)
    patch = Image.new("RGB", size)
    patch.putdata(
        [
            (rng.randrange(256), rng.randrange(256), rng.randrange(256))
            for _ in range(size[0] * size[1])
        ]
    )
    return patch


def scene(
    size: tuple[int, int], patch_box: tuple[int, int, int, int], mode: str = "RGB"
) -> Image.Image:
    """A smooth sky-like gradient with one busy patch (a subject) off centre."""
    image = Image.merge(
        "RGB",
        (
            Image.new("L", size, 90),
            Image.linear_gradient("L").resize(size).point(lambda v: 120 + v // 8),
            Image.new("L", size, 200),
        ),
    )
    left, top, right, bottom = patch_box
    image.paste(detailed_patch((right - left, bottom - top)), (left, top))
    return image.convert(mode) if mode != "RGB" else image


def contains(outer: tuple[int, int, int, int], inner: tuple[int, int, int, int]) -> bool:
    return (
        outer[0] <= inner[0]
        and outer[1] <= inner[1]
        and outer[2] >= inner[2]
        and outer[3] >= inner[3]
    )


@pytest.mark.parametrize(
    ("size", "patch", "aspect"),
    [
        ((1200, 600), (930, 200, 1130, 400), (1, 1)),  # subject far right
        ((1200, 600), (60, 100, 260, 300), (1, 1)),  # far left
        ((600, 1200), (200, 900, 400, 1100), (1, 1)),  # portrait, near the bottom
        ((1600, 900), (1250, 300, 1500, 550), (4, 5)),
        ((3000, 2000), (2300, 700, 2800, 1200), (1, 1)),  # reduced before scoring
    ],
)
def test_cover_crop_keeps_the_detailed_patch(
    size: tuple[int, int], patch: tuple[int, int, int, int], aspect: tuple[int, int]
) -> None:
    image = scene(size, patch)
    box = entropy_window(image, *aspect)
    width, height = box[2] - box[0], box[3] - box[1]
    assert abs(width * aspect[1] - height * aspect[0]) <= max(aspect), box
    assert width == size[0] or height == size[1]
    assert contains(box, patch), (box, patch)
    # A centre crop would have cut the patch: the test tells the rule from doing nothing.
    centre_left, centre_top = (size[0] - width) // 2, (size[1] - height) // 2
    assert not contains((centre_left, centre_top, centre_left + width, centre_top + height), patch)


@pytest.mark.parametrize("mode", ["L", "RGBA", "LA", "P", "1", "CMYK", "I;16", "I", "F"])
def test_every_mode_gives_a_window_inside_the_image(mode: str) -> None:
    patch = (930, 200, 1130, 400)
    image = scene((1200, 600), patch, "RGB")
    image = (
        image.convert("I").point(lambda v: v * 200)
        if mode in ("I;16", "I")
        else image.convert(mode)
    )
    if mode == "I;16":
        image = image.convert("I;16")
    box = entropy_window(image, 1, 1)
    assert box[2] - box[0] == box[3] - box[1] == 600
    assert box[0] >= 0 and box[2] <= 1200
    if mode not in ("1",):  # dithered to two levels, the sky is as busy as the patch
        assert contains(box, patch), (mode, box)


def test_transparent_area_counts_as_empty() -> None:
    """libvips premultiplies alpha: noise under fully transparent pixels is not a subject."""
    image = scene((1200, 600), (830, 200, 1030, 400)).convert("RGBA")
    image.paste(detailed_patch((200, 200), seed=9), (60, 200))
    hidden = Image.new("L", (1200, 600), 255)
    hidden.paste(0, (0, 0, 400, 600))
    image.putalpha(hidden)
    assert contains(entropy_window(image, 1, 1), (830, 200, 1030, 400))


@pytest.mark.parametrize(
    ("size", "aspect", "expected"),
    [
        ((640, 480), (4, 3), (0, 0, 640, 480)),  # same shape: the whole image
        ((640, 480), (128, 96), (0, 0, 640, 480)),
        ((1, 1), (1, 1), (0, 0, 1, 1)),
        ((1, 1), (16, 9), (0, 0, 1, 1)),
    ],
)
def test_same_aspect_is_the_whole_image(
    size: tuple[int, int], aspect: tuple[int, int], expected: tuple[int, int, int, int]
) -> None:
    assert entropy_window(Image.new("RGB", size, (10, 20, 30)), *aspect) == expected


@pytest.mark.parametrize(
    ("size", "aspect"),
    [((1, 500), (1, 1)), ((500, 1), (1, 1)), ((100, 100), (1, 1000)), ((3, 900), (9, 16))],
)
def test_degenerate_sizes_stay_inside_the_image(
    size: tuple[int, int], aspect: tuple[int, int]
) -> None:
    image = detailed_patch(size)
    left, top, right, bottom = entropy_window(image, *aspect)
    assert 0 <= left < right <= size[0] and 0 <= top < bottom <= size[1]
    assert (right - left, bottom - top) != size


def test_flat_image_keeps_the_first_edge_as_libvips_does() -> None:
    """Equal scores cut the far slice (libvips cuts the near one only when it scores lower)."""
    assert entropy_window(Image.new("RGB", (900, 300), (50, 60, 70)), 1, 1) == (0, 0, 300, 300)
    assert entropy_window(Image.new("L", (300, 900), 7), 1, 1) == (0, 0, 300, 300)


@pytest.mark.parametrize("aspect", [(0, 1), (1, 0), (-1, 1)])
def test_bad_aspect_is_refused(aspect: tuple[int, int]) -> None:
    with pytest.raises(ValueError, match="aspect"):
        entropy_window(Image.new("RGB", (10, 10)), *aspect)
