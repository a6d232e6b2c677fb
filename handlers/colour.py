"""Bring a thumbnail to sRGB with the source's embedded ICC profile, then drop the profile.

Viewers without colour management (most browsers for untagged images, many apps) read the
values as sRGB, so an Adobe RGB, Display P3 or CMYK print file shown as-is looks washed out or
garish; converting once here is what libvips, sharp and imgproxy do. The conversion runs on
the thumbnail (a few thousand pixels), and the littlecms transform for a profile is built once
per process and reused: the same camera or phone profile arrives again and again.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from functools import lru_cache

from PIL import Image, ImageChops, ImageCms

logger = logging.getLogger(__name__)

# What the colour space in a profile's header must be for each working mode.
_PROFILE_SPACE = {"RGB": "RGB", "RGBA": "RGB", "L": "GRAY", "LA": "GRAY", "CMYK": "CMYK"}
# Perceptual is every ICC profile's default rendering intent (A2B0 is the one tag a LUT
# profile must have); for matrix/TRC profiles (Adobe RGB, Display P3) all intents agree.
_INTENT = ImageCms.Intent.PERCEPTUAL
# A transform shared by threads must not keep littlecms' one-pixel cache (it is written
# on every call).
_FLAGS = ImageCms.Flags.NOCACHE
# sRGB-equivalent profiles leave every probe colour within this many levels.
_SAME_AS_SRGB = 1


@dataclass(frozen=True)
class _Conversion:
    transform: ImageCms.ImageCmsTransform | None  # None: the profile is sRGB already
    problem: str | None = None  # why the profile cannot be used


def to_srgb(image: Image.Image, icc_profile: bytes | None) -> tuple[Image.Image, str | None]:
    """Return ``image`` in sRGB (same mode, or RGB for CMYK) and why a profile was ignored.

    Without a profile, with an sRGB one, or in a mode a profile does not describe, the image
    comes back untouched. A profile that is corrupt or does not fit the image's colour space
    is ignored (the caller reports the returned reason once): the image is then treated as
    profile-less, which is what every viewer would do with it.
    """
    space = _PROFILE_SPACE.get(image.mode)
    if not icc_profile or space is None:
        return image, None
    conversion = _conversion(bytes(icc_profile), space)
    if conversion.problem is not None:
        return image, f"ICC profile ignored ({conversion.problem})"
    if conversion.transform is None:
        return image, None
    return _apply(image, conversion.transform), None


def _apply(image: Image.Image, transform: ImageCms.ImageCmsTransform) -> Image.Image:
    mode = image.mode
    alpha = image.getchannel("A") if mode in ("RGBA", "LA") else None
    colour = image.convert(transform.input_mode) if alpha is not None else image
    converted = ImageCms.applyTransform(colour, transform)
    assert converted is not None  # applyTransform returns None only with inPlace=True
    if mode in ("L", "LA"):
        # A grey profile maps greys to neutral sRGB (R = G = B): keep one channel.
        converted = converted.convert("L")
    if alpha is not None:
        converted.putalpha(alpha)
    return converted


@lru_cache(maxsize=32)
def _conversion(icc_profile: bytes, space: str) -> _Conversion:
    """Parse, check and build the transform for one profile (cached per process)."""
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc_profile))
    except (OSError, ValueError, TypeError) as exc:
        return _Conversion(None, f"corrupt, {len(icc_profile)} bytes: {exc}")
    declared = str(profile.profile.xcolor_space).strip()
    if declared != space:
        return _Conversion(None, f"it describes {declared or '?'} colours, the image is {space}")
    input_mode = {"RGB": "RGB", "GRAY": "L", "CMYK": "CMYK"}[space]
    try:
        transform = ImageCms.buildTransform(
            profile, _SRGB, input_mode, "RGB", renderingIntent=_INTENT, flags=_FLAGS
        )
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError) as exc:
        return _Conversion(None, f"unusable: {exc}")
    if space == "RGB" and _is_srgb(transform):
        return _Conversion(None)
    return _Conversion(transform)


def _is_srgb(transform: ImageCms.ImageCmsTransform) -> bool:
    """Whether the transform to sRGB changes nothing: an sRGB profile under another name."""
    converted = ImageCms.applyTransform(_PROBE, transform)
    assert converted is not None
    extremes = ImageChops.difference(_PROBE, converted).getextrema()
    return all(high <= _SAME_AS_SRGB for _, high in extremes)  # type: ignore[misc]


def _probe() -> Image.Image:
    """Every combination of 0, 51, ..., 255 per channel: 216 colours spanning the cube."""
    levels = range(0, 256, 51)
    colours = [(r, g, b) for r in levels for g in levels for b in levels]
    image = Image.new("RGB", (len(colours), 1))
    image.putdata(colours)
    return image


_SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
_PROBE = _probe()
