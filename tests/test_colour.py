"""sRGB out, always: embedded ICC profiles are applied with littlecms, then dropped.

Every expected colour is what ImageCms itself makes of the source colour with the same
profile; each test also shows the naive reading is far from it, so it could not pass by
leaving the values alone.
"""

from __future__ import annotations

import io
from typing import Any

import pytest
from PIL import Image, ImageCms

from handlers import colour
from handlers.images import make_thumbnail
from tests.support import images as gen
from tools import icc

LIMIT = 150_000_000
SRGB = ImageCms.createProfile("sRGB")
# A flat colour survives JPEG q85 within a level or two; "a few levels" leaves room for it.
FEW = 4


def profile_says(profile: bytes, mode: str, value: Any) -> tuple[int, ...]:
    """The sRGB colour littlecms makes of one ``mode`` pixel with ``profile``."""
    transform = ImageCms.buildTransform(
        ImageCms.ImageCmsProfile(io.BytesIO(profile)), SRGB, mode, "RGB"
    )
    converted = ImageCms.applyTransform(Image.new(mode, (1, 1), value), transform)
    assert converted is not None
    return tuple(converted.getpixel((0, 0)))  # type: ignore[arg-type]


def within(actual: Any, expected: Any, levels: int = FEW) -> bool:
    actual = actual if isinstance(actual, tuple) else (actual,)
    expected = expected if isinstance(expected, tuple) else (expected,)
    return all(abs(a - b) <= levels for a, b in zip(actual, expected, strict=True))


def thumbnail(data: bytes, output: str = "auto") -> tuple[Any, Image.Image]:
    result = make_thumbnail(data, 128, LIMIT, output)
    return result, gen.open_bytes(result.data)


ADOBE_ORANGE = (200, 60, 40)


@pytest.mark.parametrize("output", ["auto", "webp", "jpeg", "png"])
def test_adobe_rgb_jpeg_is_converted_and_its_profile_dropped(output: str) -> None:
    profile = icc.adobe_rgb()
    source = gen.encode(Image.new("RGB", (1200, 800), ADOBE_ORANGE), "JPEG", icc_profile=profile)
    expected = profile_says(profile, "RGB", ADOBE_ORANGE)
    assert not within(expected, ADOBE_ORANGE, 20)  # Adobe's orange is not sRGB's
    result, image = thumbnail(source, output)
    assert result.note is None
    assert within(image.getpixel((64, 40))[:3], expected)
    assert "icc_profile" not in image.info


def test_adobe_rgb_png_with_alpha_keeps_its_alpha() -> None:
    profile = icc.adobe_rgb()
    source = Image.new("RGBA", (400, 200), (*ADOBE_ORANGE, 255))
    source.paste((0, 0, 0, 0), (0, 0, 200, 200))
    result, image = thumbnail(gen.encode(source, "PNG", icc_profile=profile))
    assert (result.content_type, image.mode) == ("image/png", "RGBA")
    assert image.getchannel("A").getpixel((5, 32)) == 0
    assert within(image.getpixel((122, 32))[:3], profile_says(profile, "RGB", ADOBE_ORANGE))
    assert "icc_profile" not in image.info


@pytest.mark.parametrize("fmt", ["HEIF", "AVIF"])
def test_display_p3_phone_photo_is_converted(fmt: str) -> None:
    """iPhone HEICs carry Display P3; a P3 green is beyond sRGB and must be mapped into it."""
    profile = icc.display_p3()
    green = (60, 200, 60)
    source = gen.encode(Image.new("RGB", (800, 600), green), fmt, icc_profile=profile, quality=95)
    decoded = gen.open_bytes(source).getpixel((400, 300))  # the colour after lossy coding
    expected = profile_says(profile, "RGB", decoded)
    assert not within(expected, green, 20)
    _, image = thumbnail(source)
    assert within(image.getpixel((64, 48)), expected)
    assert "icc_profile" not in image.info


PRINT_RED = (0, 199, 199, 0)  # C0 M78 Y78 K0, in 8-bit ink amounts
NAIVE_PRINT_RED = (255, 56, 56)  # 255 - (ink + black), Pillow's CMYK -> RGB


