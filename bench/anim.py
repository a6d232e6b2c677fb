"""Animated thumbnails: a 100-frame 480x270 GIF (and the same animation as WebP) through
``handlers.images.make_thumbnail`` against bare Pillow doing the same work (every frame
seeked, converted, thumbnailed, then one animated WebP encode at the same quality).

Time: both variants in this process, interleaved run by run, after one warm-up; medians.
Memory: each (input, variant) alone in a fresh interpreter (as bench/thumbs.py), beside what
``handlers.animation.frame_cost`` predicts and a decode budget would be asked for.
"""

from __future__ import annotations

import io
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from bench import images
from bench.common import Memory, Table, child_report, median, memory_of, mib, ms, ratio

SIZE = 128
MAX_PIXELS = 150_000_000
FRAMES = 100
FRAME_SIZE = (480, 270)
DURATION = 40  # ms, 25 frames a second
QUALITY = 80  # handlers.images.WEBP_QUALITY
RUNS = 7


def handler(data: bytes) -> bytes:
    from handlers.images import make_thumbnail

    return make_thumbnail(data, SIZE, MAX_PIXELS, "auto", max_frames=FRAMES).data


def bare_pillow(data: bytes) -> bytes:
    """Open, thumbnail every frame, save them as one animated WebP with their durations."""
    with Image.open(io.BytesIO(data)) as image:
        frames, durations = [], []
        for index in range(image.n_frames):
            image.seek(index)
            frame = image.convert("RGBA")
            frame.thumbnail((SIZE, SIZE))
            frames.append(frame)
            durations.append(image.info.get("duration", 0))
        out = io.BytesIO()
        frames[0].save(
            out,
            "WEBP",
            save_all=True,
            append_images=frames[1:],
            duration=durations,
            loop=image.info.get("loop", 0),
            quality=QUALITY,
        )
    return out.getvalue()


VARIANTS: dict[str, Callable[[bytes], bytes]] = {"handler": handler, "pillow": bare_pillow}


def animation(fmt: str, seed: int) -> bytes:
    """A camera pan across a photo-like picture, with a bar moving over it: every frame
    differs, and a GIF gets its own adaptive palette per frame."""
    width, height = FRAME_SIZE
    scene = images.photo((width * 2, height), seed=seed)
    frames = []
    for index in range(FRAMES):
        left = index * width // FRAMES
        frame = scene.crop((left, 0, left + width, height))
        bar = index * (width - 20) // FRAMES
        frame.paste((250, 250, 250), (bar, height // 3, bar + 20, 2 * height // 3))
        frames.append(frame.convert("P", palette=Image.Palette.ADAPTIVE) if fmt == "GIF" else frame)
    out = io.BytesIO()
    options = {"quality": 85} if fmt == "WEBP" else {}
    frames[0].save(
        out, fmt, save_all=True, append_images=frames[1:], duration=DURATION, loop=0, **options
    )
    return out.getvalue()


@dataclass
class Result:
    label: str
    size: int
    wall: dict[str, float]
    memory: dict[str, Memory]
    predicted: int  # bytes, handlers.animation.frame_cost(...).total(FRAMES)


CASES = [
    ("100-frame 480x270 GIF", lambda: animation("GIF", 31)),
    ("100-frame 480x270 WebP", lambda: animation("WEBP", 32)),
]


def _predicted(data: bytes) -> int:
    from handlers import animation as module

    with Image.open(io.BytesIO(data)) as image:
        return module.frame_cost(image, SIZE).total(FRAMES)


def measure(label: str, data: bytes, workdir: Path, runs: int) -> Result:
    path = workdir / (label.replace(" ", "_") + ".bin")
    path.write_bytes(data)
    walls: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for run in VARIANTS.values():
        run(data)  # warm-up
    variants = list(VARIANTS.items())
    for index in range(runs):
        shift = index % len(variants)
        for name, run in variants[shift:] + variants[:shift]:
            started = time.perf_counter()
            run(data)
            walls[name].append(time.perf_counter() - started)
    memory = {name: memory_of("bench.anim", [name, str(path)]) for name in VARIANTS}
    return Result(
        label,
        len(data),
        {name: median(values) for name, values in walls.items()},
        memory,
        _predicted(data),
    )


def run(log: Callable[[str], None], runs: int = RUNS) -> list[Result]:
    results = []
    with tempfile.TemporaryDirectory() as workdir:
        for label, make in CASES:
            log(f"   {label} ...")
            results.append(measure(label, make(), Path(workdir), runs))
    return results


def table(results: list[Result]) -> Table:
    result = Table(
        "8. Animated thumbnail (128 px animated WebP, q80, every frame kept)",
        [
            "input",
            "MB",
            "handler ms",
            "bare Pillow ms",
            "handler/bare",
            "handler MiB",
            "bare MiB",
            "predicted (budget) MiB",
        ],
    )
    for r in results:
        result.add(
            r.label,
            f"{r.size / 1e6:.1f}",
            ms(r.wall["handler"]),
            ms(r.wall["pillow"]),
            ratio(r.wall["handler"], r.wall["pillow"]),
            mib(r.memory["handler"].delta),
            mib(r.memory["pillow"].delta),
            mib(r.predicted),
        )
    result.notes.append(
        "ms: median wall time of the whole conversion (bytes in, WebP bytes out). MiB: peak RSS "
        "added, each run alone in a fresh interpreter (median of 3). predicted: what "
        "handlers.animation reserves in a decode budget for these 100 frames."
    )
    return result


def _child(variant: str, path: str) -> None:
    if variant == "handler":
        import handlers.images  # noqa: F401  (imports are not the case's memory)
    data = Path(path).read_bytes()
    child_report(lambda: VARIANTS[variant](data))


if __name__ == "__main__" and len(sys.argv) == 4 and sys.argv[1] == "child":
    _child(sys.argv[2], sys.argv[3])
