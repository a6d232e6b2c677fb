"""Animated GIF and WebP fixtures, including GIFs whose frames are sub-rectangles with a
disposal method chosen per frame (Pillow's writer decides those itself)."""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass

from PIL import Image

# A fixed palette shared by every patch: index 0 transparent (when a frame says so), then
# red, green, blue, white, black; the rest black.
PALETTE_COLOURS = [(0, 0, 0), (220, 20, 20), (20, 200, 20), (20, 20, 220), (255, 255, 255)]
CLEAR, RED, GREEN, BLUE, WHITE = range(5)


def animated(
    frames: list[Image.Image],
    fmt: str,
    durations: list[int],
    loop: int | None = 0,
    **options: object,
) -> bytes:
    """``frames`` saved as one animated file (``loop`` None: no loop record at all)."""
    buffer = io.BytesIO()
    extra = {} if loop is None else {"loop": loop}
    frames[0].save(
        buffer,
        fmt,
        save_all=True,
        append_images=frames[1:],
        duration=durations,
        **extra,
        **options,
    )
    return buffer.getvalue()


def distinct_frames(count: int, size: tuple[int, int]) -> list[Image.Image]:
    """``count`` RGB frames, each a different solid colour with a bar at a different place
    (so that no two are alike and libwebp merges none)."""
    frames = []
    for index in range(count):
        frame = Image.new("RGB", size, (40 + index * 7 % 200, 90, 200 - index * 5 % 180))
        left = index * size[0] // (count + 1)
        frame.paste((255, 255, 255), (left, 0, left + max(2, size[0] // 10), size[1]))
        frames.append(frame)
    return frames


@dataclass(frozen=True)
class Patch:
    """One GIF frame: a rectangle of palette indices at ``position``."""

    pixels: Image.Image  # mode P, indices into PALETTE_COLOURS
    position: tuple[int, int]
    disposal: int  # 0/1 keep, 2 restore to background, 3 restore to previous
    duration_ms: int
    transparent: bool = False  # index CLEAR is transparent in this frame


def solid(size: tuple[int, int], index: int) -> Image.Image:
    return Image.new("P", size, index)


def gif_of_patches(canvas: tuple[int, int], patches: list[Patch], loop: int = 0) -> bytes:
    """A GIF89a with a global palette, a NETSCAPE loop record and one graphic control
    extension per patch; the image data of each patch is Pillow's LZW encoding of it."""
    palette = bytes(channel for colour in PALETTE_COLOURS for channel in colour)
    palette += bytes(3 * 256 - len(palette))
    out = bytearray(b"GIF89a")
    out += struct.pack("<HHBBB", canvas[0], canvas[1], 0xF7, 0, 0)  # 256-colour global table
    out += palette
    out += b"\x21\xff\x0bNETSCAPE2.0\x03\x01" + struct.pack("<H", loop) + b"\x00"
    for patch in patches:
        flags = (patch.disposal << 2) | (1 if patch.transparent else 0)
        delay = patch.duration_ms // 10
        out += b"\x21\xf9\x04" + struct.pack("<BHB", flags, delay, CLEAR) + b"\x00"
        out += _image_block(patch.pixels, palette, patch.position)
    out += b"\x3b"
    return bytes(out)


def _image_block(pixels: Image.Image, palette: bytes, position: tuple[int, int]) -> bytes:
    """The image descriptor and data of ``pixels`` encoded alone by Pillow, moved to
    ``position``."""
    image = pixels.copy()
    image.putpalette(palette)
    buffer = io.BytesIO()
    image.save(buffer, "GIF", optimize=False, interlace=False)
    data = buffer.getvalue()
    offset = 13 + 3 * 2 ** ((data[10] & 7) + 1) if data[10] & 0x80 else 13
    while data[offset] == 0x21:  # skip extensions up to the image descriptor
        offset += 2
        while data[offset]:
            offset += data[offset] + 1
        offset += 1
    assert data[offset] == 0x2C
    start = offset
    packed = data[offset + 9]
    offset += 10
    if packed & 0x80:
        offset += 3 * 2 ** ((packed & 7) + 1)
    offset += 1  # LZW minimum code size
    while data[offset]:
        offset += data[offset] + 1
    block = bytearray(data[start : offset + 1])
    block[1:5] = struct.pack("<HH", *position)
    return bytes(block)


def frames_of(data: bytes) -> list[tuple[Image.Image, int]]:
    """Each frame of an animated file as RGBA, with its duration in ms."""
    image = Image.open(io.BytesIO(data))
    result = []
    for index in range(getattr(image, "n_frames", 1)):
        image.seek(index)
        frame = image.convert("RGBA")
        result.append((frame, int(image.info.get("duration", 0))))
    return result
