"""Seeded test photographs: gradients, a soft fractal and per-pixel noise, so that JPEG and
PNG encode to realistic sizes (a 24-megapixel JPEG at q90 is about 8 MB, not 300 kB)."""

from __future__ import annotations

import io
import random

from PIL import Image

_NOISE_CHUNK = 64 * 1024 * 1024  # random.randbytes is limited to 2**31 bits per call


def photo(size: tuple[int, int], seed: int, noise: float = 0.15) -> Image.Image:
    rng = random.Random(seed)
    width, height = size
    gradient = (
        Image.linear_gradient("L")
        .rotate(rng.uniform(0, 360))
        .resize(size, Image.Resampling.BILINEAR)
    )
    radial = Image.radial_gradient("L").resize(size, Image.Resampling.BILINEAR)
    centre = (rng.uniform(-1.0, -0.5), rng.uniform(-0.3, 0.3))
    fractal = Image.effect_mandelbrot(
        (600, 400), (centre[0] - 1.2, centre[1] - 0.9, centre[0] + 1.2, centre[1] + 0.9), 100
    ).resize(size, Image.Resampling.BICUBIC)
    base = Image.merge("RGB", (gradient, fractal, radial))
    total = width * height * 3
    random_bytes = b"".join(
        rng.randbytes(min(_NOISE_CHUNK, total - offset)) for offset in range(0, total, _NOISE_CHUNK)
    )
    grain = Image.frombytes("RGB", size, random_bytes)
    del random_bytes
    return Image.blend(base, grain, noise)


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def jpeg(size: tuple[int, int], seed: int, quality: int = 90) -> bytes:
    return encode(photo(size, seed), "JPEG", quality=quality)


def png(size: tuple[int, int], seed: int) -> bytes:
    return encode(photo(size, seed), "PNG")


def heic(size: tuple[int, int], seed: int, thumbnail: int | None = None) -> bytes:
    """A HEIC as a phone writes it; ``thumbnail`` embeds a scaled copy of that many pixels on
    its longest side, as iPhones do (320)."""
    import pillow_heif

    pillow_heif.register_heif_opener()
    # x265's ultrafast preset encodes 12 MP in about 2 s instead of 20; decoding costs the same.
    options: dict[str, object] = {"quality": 80, "enc_params": {"preset": "ultrafast"}}
    if thumbnail is not None:
        options["thumbnails"] = [thumbnail]
    return encode(photo(size, seed), "HEIF", **options)


def avif(size: tuple[int, int], seed: int) -> bytes:
    return encode(photo(size, seed), "AVIF", quality=70, speed=8)


def adobe_rgb_jpeg(size: tuple[int, int], seed: int, quality: int = 90) -> bytes:
    from tools import icc

    return encode(photo(size, seed), "JPEG", quality=quality, icc_profile=icc.adobe_rgb())
