"""Make a thumbnail from image bytes: pure CPU work, no storage.

Pillow's ``thumbnail()`` runs before any ``load()`` or ``convert()`` so that the decoder can
skip work: JPEG decodes at 1/2..1/8 scale (draft mode) and HEIF decodes its embedded
thumbnail instead of the full image when that one is at least twice the target size. That
is what keeps a 24-megapixel JPEG or a 12-megapixel iPhone photo cheap. Colour conversion
(``handlers.colour``) and the orientation come after the resize, on a few thousand pixels.

Before the first pixel is decoded, ``decode_cost`` predicts from the header what the decode
and resize will hold at once, and that much is reserved in the process's decode budget
(``handlers.memory``) until the full-size buffers are freed.

Animated GIF and WebP sources become animated WebP (``handlers.animation``) unless a still
format is asked for.
"""

from __future__ import annotations

import io
import logging
import struct
import warnings
import zlib
from contextlib import nullcontext
from dataclasses import dataclass

import pillow_heif
from PIL import ExifTags, Image, UnidentifiedImageError

from handlers.animation import animated_thumbnail, is_animated
from handlers.colour import to_srgb
from handlers.decode_cost import decode_cost
from handlers.errors import InvalidBlobError, NotAnImageError
from handlers.memory import DecodeBudget
from handlers.nclx import source_profile
from handlers.settings import DEFAULTS, THUMBNAIL_FORMATS

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
# THUMBNAIL_FORMAT values that keep an animation; jpeg and png take the first frame.
ANIMATED_OUTPUTS = ("auto", "webp")
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
    *,
    max_frames: int = int(DEFAULTS["THUMBNAIL_MAX_FRAMES"]),
    reserved: int = 0,
) -> Thumbnail:
    """Return a thumbnail whose longest side is at most ``size``; never upscales.

    ``output`` is THUMBNAIL_FORMAT: ``auto`` (JPEG, or PNG when anything is transparent),
    ``webp`` (lossy, alpha kept), ``jpeg`` (transparency flattened on white) or ``png``.
    Under ``auto`` and ``webp`` an animated GIF or WebP gives an animated WebP of at most
    ``max_frames`` frames (THUMBNAIL_MAX_FRAMES; 1 keeps only the first frame, as a still).
    The pixels are sRGB and carry no profile. Raises InvalidBlobError for empty,
    unsupported, corrupt or oversized images. With a ``budget``, the decode waits for room
    in it (DecodeBusyError when none comes) or is refused (TooLargeToDecodeError).
    ``reserved`` is what the caller already holds in ``budget`` for this decode
    (``predicted_cost`` of its header); only a decode that needs more reserves the rest.
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
            if output in ANIMATED_OUTPUTS and max_frames > 1 and is_animated(image):
                return _animated(image, data, size, max_frames, budget or _UNBUDGETED)
            # Headers and boxes only, before the draft can replace them with a thumbnail's.
            icc_profile, colour_note = source_profile(image, data)  # ICC, or from nclx
            cost, what = _still_cost(image, size)
            more = cost - reserved
            with (budget or _UNBUDGETED).reserve(more, what) if more > 0 else nullcontext():
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


@dataclass(frozen=True)
class Prediction:
    cost: int  # bytes the decode will reserve
    what: str  # the image, for the budget's messages: "12240x8160 RGB PNG"


# Formats whose header Pillow reads from the first bytes of the file alone: the still images.
# WebP and AVIF need the whole file to open; GIF and WebP may be animations, costed by frame.
_PREDICTABLE = ("JPEG", "MPO", "PNG", "TIFF", "BMP", "HEIF")


def predicted_cost(head: bytes, size: int, max_pixels: int) -> Prediction | None:
    """What ``make_thumbnail`` will reserve for the image whose file starts with ``head``,
    so that a caller can reserve it before downloading the rest; None when the first bytes
    do not tell (a format that needs the whole file, a header beyond ``head``, not an image).
    An image over ``max_pixels`` is left to ``make_thumbnail`` to refuse."""
    try:
        image = _open(head, max_pixels)
    except (InvalidBlobError, NotAnImageError):
        return None
    with image:
        if image.format not in _PREDICTABLE:
            return None
        try:
            return Prediction(*_still_cost(image, size))
        except _DECODE_ERRORS:
            return None


def _still_cost(image: Image.Image, size: int) -> tuple[int, str]:
    """The reservation of a still decode and the image's description; for HEIF, after
    choosing the embedded thumbnail that will be decoded instead of the full image."""
    what = f"{image.size[0]}x{image.size[1]} {image.mode} {image.format}"
    if image.format == "HEIF":
        _use_embedded_thumbnail(image, size)
    return decode_cost(image, size), what


def _animated(
    image: Image.Image, data: bytes, size: int, max_frames: int, budget: DecodeBudget
) -> Thumbnail:
    """Every frame through the still path's colour conversion and orientation; the frames
    held at once are reserved in ``budget``."""
    orientation = _orientation(image)
    icc_profile, colour_note = source_profile(image, data)
    notes = [colour_note] if colour_note else []

    def finish(frame: Image.Image) -> Image.Image:
        frame, note = to_srgb(frame, icc_profile)
        if note and note not in notes:
            notes.append(note)
        return frame.transpose(_TRANSPOSE[orientation]) if orientation in _TRANSPOSE else frame

    result = animated_thumbnail(image, size, max_frames, WEBP_QUALITY, budget=budget, finish=finish)
    return Thumbnail(
        data=result.data,
        content_type="image/webp",
        width=result.width,
        height=result.height,
        source_format=str(image.format),
        source_size=image.size,
        note="; ".join([result.note, *notes]),
    )


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
