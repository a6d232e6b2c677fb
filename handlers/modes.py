"""Pixel modes around the resize, and the encoders: what goes in and comes out of Pillow."""

from __future__ import annotations

import io

from PIL import Image

from handlers.thumbnail_settings import JPEG_QUALITY, WEBP_QUALITY

# Where JPEG (which has no alpha) flattens transparent pixels.
_BACKGROUND = (255, 255, 255)


def before_resize(image: Image.Image) -> Image.Image:
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


def after_resize(image: Image.Image) -> Image.Image:
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


def encode(image: Image.Image, output: str) -> tuple[bytes, str]:
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