def test_cmyk_with_a_print_profile_follows_the_profile() -> None:
    profile = icc.cmyk_print()
    source = gen.encode(Image.new("CMYK", (400, 300), PRINT_RED), "JPEG", icc_profile=profile)
    expected = profile_says(profile, "CMYK", PRINT_RED)
    assert not within(expected, NAIVE_PRINT_RED, 20)
    result, image = thumbnail(source)
    assert (result.content_type, image.mode) == ("image/jpeg", "RGB")
    assert within(image.getpixel((64, 48)), expected)
    assert "icc_profile" not in image.info


def test_cmyk_without_a_profile_keeps_the_plain_conversion() -> None:
    source = gen.encode(Image.new("CMYK", (400, 300), PRINT_RED), "JPEG")
    _, image = thumbnail(source)
    assert within(image.getpixel((64, 48)), NAIVE_PRINT_RED)


def test_grey_image_with_a_grey_profile_stays_grey() -> None:
    """A linear-light grey profile (gamma 1.0): level 64 is a mid grey, about 137 in sRGB."""
    profile = icc.grey_gamma(1.0)
    source = gen.encode(Image.new("L", (400, 300), 64), "PNG", icc_profile=profile)
    expected = profile_says(profile, "L", 64)
    assert expected[0] == expected[1] == expected[2]
    assert not within(expected[0], 64, 40)
    result, image = thumbnail(source)
    assert (result.content_type, image.mode) == ("image/jpeg", "L")
    assert within(image.getpixel((64, 48)), expected[0])
    assert "icc_profile" not in image.info


def test_grey_profile_on_sixteen_bit_grey_applies_after_scaling() -> None:
    profile = icc.grey_gamma(1.0)
    source = gen.encode(Image.new("I;16", (300, 300), 64 * 257), "PNG", icc_profile=profile)
    _, image = thumbnail(source)
    assert within(image.getpixel((64, 64)), profile_says(profile, "L", 64)[0])


@pytest.mark.parametrize(
    ("kind", "profile", "reason"),
    [
        ("not a profile", b"fake-icc-profile-bytes", "corrupt, 22 bytes"),
        ("cut short", icc.adobe_rgb()[:200], "corrupt, 200 bytes"),
        ("grey profile on colour", icc.grey_gamma(), "it describes GRAY colours, the image is RGB"),
        ("cmyk profile on colour", icc.cmyk_print(), "it describes CMYK colours"),
    ],
)
def test_unusable_profile_is_reported_once_and_ignored(
    kind: str, profile: bytes, reason: str
) -> None:
    """Not a failure: the thumbnail is what the same pixels without a profile give."""
    pixels = Image.new("RGB", (600, 400), ADOBE_ORANGE)
    result, image = thumbnail(gen.encode(pixels, "JPEG", icc_profile=profile))
    plain = make_thumbnail(gen.encode(pixels, "JPEG"), 128, LIMIT)
    assert result.note is not None
    assert result.note.startswith("ICC profile ignored (") and reason in result.note
    assert result.data == plain.data
    assert "icc_profile" not in image.info


def test_srgb_profile_costs_nothing_and_changes_nothing() -> None:
    """An sRGB-tagged photo gives the very bytes of the untagged one (no transform applied)."""
    profile = ImageCms.ImageCmsProfile(SRGB).tobytes()
    pixels = gen.halves((1200, 800))
    tagged = make_thumbnail(gen.encode(pixels, "JPEG", icc_profile=profile), 128, LIMIT)
    plain = make_thumbnail(gen.encode(pixels, "JPEG"), 128, LIMIT)
    assert tagged.note is None
    assert tagged.data == plain.data


def test_a_profile_is_parsed_once_per_process() -> None:
    """The transform is built on the first photo with a profile and reused after."""
    profile = icc.adobe_rgb()
    source = gen.encode(Image.new("RGB", (300, 200), ADOBE_ORANGE), "JPEG", icc_profile=profile)
    make_thumbnail(source, 128, LIMIT)
    before = colour._conversion.cache_info()
    for _ in range(3):
        make_thumbnail(source, 128, LIMIT)
    after = colour._conversion.cache_info()
    assert after.hits - before.hits == 3
    assert after.misses == before.misses
