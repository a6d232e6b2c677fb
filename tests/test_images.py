"""The thumbnail pipeline on every image kind it accepts, and on what it must refuse."""

from __future__ import annotations

from typing import Any

import pytest
from PIL import Image
from PIL.JpegImagePlugin import JpegImageFile

from handlers.errors import InvalidBlobError
from handlers.images import MAX_ASPECT, make_thumbnail
from tests.support import images as gen

LIMIT = 150_000_000


def thumb(data: bytes, size: int = 128) -> tuple[Any, Image.Image]:
    result = make_thumbnail(data, size, LIMIT)
    image = gen.open_bytes(result.data)
    assert (image.width, image.height) == (result.width, result.height)
    return result, image


def close(color: tuple[int, ...], expected: tuple[int, ...], tolerance: int = 40) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(color, expected, strict=False))


OPAQUE = [
    ("jpeg rgb", lambda: gen.encode(gen.halves((1200, 800)), "JPEG"), (128, 85), "RGB"),
    ("jpeg grey", lambda: gen.encode(gen.halves((800, 1200), "L"), "JPEG"), (85, 128), "L"),
    ("png rgb", lambda: gen.encode(gen.halves((640, 480)), "PNG"), (128, 96), "RGB"),
    ("png 1-bit", lambda: gen.encode(gen.halves((400, 400), "1"), "PNG"), (128, 128), "L"),
    ("png palette", lambda: gen.palette((500, 250), transparent=False), (128, 64), "RGB"),
    (
        "png rgba fully opaque",
        lambda: gen.encode(gen.halves((300, 300), "RGBA"), "PNG"),
        (128, 128),
        "RGB",
    ),
    ("gif", lambda: gen.gif_two_frames((256, 128)), (128, 64), "RGB"),
    ("webp", lambda: gen.encode(gen.halves((1000, 500)), "WEBP"), (128, 64), "RGB"),
    ("tiff", lambda: gen.encode(gen.halves((300, 600)), "TIFF"), (64, 128), "RGB"),
    ("bmp", lambda: gen.encode(gen.halves((256, 256)), "BMP"), (128, 128), "RGB"),
]


@pytest.mark.parametrize(("kind", "make", "size", "mode"), OPAQUE, ids=[o[0] for o in OPAQUE])
def test_opaque_images_become_jpeg(kind: str, make: Any, size: tuple[int, int], mode: str) -> None:
    result, image = thumb(make())
    assert result.content_type == "image/jpeg"
    assert image.format == "JPEG"
    assert image.size == size
    assert image.mode == mode


def test_colours_survive() -> None:
    _, image = thumb(gen.encode(gen.halves((1200, 800)), "JPEG"))
    assert close(image.getpixel((5, 40)), gen.RED)
    assert close(image.getpixel((122, 40)), gen.BLUE)


def test_gif_uses_the_first_frame() -> None:
    _, image = thumb(gen.gif_two_frames((256, 128)))
    assert close(image.getpixel((64, 32)), gen.RED)


def test_cmyk_jpeg_is_converted_to_rgb() -> None:
    result, image = thumb(gen.cmyk_jpeg((400, 300)))
    assert (result.source_format, image.mode, image.size) == ("JPEG", "RGB", (128, 96))
    red, green, blue = image.getpixel((64, 48))
    assert green > 150 and red < 100 and blue < 100  # cyan + yellow ink is green


def test_sixteen_bit_grey_is_scaled_not_clipped() -> None:
    result, image = thumb(gen.grey16((600, 300), level=32768))
    assert result.content_type == "image/jpeg"
    assert image.mode == "L" and image.size == (128, 64)
    assert 120 <= image.getpixel((64, 32)) <= 136  # half of full scale, not white


TRANSPARENT = [
    ("png rgba", lambda: gen.encode(gen.transparent_rgba((400, 200)), "PNG"), "RGBA"),
    ("png palette with transparency", lambda: gen.palette((400, 200), transparent=True), "RGBA"),
    (
        "png grey with alpha",
        lambda: gen.encode(gen.transparent_rgba((400, 200)).convert("LA"), "PNG"),
        "LA",
    ),
    (
        "webp rgba",
        lambda: gen.encode(gen.transparent_rgba((400, 200)), "WEBP", lossless=True),
        "RGBA",
    ),
]


@pytest.mark.parametrize(("kind", "make", "mode"), TRANSPARENT, ids=[t[0] for t in TRANSPARENT])
def test_transparent_images_become_png_with_alpha(kind: str, make: Any, mode: str) -> None:
    result, image = thumb(make())
    assert result.content_type == "image/png"
    assert image.format == "PNG"
    assert image.mode == mode
    assert image.size == (128, 64)
    alpha = image.getchannel("A")
    assert alpha.getpixel((5, 32)) < 30  # the transparent half stays transparent
    assert alpha.getpixel((122, 32)) > 220


