"""Generate test images of every kind the thumbnailer accepts, in memory."""

from __future__ import annotations

import io
from typing import Any

from PIL import Image

RED = (220, 20, 20)
BLUE = (20, 20, 220)


def encode(image: Image.Image, fmt: str, **options: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def halves(size: tuple[int, int], mode: str = "RGB") -> Image.Image:
    """Left half red, right half blue: shows orientation after a rotation."""
    image = Image.new("RGB", size, BLUE)
    image.paste(RED, (0, 0, size[0] // 2, size[1]))
    return image.convert(mode) if mode != "RGB" else image


def with_orientation(image: Image.Image, orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(image, "JPEG", exif=exif.tobytes(), quality=95)


def transparent_rgba(size: tuple[int, int]) -> Image.Image:
    image = Image.new("RGBA", size, (*RED, 255))
    image.paste((0, 0, 0, 0), (0, 0, size[0] // 2, size[1]))
    return image


def palette(size: tuple[int, int], transparent: bool) -> bytes:
    image = halves(size).convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
    if transparent:
        index = image.getpixel((0, 0))
        return encode(image, "PNG", transparency=index)
    return encode(image, "PNG")


def grey16(size: tuple[int, int], level: int = 32768) -> bytes:
    return encode(Image.new("I;16", size, level), "PNG")


def gif_two_frames(size: tuple[int, int]) -> bytes:
    first = Image.new("RGB", size, RED)
    second = Image.new("RGB", size, BLUE)
    return encode(first, "GIF", save_all=True, append_images=[second])


def cmyk_jpeg(size: tuple[int, int]) -> bytes:
    # Pure cyan+yellow ink is green on screen.
    return encode(Image.new("CMYK", size, (255, 0, 255, 0)), "JPEG", quality=95)


def open_bytes(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image
