"""Make a thumbnail from image bytes: pure CPU work, no storage.

Pillow's ``thumbnail()`` runs before any ``load()`` or ``convert()`` on JPEG so that its
draft mode can decode at 1/2..1/8 scale; that is what keeps a 24-megapixel JPEG cheap.
"""

from __future__ import annotations

import io
import logging
import struct
import warnings
import zlib
from dataclasses import dataclass

from PIL import ExifTags, Image, UnidentifiedImageError

from handlers.errors import InvalidBlobError

logger = logging.getLogger(__name__)

# Pillow plugins we accept; anything else (SVG, HEIC, PSD, ...) is refused as unsupported.
# JPEG also opens multi-picture (MPO) camera files.
FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "TIFF", "BMP")
# A strip longer than this many times its width gives a thumbnail a pixel or two wide.
MAX_ASPECT = 100
JPEG_QUALITY = 85

_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
# How each accepted format's files start, to tell a corrupt image from something else.
_SIGNATURES = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"BM", "BMP"),
)
# Errors Pillow raises on corrupt or truncated data.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error, zlib.error)


@dataclass(frozen=True)
class Thumbnail:
    data: bytes
    content_type: str  # image/jpeg or image/png
    width: int
    height: int
    source_format: str
    source_size: tuple[int, int]


def make_thumbnail(data: bytes, size: int, max_pixels: int) -> Thumbnail:
    """Return a thumbnail whose longest side is at most ``size``; never upscales.

    Raises InvalidBlobError for empty, unsupported, corrupt or oversized images.
    """
    if not data:
        raise InvalidBlobError("the blob is empty (0 bytes)")
    image = _open(data, max_pixels)
    with image:
        source_format = str(image.format)
        source_size = image.size
        try:
            orientation = _orientation(image)
            icc_profile = (
                image.info.get("icc_profile") if image.mode in ("RGB", "RGBA", "L") else None
            )
            working = _before_resize(image)
            working.thumbnail((size, size))
            working = _after_resize(working)
            if orientation in _TRANSPOSE:
                working = working.transpose(_TRANSPOSE[orientation])
            output = io.BytesIO()
            if working.mode in ("RGBA", "LA"):
                content_type = "image/png"
                working.save(output, "PNG", icc_profile=icc_profile)
            else:
                content_type = "image/jpeg"
                working.save(output, "JPEG", quality=JPEG_QUALITY, icc_profile=icc_profile)
        except Image.DecompressionBombError as exc:
            raise InvalidBlobError(f"refused as a decompression bomb: {exc}") from None
        except _DECODE_ERRORS as exc:
            raise InvalidBlobError(
                f"corrupt or truncated {source_format} image "
                f"({source_size[0]}x{source_size[1]}): {exc}"
            ) from None
    return Thumbnail(
        data=output.getvalue(),
        content_type=content_type,
        width=working.width,
        height=working.height,
        source_format=source_format,
        source_size=source_size,
    )


def _open(data: bytes, max_pixels: int) -> Image.Image:
    try:
        with warnings.catch_warnings():
            # Our own limit below replaces Pillow's global warning threshold.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=FORMATS)
    except UnidentifiedImageError:
        claimed = next((name for magic, name in _SIGNATURES if data.startswith(magic)), None)
        if claimed is not None:
            raise InvalidBlobError(
                f"corrupt {claimed} image: its header cannot be read; starts with {data[:12]!r}"
            ) from None
        raise InvalidBlobError(
            f"not an image in a supported format ({', '.join(FORMATS)}); starts with {data[:12]!r}"
        ) from None
    except Image.DecompressionBombError as exc:
        raise InvalidBlobError(f"refused as a decompression bomb: {exc}") from None
    except _DECODE_ERRORS as exc:
        raise InvalidBlobError(f"corrupt image header: {exc}") from None
    width, height = image.size
    try:
        if width < 1 or height < 1:
            raise InvalidBlobError(f"image has no pixels ({width}x{height})")
        if width * height > max_pixels:
            raise InvalidBlobError(
                f"{width}x{height} is {width * height} pixels, over THUMBNAIL_MAX_PIXELS "
                f"({max_pixels}); refused as a possible decompression bomb"
            )
        if max(width, height) > MAX_ASPECT * min(width, height):
            raise InvalidBlobError(
                f"{width}x{height} is more than {MAX_ASPECT} times longer than it is wide"
            )
    except InvalidBlobError:
        image.close()
        raise
    return image


def _orientation(image: Image.Image) -> int:
    if image.format not in ("JPEG", "MPO", "TIFF", "WEBP", "PNG"):
        return 1
    value = image.getexif().get(ExifTags.Base.Orientation, 1)
    return value if isinstance(value, int) else 1


def _before_resize(image: Image.Image) -> Image.Image:
    """Convert the modes that resize badly; leave JPEG modes alone to keep draft decoding."""
    mode = image.mode
    if mode == "1":
        return image.convert("L")
    if mode == "P":
        return image.convert("RGBA" if "transparency" in image.info else "RGB")
    if mode == "PA":
        return image.convert("RGBA")
    if mode.startswith("I") or mode == "F":
        return _to_eight_bit(image)
    if mode in {"LA", "La"}:
        return image.convert("LA")
    if mode == "RGBa":
        return image.convert("RGBA")
    if mode == "L" and "transparency" in image.info:
        return image.convert("LA")
    if mode == "RGB" and "transparency" in image.info:
        return image.convert("RGBA")
    return image


def _to_eight_bit(image: Image.Image) -> Image.Image:
    """Scale 16- and 32-bit greyscale into 0..255 instead of clipping everything to white."""
    as_int = image.convert("I") if image.mode != "F" else image
    if image.mode.startswith("I;16"):
        top = 65535.0
    else:
        low, high = as_int.getextrema()
        top = max(float(high), 1.0)  # type: ignore[arg-type]
        if low < 0 or top <= 255:  # type: ignore[operator]
            top = max(top, 255.0)
    return as_int.point(lambda value: value * (255.0 / top)).convert("L")


def _after_resize(image: Image.Image) -> Image.Image:
    """Bring the result to RGB/L (JPEG) or RGBA/LA (PNG, when anything is transparent)."""
    mode = image.mode
    if mode in ("RGBA", "LA"):
        alpha_low, _ = image.getchannel("A").getextrema()
        if alpha_low == 255:  # an alpha channel with nothing transparent
            return image.convert("RGB" if mode == "RGBA" else "L")
        return image
    if mode in ("RGB", "L"):
        return image
    return image.convert("RGB")  # CMYK, YCbCr, LAB, HSV, RGBX
