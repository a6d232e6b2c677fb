"""The BlurHash encoder against the algorithm's reference Python implementation (dev-only)."""

from __future__ import annotations

import random
import string

import blurhash as reference  # the pure-Python port of the published algorithm
import pytest
from PIL import Image, ImageFilter

from handlers.blurhash import encode
from tests.support import images as gen

ALPHABET = set(string.digits + string.ascii_letters + "#$%*+,-.:;=?@[]^_{|}~")


def photo_like(size: tuple[int, int] = (128, 96), seed: int = 7) -> Image.Image:
    """Smooth regions and some texture: colour gradients under blurred noise."""
    rng = random.Random(seed)
    noise = Image.new("L", size)
    noise.putdata([rng.randrange(256) for _ in range(size[0] * size[1])])
    noise = noise.filter(ImageFilter.GaussianBlur(3))
    red = Image.linear_gradient("L").resize(size)
    green = Image.radial_gradient("L").resize(size)
    return Image.merge("RGB", (red, green, noise))


def decoded(hash_: str, size: tuple[int, int]) -> Image.Image:
    rows = reference.decode(hash_, size[0], size[1])
    image = Image.new("RGB", size)
    image.putdata([tuple(round(value) for value in pixel[:3]) for row in rows for pixel in row])
    return image


def mean_colour(image: Image.Image, box: tuple[int, int, int, int]) -> tuple[float, ...]:
    """The region's mean in linear light (what a blur averages), as sRGB levels."""
    region = image.crop(box)
    means = []
    for band in region.split():
        values = [
            ((v / 255 + 0.055) / 1.055) ** 2.4 if v > 10 else v / 255 / 12.92
            for v in band.get_flattened_data()
        ]
        linear = sum(values) / len(values)
        srgb = 12.92 * linear if linear <= 0.0031308 else 1.055 * linear ** (1 / 2.4) - 0.055
        means.append(255 * srgb)
    return tuple(means)


@pytest.mark.parametrize(("x", "y"), [(4, 3), (1, 1), (9, 9), (3, 5)])
def test_same_hash_as_the_reference_encoder(x: int, y: int) -> None:
    image = photo_like()
    pixels = [
        [list(image.getpixel((i, j))) for i in range(image.width)] for j in range(image.height)
    ]
    assert encode(image, x, y) == reference.encode(pixels, x, y)


@pytest.mark.parametrize(("x", "y"), [(4, 3), (1, 1), (9, 9), (2, 7)])
def test_length_and_alphabet(x: int, y: int) -> None:
    hash_ = encode(photo_like((64, 64), seed=x * 10 + y), x, y)
    assert len(hash_) == 4 + 2 * x * y
    assert set(hash_) <= ALPHABET
    assert reference.components(hash_) == (x, y)


@pytest.mark.parametrize(("x", "y"), [(0, 3), (4, 0), (10, 3), (4, 10), (-1, -1)])
def test_component_counts_outside_one_to_nine_are_refused(x: int, y: int) -> None:
    with pytest.raises(ValueError, match=r"1\.\.9"):
        encode(photo_like((32, 32)), x, y)


def test_decodes_to_the_thumbnails_colours() -> None:
    """Left half red, right half blue: the decoded blur keeps the average and which side is
    which, within what 4x3 cosines can draw of a sharp edge."""
    image = gen.halves((128, 96))
    blur = decoded(encode(image), image.size)
    overall = mean_colour(image, (0, 0, 128, 96))
    assert all(
        abs(a - b) <= 6 for a, b in zip(mean_colour(blur, (0, 0, 128, 96)), overall, strict=True)
    )
    for box in ((0, 0, 40, 96), (88, 0, 128, 96)):  # away from the edge the blur has to soften
        want, got = mean_colour(image, box), mean_colour(blur, box)
        assert all(abs(a - b) <= 30 for a, b in zip(got, want, strict=True)), (box, got, want)


def test_decodes_a_photo_like_image_within_a_tolerance_per_region() -> None:
    image = photo_like()
    blur = decoded(encode(image), image.size)
    for left in range(0, 128, 32):
        for top in range(0, 96, 32):
            box = (left, top, left + 32, top + 32)
            want, got = mean_colour(image, box), mean_colour(blur, box)
            assert all(abs(a - b) <= 20 for a, b in zip(got, want, strict=True)), (box, got, want)


@pytest.mark.parametrize("mode", ["RGBA", "L", "P", "CMYK"])
def test_any_mode_is_accepted_and_left_as_it_was(mode: str) -> None:
    image = photo_like((48, 32)).convert(mode)
    before = image.tobytes()
    hash_ = encode(image)
    assert len(hash_) == 28
    assert image.tobytes() == before and image.mode == mode


def test_single_pixel_gives_its_colour() -> None:
    hash_ = encode(Image.new("RGB", (1, 1), (200, 100, 50)), 1, 1)
    assert decoded(hash_, (1, 1)).getpixel((0, 0)) == (200, 100, 50)
