"""The thumbnail pipeline on every image kind it accepts, and on what it must refuse."""

from __future__ import annotations

import random
from typing import Any

import pytest
from PIL import ExifTags, Image
from PIL.JpegImagePlugin import JpegImageFile
from pillow_heif.as_plugin import HeifImageFile

from handlers.errors import InvalidBlobError
from handlers.images import make_thumbnail
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
    # A still GIF; an animated one becomes an animated WebP (tests/test_animation.py).
    ("gif", lambda: gen.encode(gen.halves((256, 128)).convert("P"), "GIF"), (128, 64), "RGB"),
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


@pytest.mark.parametrize(
    ("output", "max_frames", "fmt"),
    [("jpeg", 100, "JPEG"), ("png", 100, "PNG"), ("auto", 1, "JPEG")],
)
def test_animated_gif_gives_its_first_frame_as_a_still(
    output: str, max_frames: int, fmt: str
) -> None:
    """A still format asked for, or THUMBNAIL_MAX_FRAMES 1: the first frame, as before."""
    result = make_thumbnail(
        gen.gif_two_frames((256, 128)), 128, LIMIT, output, max_frames=max_frames
    )
    image = gen.open_bytes(result.data)
    assert (image.format, image.size, getattr(image, "n_frames", 1)) == (fmt, (128, 64), 1)
    assert close(image.convert("RGB").getpixel((64, 32)), gen.RED)


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
        "heic header only",
        lambda: b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 64,
        "corrupt HEIF image: its header cannot be read",
    ),
    ("pdf", lambda: b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n" + b"0" * 100, "not an image"),
    ("truncated jpeg", lambda: truncated(gen.encode(gen.halves((800, 600)), "JPEG")), "truncated"),
    ("truncated png", lambda: truncated(gen.encode(gen.halves((800, 600)), "PNG")), "truncated"),
    ("truncated gif", lambda: truncated(gen.gif_two_frames((300, 300))), "truncated"),
    ("truncated webp", lambda: truncated(gen.encode(gen.halves((800, 600)), "WEBP")), "corrupt"),
    ("truncated tiff", lambda: truncated(gen.encode(gen.halves((800, 600)), "TIFF")), "truncated"),
    ("truncated bmp", lambda: truncated(gen.encode(gen.halves((800, 600)), "BMP")), "truncated"),
    ("jpeg header only", lambda: gen.encode(gen.halves((800, 600)), "JPEG")[:200], "corrupt"),
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


@pytest.mark.parametrize(
    ("size", "expected"),
    [((4000, 30), (128, 1)), ((1, 5000), (1, 128)), ((1, 50000), (1, 128)), ((3000, 2), (128, 1))],
)
@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_any_aspect_ratio_keeps_at_least_one_pixel(
    size: tuple[int, int], expected: tuple[int, int], fmt: str
) -> None:
    """Banners and strips: no ratio is refused, and the short side never rounds to zero."""
    source = Image.new("RGB", size, gen.RED)
    _, image = thumb(gen.encode(source, fmt))
    assert image.size == expected
    assert close(image.getpixel((0, 0)), gen.RED)


# ---- HEIC/HEIF and AVIF ----------------------------------------------------------------


def oriented(
    fmt: str, orientation: int, size: tuple[int, int] = (1200, 800), **options: Any
) -> bytes:
    """``halves`` saved as HEIF or AVIF with an EXIF orientation, which both encoders turn
    into the file's irot/imir boxes."""
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = orientation
    return gen.encode(gen.halves(size), fmt, exif=exif.tobytes(), **options)


@pytest.mark.parametrize("fmt", ["HEIF", "AVIF"])
@pytest.mark.parametrize(
    ("orientation", "size", "top", "bottom"),
    [
        (1, (128, 85), gen.RED, gen.RED),
        (6, (85, 128), gen.RED, gen.BLUE),  # rotate 90 cw: left half becomes the top
        (8, (85, 128), gen.BLUE, gen.RED),  # rotate 90 ccw: left half becomes the bottom
        (3, (128, 85), gen.BLUE, gen.BLUE),  # rotate 180: left half goes right
        (2, (128, 85), gen.BLUE, gen.BLUE),  # mirrored: left half goes right (imir)
    ],
)
def test_heif_and_avif_are_upright_exactly_once(
    fmt: str,
    orientation: int,
    size: tuple[int, int],
    top: tuple[int, int, int],
    bottom: tuple[int, int, int],
) -> None:
    data = oriented(fmt, orientation)
    result, image = thumb(data)
    assert result.source_format == fmt
    assert result.content_type == "image/jpeg"
    assert image.size == size
    assert close(image.getpixel((5, 5)), top)
    assert close(image.getpixel((5, image.height - 6)), bottom)


def test_heic_keeps_exif_orientation_beside_irot_and_is_not_rotated_twice() -> None:
    """pillow-heif writes both (as iPhones do): irot in the file and the EXIF tag. libheif
    applies irot while decoding; applying the EXIF tag as well would turn the photo twice."""
    data = oriented("HEIF", 6)
    assert b"irot" in data
    exif = Image.Exif()
    start = data.find(b"MM\x00*") if b"MM\x00*" in data else data.find(b"II*\x00")
    exif.load(data[start : start + 512])
    assert exif.get(ExifTags.Base.Orientation) == 6  # the trap is really in the fixture
    _, image = thumb(data)
    assert image.size == (85, 128)
    assert close(image.getpixel((5, 5)), gen.RED)


def test_heic_exif_orientation_without_irot_is_not_applied() -> None:
    """In HEIF the transformative properties (irot/imir) orient the image; libheif and
    pillow-heif leave a lone EXIF tag aside, and so does the handler. The fixture is the
    orientation-6 HEIC with its irot box renamed to "free" (a box every reader skips)."""
    data = bytearray(oriented("HEIF", 6))
    at = data.index(b"irot")
    data[at : at + 4] = b"free"
    _, image = thumb(bytes(data))
    assert image.size == (128, 85)
    assert close(image.getpixel((5, 5)), gen.RED)
    assert close(image.getpixel((122, 5)), gen.BLUE)


def test_heic_decodes_its_embedded_thumbnail_when_big_enough(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A 320 px embedded thumbnail serves a 128 px one (Pillow asks for at least twice the
    target); for 256 px it is too small, and the full image is decoded."""
    chosen: list[Any] = []
    original = HeifImageFile.draft

    def spy(self: HeifImageFile, mode: Any, size: Any) -> Any:
        result = original(self, mode, size)
        chosen.append(result)
        return result

    monkeypatch.setattr(HeifImageFile, "draft", spy)
    data = gen.encode(gen.halves((2400, 1600)), "HEIF", thumbnails=[320])
    _, image = thumb(data)
    used = [result for result in chosen if result is not None]
    assert used, "the embedded thumbnail was not used"
    assert used[0][1][2:] == (320, 212)
    assert image.size == (128, 85)
    assert close(image.getpixel((5, 40)), gen.RED)
    chosen.clear()
    _, larger = thumb(data, size=256)
    assert chosen and not any(chosen)  # decoded in full
    assert larger.size == (256, 171)


def undecodable(fmt: str) -> bytes:
    """1000x600 with intact headers but coded data that cannot be decoded: a HEIC cut short
    (libheif reads its header, then fails on the missing data), an AVIF with garbled AV1."""
    rng = random.Random(7)
    noisy = Image.frombytes("RGB", (1000, 600), rng.randbytes(1000 * 600 * 3))
    data = bytearray(gen.encode(noisy, fmt, quality=50))
    if fmt == "HEIF":
        return bytes(data[: len(data) * 3 // 4])
    start = data.index(b"mdat") + 4
    data[start + 16 : start + 400] = b"\x5a" * 384
    return bytes(data)


@pytest.mark.parametrize("fmt", ["HEIF", "AVIF"])
def test_heif_and_avif_pixel_limit_is_checked_before_decoding(fmt: str) -> None:
    """Only a check made before decoding can answer before the decoder fails."""
    data = undecodable(fmt)
    with pytest.raises(InvalidBlobError, match="600000 pixels, over THUMBNAIL_MAX_PIXELS"):
        make_thumbnail(data, 128, 599_999)
    with pytest.raises(InvalidBlobError, match=f"corrupt or truncated {fmt} image"):
        make_thumbnail(data, 128, 600_000)


@pytest.mark.parametrize("fmt", ["HEIF", "AVIF"])
def test_heif_and_avif_with_alpha_stay_transparent(fmt: str) -> None:
    result, image = thumb(gen.encode(gen.transparent_rgba((400, 200)), fmt, quality=90))
    assert result.content_type == "image/png"
    assert image.mode == "RGBA"
    assert image.getchannel("A").getpixel((5, 32)) < 30
    assert image.getchannel("A").getpixel((122, 32)) > 220


# ---- THUMBNAIL_FORMAT -------------------------------------------------------------------

OUTPUTS = [
    # (setting, source is transparent, Pillow format, content type, mode)
    ("auto", False, "JPEG", "image/jpeg", "RGB"),
    ("auto", True, "PNG", "image/png", "RGBA"),
    ("webp", False, "WEBP", "image/webp", "RGB"),
    ("webp", True, "WEBP", "image/webp", "RGBA"),
    ("jpeg", False, "JPEG", "image/jpeg", "RGB"),
    ("jpeg", True, "JPEG", "image/jpeg", "RGB"),
    ("png", False, "PNG", "image/png", "RGB"),
    ("png", True, "PNG", "image/png", "RGBA"),
]


@pytest.mark.parametrize(
    ("output", "transparent", "fmt", "content_type", "mode"),
    OUTPUTS,
    ids=[f"{o[0]}-{'transparent' if o[1] else 'opaque'}" for o in OUTPUTS],
)
def test_each_thumbnail_format_and_its_content_type(
    output: str, transparent: bool, fmt: str, content_type: str, mode: str
) -> None:
    source = gen.transparent_rgba((400, 200)) if transparent else gen.halves((400, 200))
    result = make_thumbnail(gen.encode(source, "PNG"), 128, LIMIT, output)
    image = gen.open_bytes(result.data)
    assert (image.format, result.content_type, image.mode) == (fmt, content_type, mode)
    assert Image.MIME[fmt] == content_type  # the Content-Type names what the bytes are
    assert image.size == (128, 64)
    right = image.getpixel((122, 32))
    assert close(right[:3], gen.RED if transparent else gen.BLUE)
    left = image.getpixel((5, 32))
    if not transparent:
        assert close(left[:3], gen.RED)
    elif mode == "RGBA":
        assert left[3] < 30  # alpha kept
    else:
        assert close(left, (255, 255, 255), 10)  # JPEG: transparency flattened on white


def test_webp_output_is_lossy() -> None:
    """Lossy WebP: a noisy photo costs far less than PNG would, and is not bit-exact."""
    rng = random.Random(5)
    noisy = Image.frombytes("RGB", (256, 256), rng.randbytes(256 * 256 * 3))
    webp = make_thumbnail(gen.encode(noisy, "PNG"), 128, LIMIT, "webp")
    png = make_thumbnail(gen.encode(noisy, "PNG"), 128, LIMIT, "png")
    assert len(webp.data) < len(png.data) / 2


def test_unknown_output_format_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="output must be one of"):
        make_thumbnail(gen.encode(gen.halves((64, 64)), "PNG"), 128, LIMIT, "gif")
