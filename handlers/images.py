"""Make a thumbnail from image bytes: pure CPU work, no storage.

Pillow's ``thumbnail()`` runs before any ``load()`` or ``convert()`` so that the decoder can
skip work: JPEG decodes at 1/2..1/8 scale (draft mode) and HEIF decodes its embedded
thumbnail instead of the full image when that one is at least twice the target size. That
is what keeps a 24-megapixel JPEG or a 12-megapixel iPhone photo cheap. Colour conversion
(``handlers.colour``) and the orientation come after the resize, on a few thousand pixels.

Before the first pixel is decoded, ``decode_cost`` predicts from the header what the decode
and resize will hold at once, and that much is reserved in the process's decode budget
(``handlers.memory``) until the full-size buffers are freed.
"""

from __future__ import annotations

import io
import logging
import math
import struct
import warnings
import zlib
from dataclasses import dataclass

import pillow_heif
from PIL import ExifTags, Image, ImageFile, UnidentifiedImageError

from handlers import memory
from handlers.colour import to_srgb
from handlers.errors import InvalidBlobError, NotAnImageError
from handlers.memory import DecodeBudget
from handlers.nclx import source_profile
from handlers.settings import THUMBNAIL_FORMATS

logger = logging.getLogger(__name__)

# HEIC/HEIF through pillow-heif, registered once per process (at first import). Depth and
# auxiliary images are never used here, so they are not even parsed.
pillow_heif.register_heif_opener(thumbnails=True, depth_images=False, aux_images=False)

# Pillow plugins we accept, tried in this order; anything else (SVG, PSD, ...) is refused as
# unsupported. JPEG also opens multi-picture (MPO) camera files. AVIF comes before HEIF:
# both claim files branded "mif1", and only Pillow's AVIF plugin decodes AV1 (pillow-heif
# hands a HEVC file over cleanly, the other way round it fails late).
FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "TIFF", "BMP", "AVIF", "HEIF")
EMPTY = "the blob is empty (0 bytes)"
JPEG_QUALITY = 85
WEBP_QUALITY = 80  # libwebp's lossy scale: about what JPEG's 85 looks like, in fewer bytes
# Where JPEG (which has no alpha) flattens transparent pixels.
_BACKGROUND = (255, 255, 255)
# Formats whose EXIF orientation tag is what turns the stored pixels upright. HEIF is not
# among them: libheif applies the file's irot/imir while decoding and pillow-heif resets the
# EXIF tag to 1, so reading it again would rotate twice. Pillow's AVIF plugin does not rotate:
# it reports irot/imir as the EXIF orientation, which is applied here like JPEG's.
_EXIF_ORIENTED = ("JPEG", "MPO", "TIFF", "WEBP", "PNG", "AVIF")

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
# ISO base media files say what they hold in the major brand of their first box ("ftyp").
_BRANDS = {
    b"avif": "AVIF",
    b"avis": "AVIF",
    b"heic": "HEIF",
    b"heix": "HEIF",
    b"heim": "HEIF",
    b"heis": "HEIF",
    b"hevc": "HEIF",
    b"hevx": "HEIF",
    b"mif1": "HEIF/AVIF",
    b"msf1": "HEIF/AVIF",
}
# Bytes a decode holds beyond its pixels: the decoders' state (libjpeg's and zlib's buffers,
# libtiff's strips) and Python objects. A JPEG draft decode measured 2-4 MB over its pixels.
DECODE_SLACK = 8 * memory.MiB
# Unbudgeted callers (tools, the bench's bare comparisons) count into a budget that is off.
_UNBUDGETED = DecodeBudget(0)
# Errors Pillow and pillow-heif raise on corrupt or truncated data.
_DECODE_ERRORS = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    IndexError,
    RuntimeError,
    struct.error,
    zlib.error,
)


@dataclass(frozen=True)
class Thumbnail:
    data: bytes
    content_type: str  # image/jpeg, image/png or image/webp: what ``data`` is
    width: int
    height: int
    source_format: str
    source_size: tuple[int, int]
    note: str | None = None  # something the caller should report once (an ignored profile)


