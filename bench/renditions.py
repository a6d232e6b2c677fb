"""Renditions: a 24 MP JPEG into three sizes and a BlurHash through ``make_renditions``,
against bare Pillow and pyvips making the same three sizes, and against three separate
``make_thumbnail`` calls (what one decode for all of them saves).

Each variant starts from the JPEG's bytes and ends with three encoded JPEGs (q85). Runs are
interleaved so that load drifts hit every variant alike; ratios are of medians.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from dataclasses import dataclass

from PIL import Image

from bench import images
from bench.common import Table, median

SIZES = (512, 256, 128)  # a srcset: 4x, 2x and 1x of a 128 px slot
SOURCE = (6000, 4000)
MAX_PIXELS = 150_000_000  # THUMBNAIL_MAX_PIXELS' default
QUALITY = 85  # handlers.thumbnail_settings.JPEG_QUALITY
RUNS = 9
TARGET = 1.10  # the handler's time at most this times bare Pillow's


def handler(data: bytes) -> list[bytes]:
    from handlers.images import make_renditions
    from handlers.renditions import Shape

    made = make_renditions(data, Shape(SIZES), MAX_PIXELS, "auto", blurhash=(4, 3))
    return [item.data for item in made.items]


def separate(data: bytes) -> list[bytes]:
    """Three single-size thumbnails: one download's bytes, three decodes."""
    from handlers.images import make_thumbnail

    return [make_thumbnail(data, size, MAX_PIXELS, "auto").data for size in SIZES]


def bare_pillow(data: bytes) -> list[bytes]:
    """Open, draft-decode and resize to the largest, then each smaller from the one above."""
    with Image.open(io.BytesIO(data)) as image:
        image.thumbnail((SIZES[0], SIZES[0]))
        current = image.copy()
    out = []
    for size in SIZES:
        current.thumbnail((size, size))
        buffer = io.BytesIO()
        current.save(buffer, "JPEG", quality=QUALITY)
        out.append(buffer.getvalue())
    return out


def vips(data: bytes) -> list[bytes]:
    """thumbnail_buffer to the largest (shrink-on-load), then resize for the smaller ones."""
    import pyvips

    # In memory: the loader streams, and the smaller sizes read the largest again.
    largest = pyvips.Image.thumbnail_buffer(data, SIZES[0]).copy_memory()
    out = [bytes(largest.write_to_buffer(".jpg", Q=QUALITY))]
    for size in SIZES[1:]:
        smaller = largest.resize(size / max(largest.width, largest.height))
        out.append(bytes(smaller.write_to_buffer(".jpg", Q=QUALITY)))
    return out


VARIANTS: dict[str, Callable[[bytes], list[bytes]]] = {
    "handler": handler,
    "pillow": bare_pillow,
    "pyvips": vips,
    "separate": separate,
}


@dataclass(frozen=True)
class Result:
    source_mb: float
    wall: dict[str, float]  # median seconds per variant
    sizes: dict[str, list[tuple[int, int]]]  # what each variant wrote

    @property
    def met(self) -> bool:
        return self.wall["handler"] <= TARGET * self.wall["pillow"]


def run(log: Callable[[str], None], runs: int = RUNS) -> Result:
    data = images.jpeg(SOURCE, seed=24)
    sizes = {
        name: [Image.open(io.BytesIO(blob)).size for blob in variant(data)]
        for name, variant in VARIANTS.items()
    }
    timings: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for _ in range(runs):
        for name, variant in VARIANTS.items():
            started = time.perf_counter()
            variant(data)
            timings[name].append(time.perf_counter() - started)
    wall = {name: median(values) for name, values in timings.items()}
    log("   " + ", ".join(f"{name} {seconds * 1000:.1f} ms" for name, seconds in wall.items()))
    return Result(len(data) / 1e6, wall, sizes)


def table(result: Result, runs: int = RUNS) -> Table:
    out = Table(
        "9. Renditions: 24 MP JPEG into 512, 256 and 128 px (+ BlurHash) from one decode",
        ["variant", "MB", "ms", "vs bare Pillow", "vs pyvips", "sizes written"],
    )
    labels = {
        "handler": "handler (make_renditions, BlurHash 4x3)",
        "pillow": "bare Pillow",
        "pyvips": "pyvips",
        "separate": "handler, 3 separate make_thumbnail",
    }
    for name, label in labels.items():
        out.add(
            label,
            f"{result.source_mb:.1f}",
            f"{result.wall[name] * 1000:.1f}",
            f"{result.wall[name] / result.wall['pillow']:.2f}x",
            f"{result.wall[name] / result.wall['pyvips']:.2f}x",
            " ".join(f"{w}x{h}" for w, h in result.sizes[name]),
        )
    out.notes.append(
        f"6000x4000 JPEG q90; every variant ends with three JPEGs q85. Medians of {runs} "
        "interleaved runs, in one process. The handler also converts colour to sRGB, applies "
        "the orientation and computes the BlurHash of the smallest rendition; bare Pillow "
        "draft-decodes and resizes to 512, then 256 and 128 from the one above; pyvips "
        "shrinks on load to 512 and resizes from it."
    )
    return out
