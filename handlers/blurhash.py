"""BlurHash of a small image: a few dozen characters a page paints as a blur before the image loads.

The encoding follows the algorithm's published description (woltapp/blurhash): each component
is the mean of the linear-light pixels weighted by a product of cosines, quantised and written
in base 83. The weighted means run inside Pillow (one float multiply and one box resize to a
single pixel per component and channel), so a 128 px thumbnail costs about a millisecond
without a compiled dependency; the cosine images are built once per size and reused.
"""

from __future__ import annotations

import math
from functools import lru_cache

from PIL import Image, ImageMath

_BASE83 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz#$%*+,-.:;=?@[]^_{|}~"
COMPONENTS = range(1, 10)  # what the format can express per axis


def encode(image: Image.Image, x_components: int = 4, y_components: int = 3) -> str:
    """Return the BlurHash of ``image`` (any mode; alpha is dropped, palette expanded).

    Meant for an already-small image such as the thumbnail: the cost grows with its pixels.
    """
    if x_components not in COMPONENTS or y_components not in COMPONENTS:
        raise ValueError(f"components must be 1..9 per axis, not {x_components}x{y_components}")
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    width, height = rgb.size
    if width < 1 or height < 1:
        raise ValueError(f"image has no pixels ({width}x{height})")
    lut = _srgb_to_linear()
    bands = [band.point(lut, "F") for band in rgb.split()]
    factors: list[tuple[float, float, float]] = []
    for j in range(y_components):
        for i in range(x_components):
            basis = _basis(width, height, i, j)
            scale = 1.0 if i == j == 0 else 2.0
            factors.append(
                (
                    scale * _mean(bands[0], basis),
                    scale * _mean(bands[1], basis),
                    scale * _mean(bands[2], basis),
                )
            )
    dc, ac = factors[0], factors[1:]
    parts = [_base83((x_components - 1) + (y_components - 1) * 9, 1)]
    if ac:
        actual_max = max(abs(value) for factor in ac for value in factor)
        quantised_max = max(0, min(82, math.floor(actual_max * 166 - 0.5)))
        maximum = (quantised_max + 1) / 166
        parts.append(_base83(quantised_max, 1))
    else:
        maximum = 1.0
        parts.append(_base83(0, 1))
    red, green, blue = (_linear_to_srgb(value) for value in dc)
    parts.append(_base83((red << 16) + (green << 8) + blue, 4))
    for factor in ac:
        r, g, b = (_quantise_ac(value / maximum) for value in factor)
        parts.append(_base83(r * 19 * 19 + g * 19 + b, 2))
    return "".join(parts)


def _mean(band: Image.Image, basis: Image.Image | None) -> float:
    """Mean of ``band`` times ``basis`` (None: a basis of ones), in Pillow's float resampler."""
    weighted = band
    if basis is not None:
        result = ImageMath.lambda_eval(lambda args: args["a"] * args["b"], a=band, b=basis)
        assert isinstance(result, Image.Image)
        weighted = result
    value = weighted.resize((1, 1), Image.Resampling.BOX).getpixel((0, 0))
    assert isinstance(value, float)
    return value


@lru_cache(maxsize=64)
def _basis(width: int, height: int, i: int, j: int) -> Image.Image | None:
    """cos(pi i x / width) * cos(pi j y / height) at each pixel, as an F image."""
    if i == j == 0:
        return None
    columns = [math.cos(math.pi * i * x / width) for x in range(width)]
    rows = [math.cos(math.pi * j * y / height) for y in range(height)]
    basis = Image.new("F", (width, height))
    basis.putdata([row * column for row in rows for column in columns])
    return basis


@lru_cache(maxsize=1)
def _srgb_to_linear() -> list[float]:
    def linear(level: int) -> float:
        value = level / 255
        return value / 12.92 if value <= 0.04045 else ((value + 0.055) / 1.055) ** 2.4

    return [linear(level) for level in range(256)]


def _linear_to_srgb(value: float) -> int:
    value = max(0.0, min(1.0, value))
    if value <= 0.0031308:
        return int(value * 12.92 * 255 + 0.5)
    return int((1.055 * value ** (1 / 2.4) - 0.055) * 255 + 0.5)


def _quantise_ac(value: float) -> int:
    signed = math.copysign(abs(value) ** 0.5, value)
    return max(0, min(18, math.floor(signed * 9 + 9.5)))


def _base83(value: int, length: int) -> str:
    return "".join(_BASE83[(value // 83 ** (length - 1 - k)) % 83] for k in range(length))
