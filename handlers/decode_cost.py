"""How many bytes decoding an image and resizing it will hold at the peak, predicted from its
header before any pixel is decoded: what ``handlers.images`` reserves in the decode budget
(``handlers.memory``)."""

from __future__ import annotations

import math

from PIL import Image, ImageFile

from handlers import memory

# Bytes a decode holds beyond its pixels: the decoders' state (libjpeg's and zlib's buffers,
# libtiff's strips) and Python objects. A JPEG draft decode measured 2-4 MB over its pixels.
DECODE_SLACK = 8 * memory.MiB


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
