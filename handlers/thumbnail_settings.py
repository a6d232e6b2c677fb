"""The settings that shape a thumbnail's output: its renditions, fit, placeholder and headers.

``handlers.settings`` reads them with the rest; the checks live here so that the one place
that knows what a rendition is also knows what makes two thumbnails the same (the
fingerprint recorded in each thumbnail's metadata).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass

from handlers.errors import ConfigurationError

FITS = ("contain", "cover")
MIN_SIZE = 16
MAX_SIZE = 2048
# Every rendition is made from the one decode, so each costs a resize and an encode: eight
# sizes is a full srcset (and keeps the metadata reads per event bounded).
MAX_RENDITIONS = 8
# The longest side of the aspect's two numbers: 21:9 and 32:9 pass, a pixel count does not.
MAX_ASPECT_TERM = 100
# BlurHash allows 1..9 components on each axis.
MAX_COMPONENTS = 9
# What a Cache-Control header can hold here: visible ASCII and spaces, bounded.
_CACHE_CONTROL = re.compile(r"^[\x20-\x7e]{1,256}$")
_ASPECT = re.compile(r"^(\d{1,3}):(\d{1,3})$")
_COMPONENTS = re.compile(r"^(\d)x(\d)$")
# Qualities the encoders run at (handlers.images); in the fingerprint so that changing one
# redoes the thumbnails made with the other.
JPEG_QUALITY = 85
WEBP_QUALITY = 80


@dataclass(frozen=True)
class ThumbnailOutput:
    """What every thumbnail of one deployment looks like."""

    sizes: tuple[int, ...]  # longest sides; the first is the primary, at the source's own name
    fit: str  # one of FITS
    aspect: tuple[int, int]  # width:height of a ``cover`` thumbnail
    output_format: str  # THUMBNAIL_FORMAT
    max_frames: int  # THUMBNAIL_MAX_FRAMES
    blurhash: tuple[int, int] | None  # components (x, y); None: no placeholder
    cache_control: str

    @property
    def fingerprint(self) -> str:
        """A short digest of everything that shapes the pixels and the metadata; a thumbnail
        recorded with another one is stale and made again."""
        shape = {
            "v": 1,
            "sizes": list(self.sizes),
            "fit": self.fit,
            "aspect": list(self.aspect) if self.fit == "cover" else None,
            "format": self.output_format,
            "quality": [JPEG_QUALITY, WEBP_QUALITY],
            "frames": self.max_frames,
            "blurhash": list(self.blurhash) if self.blurhash else None,
            "cache": self.cache_control,
        }
        text = json.dumps(shape, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def read_output(
    values: dict[str, str], get: Callable[[str], str], output_format: str, max_frames: int
) -> ThumbnailOutput:
    """THUMBNAIL_SIZES (or its one-value form THUMBNAIL_SIZE), THUMBNAIL_FIT, THUMBNAIL_ASPECT,
    THUMBNAIL_BLURHASH and THUMBNAIL_CACHE_CONTROL, checked."""
    return ThumbnailOutput(
        sizes=_sizes(values),
        fit=_fit(get("THUMBNAIL_FIT")),
        aspect=_aspect(get("THUMBNAIL_ASPECT")),
        output_format=output_format,
        max_frames=max_frames,
        blurhash=_components(get("THUMBNAIL_BLURHASH")),
        cache_control=_cache_control(get("THUMBNAIL_CACHE_CONTROL")),
    )


def whole_number(name: str, value: str, low: int, high: int) -> int:
    """``value`` of setting ``name`` as an integer in low..high; ConfigurationError if not.
    (Here, not in handlers.settings, which imports this module.)"""
    try:
        number = int(value)
    except ValueError:
        raise ConfigurationError(name, f"{value!r} is not a whole number") from None
    if not low <= number <= high:
        raise ConfigurationError(name, f"{number} is outside {low}..{high}")
    return number


def _size(name: str, text: str) -> int:
    return whole_number(name, text, MIN_SIZE, MAX_SIZE)


def _sizes(values: dict[str, str]) -> tuple[int, ...]:
    single = values.get("THUMBNAIL_SIZE")
    listed = values.get("THUMBNAIL_SIZES")
    if listed is None:
        return (_size("THUMBNAIL_SIZE", single or "128"),)
    parts = [part.strip() for part in listed.split(",")]
    if any(not part for part in parts):
        raise ConfigurationError("THUMBNAIL_SIZES", f"{listed!r} has an empty entry")
    sizes = tuple(_size("THUMBNAIL_SIZES", part) for part in parts)
    if len(sizes) > MAX_RENDITIONS:
        raise ConfigurationError(
            "THUMBNAIL_SIZES", f"{len(sizes)} sizes; at most {MAX_RENDITIONS} renditions"
        )
    if len(set(sizes)) != len(sizes):
        raise ConfigurationError("THUMBNAIL_SIZES", f"{listed!r} names a size twice")
    if single is not None and _size("THUMBNAIL_SIZE", single) != sizes[0]:
        raise ConfigurationError(
            "THUMBNAIL_SIZE",
            f"{single} disagrees with THUMBNAIL_SIZES ({listed}), whose first size is the "
            "primary one; set only THUMBNAIL_SIZES",
        )
    return sizes


def one_of(name: str, value: str, allowed: tuple[str, ...]) -> str:
    """``value`` of setting ``name``, lower-cased, when it is one of ``allowed``."""
    chosen = value.lower()
    if chosen not in allowed:
        raise ConfigurationError(name, f"{value!r} is not one of {', '.join(allowed)}")
    return chosen


def _fit(value: str) -> str:
    return one_of("THUMBNAIL_FIT", value, FITS)


def _aspect(value: str) -> tuple[int, int]:
    match = _ASPECT.match(value)
    if match is None:
        raise ConfigurationError(
            "THUMBNAIL_ASPECT", f"{value!r} is not an aspect such as 1:1 or 16:9"
        )
    width, height = int(match[1]), int(match[2])
    if not (1 <= width <= MAX_ASPECT_TERM and 1 <= height <= MAX_ASPECT_TERM):
        raise ConfigurationError(
            "THUMBNAIL_ASPECT", f"{value!r}: each side must be 1..{MAX_ASPECT_TERM}"
        )
    return width, height


def _components(value: str) -> tuple[int, int] | None:
    if value.lower() == "off":
        return None
    match = _COMPONENTS.match(value.lower())
    if match is None or not all(1 <= int(term) <= MAX_COMPONENTS for term in match.groups()):
        raise ConfigurationError(
            "THUMBNAIL_BLURHASH",
            f"{value!r} is not a component count such as 4x3 (1..{MAX_COMPONENTS} each), or off",
        )
    return int(match[1]), int(match[2])


def _cache_control(value: str) -> str:
    if not _CACHE_CONTROL.match(value):
        raise ConfigurationError(
            "THUMBNAIL_CACHE_CONTROL",
            f"{value[:40]!r} is not a header value (1-256 printable ASCII characters)",
        )
    return value