def make_thumbnail(
    data: bytes,
    size: int,
    max_pixels: int,
    output: str = "auto",
    budget: DecodeBudget | None = None,
) -> Thumbnail:
    """Return a thumbnail whose longest side is at most ``size``; never upscales.

    ``output`` is THUMBNAIL_FORMAT: ``auto`` (JPEG, or PNG when anything is transparent),
    ``webp`` (lossy, alpha kept), ``jpeg`` (transparency flattened on white) or ``png``.
    The pixels are sRGB and carry no profile. Raises InvalidBlobError for empty,
    unsupported, corrupt or oversized images. With a ``budget``, the decode waits for room
    in it (DecodeBusyError when none comes) or is refused (TooLargeToDecodeError).
    """
    if output not in THUMBNAIL_FORMATS:
        raise ValueError(f"output must be one of {THUMBNAIL_FORMATS}, not {output!r}")
    if not data:
        raise InvalidBlobError(EMPTY)
    image = _open(data, max_pixels)
    with image:
        source_format = str(image.format)
        source_size = image.size
        try:
            # Headers and boxes only, before the draft can replace them with a thumbnail's.
            icc_profile, colour_note = source_profile(image, data)  # ICC, or from nclx
            if image.format == "HEIF":
                _use_embedded_thumbnail(image, size)
            what = f"{source_size[0]}x{source_size[1]} {image.mode} {source_format}"
            with (budget or _UNBUDGETED).reserve(decode_cost(image, size), what):
                working = image
                try:
                    # Reading a PNG's EXIF decodes the whole image (the chunk may follow
                    # the pixels), so even this comes under the reservation.
                    orientation = _orientation(image)
                    working = _before_resize(image)
                    working.thumbnail((size, size))
                except BaseException:
                    working.close()
                    image.close()
                    raise
                if working is not image:
                    # Free the full-size pixels before the reservation ends: leaving the
                    # with block only closes the file, the pixels stay until collected.
                    image.close()
            working, note = to_srgb(working, icc_profile)
            note = note or colour_note
            working = _after_resize(working)
            if orientation in _TRANSPOSE:
                working = working.transpose(_TRANSPOSE[orientation])
            encoded, content_type = _encode(working, output)
        except Image.DecompressionBombError as exc:
            raise InvalidBlobError(f"refused as a decompression bomb: {exc}") from None
        except _DECODE_ERRORS as exc:
            raise InvalidBlobError(
                f"corrupt or truncated {source_format} image "
                f"({source_size[0]}x{source_size[1]}): {exc}"
            ) from None
    return Thumbnail(
        data=encoded,
        content_type=content_type,
        width=working.width,
        height=working.height,
        source_format=source_format,
        source_size=source_size,
        note=note,
    )


def decode_cost(image: Image.Image, size: int) -> int:
    """Bytes that decoding ``image`` (opened, not loaded) and resizing it to ``size`` hold at
    the peak, predicted from the header: pixels times the bytes per pixel of the full-size
    buffers alive at once, plus DECODE_SLACK."""
    width, height = _decoded_size(image, size)
    stored = memory.pixel_bytes(image.mode)
    decoding = stored + _decoder_bytes_per_pixel(image)
    resizing = stored + _copies_bytes_per_pixel(image)
    return math.ceil(width * height * max(decoding, resizing)) + DECODE_SLACK


