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

from handlers.animation import animated_renditions, is_animated
from handlers.colour import to_srgb
from handlers.crop import Box, entropy_window
from handlers.decode_cost import decode_cost
from handlers.errors import InvalidBlobError, NotAnImageError
from handlers.memory import DecodeBudget
from handlers.modes import after_resize, before_resize, encode
from handlers.nclx import source_profile
from handlers.renditions import Rendition, Renditions, Shape, blurhash_of, upright
from handlers.settings import DEFAULTS, THUMBNAIL_FORMATS
from handlers.thumbnail_settings import WEBP_QUALITY

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
# WebP's 80 is libwebp's lossy scale for about what JPEG's 85 looks like, in fewer bytes;
# both are in the settings' fingerprint (handlers.thumbnail_settings).
# THUMBNAIL_FORMAT values that keep an animation; jpeg and png take the first frame.
ANIMATED_OUTPUTS = ("auto", "webp")
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
    made = make_renditions(
        data,
        Shape((size,)),
        max_pixels,
        output,
        budget,
        max_frames=max_frames,
        reserved=reserved,
    )
    (only,) = made.items
    return Thumbnail(
        data=only.data,
        content_type=only.content_type,
        width=only.width,
        height=only.height,
        source_format=made.source_format,
        source_size=made.source_size,
        note=made.note,
    )


def make_renditions(
    data: bytes,
    shape: Shape,
    max_pixels: int,
    output: str = "auto",
    budget: DecodeBudget | None = None,
    *,
    max_frames: int = int(DEFAULTS["THUMBNAIL_MAX_FRAMES"]),
    reserved: int = 0,
    blurhash: tuple[int, int] | None = None,
) -> Renditions:
    """Every rendition ``shape`` asks for, from one decode at its ``decode_size``: the
    largest is resized from the decoded pixels and each smaller one from the one above it.
    ``blurhash`` (components) adds the BlurHash of the smallest. Otherwise as
    ``make_thumbnail``, which is this with one size."""
    if output not in THUMBNAIL_FORMATS:
        raise ValueError(f"output must be one of {THUMBNAIL_FORMATS}, not {output!r}")
    if not data:
        raise InvalidBlobError(EMPTY)
    image = _open(data, max_pixels)
    with image:
        source_format = str(image.format)
        source_size = image.size
        size = shape.decode_size(source_size)
        try:
            if output in ANIMATED_OUTPUTS and max_frames > 1 and is_animated(image):
                return _animated(
                    image, data, shape, max_frames, budget or _UNBUDGETED, blurhash=blurhash
                )
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
                    working = before_resize(image)
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
            working = after_resize(working)
            if orientation in _TRANSPOSE:
                working = working.transpose(_TRANSPOSE[orientation])
            cut = shape.cut(working, upright(source_size, orientation))
            encoded = [encode(one, output) for one in cut]
            placeholder = blurhash_of(cut, blurhash)
        except Image.DecompressionBombError as exc:
            raise InvalidBlobError(f"refused as a decompression bomb: {exc}") from None
        except _DECODE_ERRORS as exc:
            raise InvalidBlobError(
                f"corrupt or truncated {source_format} image "
                f"({source_size[0]}x{source_size[1]}): {exc}"
            ) from None
    return Renditions(
        items=tuple(
            Rendition(wanted, blob, content_type, one.width, one.height)
            for wanted, one, (blob, content_type) in zip(shape.sizes, cut, encoded, strict=True)
        ),
        source_format=source_format,
        source_size=source_size,
        upright_size=upright(source_size, orientation),
        blurhash=placeholder,
        note=note,
    )


@dataclass(frozen=True)
class Prediction:
    cost: int  # bytes the decode will reserve
    what: str  # the image, for the budget's messages: "12240x8160 RGB PNG"


# Formats whose header Pillow reads from the first bytes of the file alone: the still images.
# WebP and AVIF need the whole file to open; GIF and WebP may be animations, costed by frame.
_PREDICTABLE = ("JPEG", "MPO", "PNG", "TIFF", "BMP", "HEIF")


def predicted_cost(head: bytes, shape: Shape | int, max_pixels: int) -> Prediction | None:
    """What ``make_thumbnail`` will reserve for the image whose file starts with ``head``,
    so that a caller can reserve it before downloading the rest; None when the first bytes
    do not tell (a format that needs the whole file, a header beyond ``head``, not an image).
    An image over ``max_pixels`` is left to ``make_thumbnail`` to refuse. ``shape`` is the
    renditions' (or one size, for ``make_thumbnail``)."""
    if isinstance(shape, int):
        shape = Shape((shape,))
    try:
        image = _open(head, max_pixels)
    except (InvalidBlobError, NotAnImageError):
        return None
    with image:
        if image.format not in _PREDICTABLE:
            return None
        try:
            return Prediction(*_still_cost(image, shape.decode_size(image.size)))
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
    image: Image.Image,
    data: bytes,
    shape: Shape,
    max_frames: int,
    budget: DecodeBudget,
    *,
    blurhash: tuple[int, int] | None,
) -> Renditions:
    """Every frame through the still path's colour conversion and orientation, then cut into
    the renditions (a ``cover`` crop keeps the first frame's window for every frame); the
    frames held at once are reserved in ``budget``."""
    orientation = _orientation(image)
    icc_profile, colour_note = source_profile(image, data)
    notes = [colour_note] if colour_note else []
    windows: list[Box] = []
    first_cut: list[list[Image.Image]] = []

    def finish(frame: Image.Image) -> Image.Image:
        frame, note = to_srgb(frame, icc_profile)
        if note and note not in notes:
            notes.append(note)
        return frame.transpose(_TRANSPOSE[orientation]) if orientation in _TRANSPOSE else frame

    def cut(frame: Image.Image) -> list[Image.Image]:
        if shape.fit == "cover" and not windows:
            windows.append(entropy_window(frame, *shape.aspect))
        renditions = shape.cut(
            frame, upright(image.size, orientation), windows[0] if windows else None
        )
        if not first_cut:
            first_cut.append(renditions)
        return renditions

    size = shape.decode_size(image.size)
    results = animated_renditions(
        image,
        size,
        max_frames,
        WEBP_QUALITY,
        budget=budget,
        finish=finish,
        shape=cut,
        copies=len(shape.sizes) - 1 + (shape.fit == "cover"),
    )
    # The first frame, as the page shows before the animation plays.
    placeholder = blurhash_of(first_cut[0], blurhash)
    return Renditions(
        items=tuple(
            Rendition(wanted, result.data, "image/webp", result.width, result.height)
            for wanted, result in zip(shape.sizes, results, strict=True)
        ),
        source_format=str(image.format),
        source_size=image.size,
        upright_size=upright(image.size, orientation),
        blurhash=placeholder,
        note="; ".join([results[0].note, *notes]),
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
