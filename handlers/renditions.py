"""The renditions of one image (THUMBNAIL_SIZES, THUMBNAIL_FIT, THUMBNAIL_ASPECT): how the
decoded image is cut into them, and what is kept of each."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from PIL import Image

from handlers.blurhash import encode as blurhash_encode
from handlers.crop import Box, entropy_window

# THUMBNAIL_SIZES' ceiling (handlers.thumbnail_settings.MAX_SIZE).
MAX_SIDE = 2048
# Each side Pillow can hold: THUMBNAIL_SIZES' ceiling times the widest aspect we allow.
PILLOW_SIDE_CEILING = 2048 * 100
_RESAMPLE = Image.Resampling.LANCZOS


@dataclass(frozen=True)
class Rendition:
    size: int  # the THUMBNAIL_SIZES entry it answers
    data: bytes
    content_type: str  # image/jpeg, image/png or image/webp: what ``data`` is
    width: int
    height: int


@dataclass(frozen=True)
class Renditions:
    """Every rendition of one source, largest first, from one decode."""

    items: tuple[Rendition, ...]
    source_format: str
    source_size: tuple[int, int]  # as stored
    upright_size: tuple[int, int]  # as shown, after the EXIF orientation
    blurhash: str | None
    note: str | None = None

    def of(self, size: int) -> Rendition:
        return next(item for item in self.items if item.size == size)


@dataclass(frozen=True)
class Shape:
    """How the renditions are cut: THUMBNAIL_SIZES, THUMBNAIL_FIT and THUMBNAIL_ASPECT."""

    sizes: tuple[int, ...]
    fit: str = "contain"
    aspect: tuple[int, int] = (1, 1)

    def decode_size(self, source: tuple[int, int]) -> int:
        """The longest side to decode and resize the whole image to, before any crop: the
        largest size for ``contain``; for ``cover``, large enough that the crop window (in
        either orientation, as EXIF may turn it) still has the largest size's pixels."""
        largest = max(self.sizes)
        if self.fit == "contain":
            return largest
        width, height = source
        needed = largest
        for aspect_w, aspect_h in (self.aspect, self.aspect[::-1]):
            window_w, window_h = _window(width, height, aspect_w, aspect_h)
            needed = max(needed, math.ceil(largest * max(width, height) / max(window_w, window_h)))
        return min(needed, PILLOW_SIDE_CEILING)

    def cut(
        self, upright: Image.Image, shown: tuple[int, int], window: Box | None = None
    ) -> list[Image.Image]:
        """The renditions (in ``sizes`` order) of ``upright``, the image of upright size
        ``shown`` resized to ``decode_size``; ``cover`` crops it to ``window`` (by default its
        entropy window). Each size's box comes from the source's own shape (or the aspect's),
        as Pillow's ``thumbnail`` rounds it, not from the rendition above it."""
        shape = shown
        if self.fit == "cover":
            box = window or entropy_window(upright, *self.aspect)
            upright = upright.crop(box)
            shape = (self.aspect[0] * MAX_SIDE, self.aspect[1] * MAX_SIDE)  # the aspect, exact
        results: list[Image.Image] = []
        source = upright
        for size in sorted(self.sizes, reverse=True):
            box_size = _fitted(shape, size)
            if box_size[0] > upright.width or box_size[1] > upright.height:
                box_size = upright.size  # never upscaled
            resized = source if box_size == source.size else source.resize(box_size, _RESAMPLE)
            results.append(resized)
            source = resized  # the next, smaller one from this one
        by_size = dict(zip(sorted(self.sizes, reverse=True), results, strict=True))
        return [by_size[size] for size in self.sizes]


def blurhash_of(cut: list[Image.Image], components: tuple[int, int] | None) -> str | None:
    """The BlurHash of the smallest rendition (what it shows, at the least cost)."""
    if components is None:
        return None
    smallest = min(cut, key=lambda one: one.width * one.height)
    return blurhash_encode(smallest, *components)


def upright(size: tuple[int, int], orientation: int) -> tuple[int, int]:
    """``size`` as shown: EXIF orientations 5-8 turn the image a quarter."""
    return (size[1], size[0]) if orientation in (5, 6, 7, 8) else size


def _window(width: int, height: int, aspect_w: int, aspect_h: int) -> tuple[int, int]:
    """The largest aspect_w:aspect_h box inside width x height."""
    if width * aspect_h > height * aspect_w:
        return max(1, round(height * aspect_w / aspect_h)), height
    return width, max(1, round(width * aspect_h / aspect_w))


def _fitted(source: tuple[int, int], size: int) -> tuple[int, int]:
    """``source`` scaled to fit ``size`` x ``size``, rounded as Pillow's ``thumbnail`` rounds
    (the side that best keeps the aspect); never larger than it is."""
    width, height = source
    if width <= size and height <= size:
        return source
    aspect = width / height
    if aspect >= 1:
        return size, _rounded(size / aspect, lambda n: 0 if n == 0 else abs(aspect - size / n))
    return _rounded(size * aspect, lambda n: abs(aspect - n / size)), size


def _rounded(number: float, error: Callable[[int], float]) -> int:
    return max(min(math.floor(number), math.ceil(number), key=error), 1)