def _decoded_size(image: Image.Image, size: int) -> tuple[int, int]:
    """The size the decoder will produce. JPEG decodes at the draft scale that
    ``thumbnail()`` asks for, twice the box (Pillow's JpegImageFile.draft: the largest of
    1/8, 1/4, 1/2 that still covers it); every other format decodes at full size (HEIF's
    embedded thumbnail is already chosen, and its size is the image's)."""
    width, height = image.size
    single_tile = isinstance(image, ImageFile.ImageFile) and len(image.tile) == 1
    if image.format not in ("JPEG", "MPO") or not single_tile or size >= max(width, height):
        return width, height
    scale = min(width // (2 * size), height // (2 * size))
    step = next((s for s in (8, 4, 2) if scale >= s), 1)
    return (width + step - 1) // step, (height + step - 1) // step


def _copies_bytes_per_pixel(image: Image.Image) -> float:
    """Bytes per pixel of the full-size copies ``_before_resize`` and ``thumbnail()`` make
    while the decoded image is alive. Pillow's resize premultiplies RGBA and LA into a
    copy (RGBa, La) first."""
    mode = image.mode
    transparent = "transparency" in image.info
    if mode == "1":
        return 1  # + L
    if mode == "P":
        return 8 if transparent else 4  # + RGBA and its premultiplied copy, or + RGB
    if mode.startswith("I") or mode == "F":
        return 9  # + I, + the scaled I, + L
    if mode in ("LA", "La", "PA", "RGBa"):
        return 8  # + LA or RGBA, + its premultiplied copy
    if mode == "RGBA":
        return 4  # + RGBa
    if mode in ("L", "RGB") and transparent:
        return 8  # + LA or RGBA, + its premultiplied copy
    return 0


def _decoder_bytes_per_pixel(image: Image.Image) -> float:
    """Bytes per pixel the decoding library holds beside Pillow's image while it decodes,
    measured on this stack (bench ``memory``): libheif keeps the YCbCr planes (1.5 bytes a
    pixel at 8 bits, 3 above), an alpha plane and the interleaved RGB(A) it hands over;
    libavif (with dav1d) the YUV planes and an RGBA conversion buffer; libwebp its canvas,
    its work buffers and the frame Pillow copies from. PNG, TIFF, BMP, GIF and JPEG decode
    straight into Pillow's image."""
    bands = len(image.getbands())
    if image.format == "HEIF":
        deep = int(image.info.get("bit_depth") or 8) > 8
        alpha = (2 if deep else 1) if "A" in image.getbands() else 0
        return (3 if deep else 1.5) + alpha + bands
    if image.format == "AVIF":
        return 7.5
    if image.format == "WEBP":
        return 12.5
    return 0


def _open(data: bytes, max_pixels: int) -> Image.Image:
    """Open (headers only: nothing is decoded yet) and check the size before any decoding."""
    try:
        with warnings.catch_warnings():
            # Our own limit below replaces Pillow's global warning threshold.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=FORMATS)
    except UnidentifiedImageError:
        claimed = _claimed_format(data)
        if claimed is not None:
            raise InvalidBlobError(
                f"corrupt {claimed} image: its header cannot be read; starts with {data[:12]!r}"
            ) from None
        raise NotAnImageError(
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
    except InvalidBlobError:
        image.close()
        raise
    return image


def _use_embedded_thumbnail(image: Image.Image, size: int) -> None:
    """Let pillow-heif decode the smallest embedded thumbnail at least twice the target.

    ``thumbnail()`` would ask for twice the square box (256x256 for 128), which the 320x240
    thumbnail of a 4:3 photo never fills; asking for the target's own shape does.
    """
    width, height = image.size
    scale = min(size / width, size / height, 1.0)
    target = (max(1, round(width * scale)), max(1, round(height * scale)))
    image.draft(None, (2 * target[0], 2 * target[1]))


def _claimed_format(data: bytes) -> str | None:
    if data[4:8] == b"ftyp":
        return _BRANDS.get(data[8:12])
    return next((name for magic, name in _SIGNATURES if data.startswith(magic)), None)


def _orientation(image: Image.Image) -> int:
    if image.format not in _EXIF_ORIENTED:
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


def _encode(image: Image.Image, output: str) -> tuple[bytes, str]:
    """Encode in the chosen format, with no ICC profile, EXIF or other metadata."""
    image.info = {}  # PNG would otherwise copy the source's profile and transparency over
    transparent = image.mode in ("RGBA", "LA")
    buffer = io.BytesIO()
    if output == "webp":
        image.save(buffer, "WEBP", quality=WEBP_QUALITY)
        return buffer.getvalue(), "image/webp"
    if output == "png" or (output == "auto" and transparent):
        image.save(buffer, "PNG")
        return buffer.getvalue(), "image/png"
    if transparent:
        image = _flatten(image)
    image.save(buffer, "JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue(), "image/jpeg"


def _flatten(image: Image.Image) -> Image.Image:
    """Composite an RGBA/LA image on white, for JPEG."""
    base_mode = image.mode[:-1]  # RGB or L
    background = Image.new(base_mode, image.size, _BACKGROUND if base_mode == "RGB" else 255)
    background.paste(image.convert(base_mode), mask=image.getchannel("A"))
    return background