@pytest.mark.parametrize(
    ("orientation", "size", "top", "bottom"),
    [
        (1, (128, 85), gen.RED, gen.RED),  # left red: top-left and bottom-left red
        (6, (85, 128), gen.RED, gen.BLUE),  # rotate 90 cw: left half becomes the top
        (8, (85, 128), gen.BLUE, gen.RED),  # rotate 90 ccw: left half becomes the bottom
        (3, (128, 85), gen.BLUE, gen.BLUE),  # rotate 180: left half goes right
    ],
)
def test_exif_orientation_is_applied(
    orientation: int, size: tuple[int, int], top: tuple[int, int, int], bottom: tuple[int, int, int]
) -> None:
    _, image = thumb(gen.with_orientation(gen.halves((1200, 800)), orientation))
    assert image.size == size
    assert close(image.getpixel((5, 5)), top)
    assert close(image.getpixel((5, image.height - 6)), bottom)


def test_never_upscales_and_keeps_aspect() -> None:
    _, image = thumb(gen.encode(gen.halves((40, 20)), "PNG"))
    assert image.size == (40, 20)
    _, tall = thumb(gen.encode(gen.halves((300, 3000)), "PNG"))
    assert tall.size == (13, 128)
    _, square = thumb(gen.encode(gen.halves((1000, 1000)), "JPEG"), size=64)
    assert square.size == (64, 64)


def test_jpeg_is_decoded_in_draft_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    """The JPEG decoder must scale down while decoding (load/convert before thumbnail breaks it)."""
    sizes: list[tuple[int, int]] = []
    original = JpegImageFile.draft

    def spy(self: JpegImageFile, mode: Any, size: Any) -> Any:
        result = original(self, mode, size)
        sizes.append(self.size)
        return result

    monkeypatch.setattr(JpegImageFile, "draft", spy)
    make_thumbnail(gen.encode(gen.halves((4000, 3000)), "JPEG"), 128, LIMIT)
    assert sizes, "draft() was never called"
    assert max(sizes[-1]) <= 4000 // 8, f"decoded at {sizes[-1]}, not at 1/8 scale"


def test_icc_profile_is_kept_for_rgb() -> None:
    profile = b"fake-icc-profile-bytes"
    data = gen.encode(gen.halves((300, 200)), "JPEG", icc_profile=profile)
    _, image = thumb(data)
    assert image.info.get("icc_profile") == profile


def truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


REFUSED = [
    ("zero bytes", lambda: b"", "empty (0 bytes)"),
    ("text named jpg", lambda: b"hello, this is not an image\n" * 10, "not an image"),
    ("html", lambda: b"<!doctype html><html><body>hi</body></html>", "not an image"),
    (
        "svg",
        lambda: b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"></svg>',
        "not an image",
    ),
    (
        "heic",
        lambda: b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 64,
        "not an image",
    ),
    ("pdf", lambda: b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n" + b"0" * 100, "not an image"),
    ("truncated jpeg", lambda: truncated(gen.encode(gen.halves((800, 600)), "JPEG")), "truncated"),
    ("truncated png", lambda: truncated(gen.encode(gen.halves((800, 600)), "PNG")), "truncated"),
    ("truncated gif", lambda: truncated(gen.gif_two_frames((300, 300))), "truncated"),
    ("truncated webp", lambda: truncated(gen.encode(gen.halves((800, 600)), "WEBP")), "corrupt"),
    ("truncated tiff", lambda: truncated(gen.encode(gen.halves((800, 600)), "TIFF")), "truncated"),
    ("truncated bmp", lambda: truncated(gen.encode(gen.halves((800, 600)), "BMP")), "truncated"),
    ("jpeg header only", lambda: gen.encode(gen.halves((800, 600)), "JPEG")[:200], "corrupt"),
    ("strip 1x50000", lambda: gen.encode(Image.new("L", (1, 50000)), "PNG"), "longer than"),
]


@pytest.mark.parametrize(("kind", "make", "message"), REFUSED, ids=[r[0] for r in REFUSED])
def test_bad_images_are_permanent_errors(kind: str, make: Any, message: str) -> None:
    with pytest.raises(InvalidBlobError) as caught:
        make_thumbnail(make(), 128, LIMIT)
    assert message in str(caught.value)


def test_pixel_limit_refuses_before_decoding() -> None:
    data = gen.encode(Image.new("RGB", (3000, 2000)), "PNG")
    with pytest.raises(InvalidBlobError, match="6000000 pixels, over THUMBNAIL_MAX_PIXELS"):
        make_thumbnail(data, 128, 5_000_000)
    assert make_thumbnail(data, 128, 6_000_000).width == 128


def test_decompression_bomb_is_refused() -> None:
    """A tiny PNG that declares 40000x40000 pixels: refused from its header alone."""
    bomb = gen.encode(Image.new("1", (40000, 40000)), "PNG")
    assert len(bomb) < 300_000
    with pytest.raises(InvalidBlobError, match="decompression bomb"):
        make_thumbnail(bomb, 128, LIMIT)


def test_aspect_limit_is_what_it_says() -> None:
    ok = gen.encode(Image.new("L", (MAX_ASPECT * 10, 10)), "PNG")
    assert make_thumbnail(ok, 128, LIMIT).width == 128
    too_long = gen.encode(Image.new("L", (MAX_ASPECT * 10 + 1, 10)), "PNG")
    with pytest.raises(InvalidBlobError):
        make_thumbnail(too_long, 128, LIMIT)
