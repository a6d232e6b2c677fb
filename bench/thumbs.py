"""Thumbnail cost per image on the handler's code path (``handlers.images.make_thumbnail`` on
bytes, no network) against the bare Pillow pipeline and pyvips, and how it grows with size.

Time: every variant in this process, interleaved run by run in a rotating order, after one
warm-up; medians of wall and CPU time (CPU counts every thread, so pyvips' worker threads
show there). Memory:
each (image, variant) runs alone in a fresh interpreter, three times; the figure is the
median of that child's peak RSS minus its RSS just before the case (imports done, input
bytes already read), i.e. what the case itself added.
"""

from __future__ import annotations

import io
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from bench import images
from bench.common import Memory, Table, child_report, median, memory_of, mib, ms, ratio

SIZE = 128
MAX_PIXELS = 150_000_000  # THUMBNAIL_MAX_PIXELS' default
QUALITY = 85  # handlers.images.JPEG_QUALITY


def handler(data: bytes) -> bytes:
    from handlers.images import make_thumbnail

    return make_thumbnail(data, SIZE, MAX_PIXELS).data


def bare_pillow(data: bytes) -> bytes:
    """What the seed does, made correct for any mode: open, thumbnail, save."""
    with Image.open(io.BytesIO(data)) as image:
        image.thumbnail((SIZE, SIZE))
        result = image if image.mode in ("RGB", "L") else image.convert("RGB")
        out = io.BytesIO()
        result.save(out, "JPEG", quality=QUALITY)
    return out.getvalue()


def vips(data: bytes) -> bytes:
    import pyvips

    return bytes(pyvips.Image.thumbnail_buffer(data, SIZE).write_to_buffer(f".jpg[Q={QUALITY}]"))


VARIANTS: dict[str, Callable[[bytes], bytes]] = {
    "handler": handler,
    "pillow": bare_pillow,
    "pyvips": vips,
}


def _setup_variant(name: str) -> None:
    warnings.simplefilter("ignore", Image.DecompressionBombWarning)
    if name == "pillow":
        import pillow_heif

        pillow_heif.register_heif_opener()  # the bare pipeline for HEIC: pillow-heif + Pillow
    elif name == "pyvips":
        import pyvips

        pyvips.cache_set_max(0)  # every run decodes again, as a new event would
    elif name == "handler":
        import handlers.images  # noqa: F401


@dataclass
class Case:
    label: str
    make: Callable[[], bytes]
    runs: int
    variants: tuple[str, ...] = tuple(VARIANTS)


@dataclass
class Result:
    label: str
    size: int
    wall: dict[str, float]
    cpu: dict[str, float]
    memory: dict[str, Memory]


def measure(case: Case, workdir: Path) -> Result:
    data = case.make()
    path = workdir / (case.label.replace(" ", "_").replace("/", "_") + ".bin")
    path.write_bytes(data)
    chosen = {name: VARIANTS[name] for name in case.variants}
    for name in chosen:
        _setup_variant(name)
    walls: dict[str, list[float]] = {name: [] for name in chosen}
    cpus: dict[str, list[float]] = {name: [] for name in chosen}
    for run in chosen.values():
        run(data)  # warm-up: code paths, allocator
    variants = list(chosen.items())
    for index in range(case.runs):
        # Rotate the order: whichever variant ran just after pyvips would otherwise pay for
        # libvips' worker threads winding down (process CPU time counts every thread).
        shift = index % len(variants)
        for name, run in variants[shift:] + variants[:shift]:
            wall, cpu = time.perf_counter(), time.process_time()
            run(data)
            walls[name].append(time.perf_counter() - wall)
            cpus[name].append(time.process_time() - cpu)
    memory = {name: memory_of("bench.thumbs", [name, str(path)]) for name in chosen}
    return Result(
        case.label,
        len(data),
        {name: median(values) for name, values in walls.items()},
        {name: median(values) for name, values in cpus.items()},
        memory,
    )


PER_IMAGE = [
    Case("6000x4000 JPEG q90", lambda: images.jpeg((6000, 4000), seed=1), runs=11),
    Case("1920x1080 JPEG q90", lambda: images.jpeg((1920, 1080), seed=2), runs=41),
    Case("4000x3000 PNG", lambda: images.png((4000, 3000), seed=3), runs=15),
]

# Phone, camera and print-shop files against the bare library pipeline (pillow-heif + Pillow
# for HEIC, Pillow for AVIF and JPEG: open, thumbnail, save; no colour management).
BARE = ("handler", "pillow")
FORMATS = [
    Case(
        "12 MP HEIC, 320 px thumbnail inside (iPhone-like)",
        lambda: images.heic((4032, 3024), seed=21, thumbnail=320),
        runs=7,
        variants=BARE,
    ),
    Case(
        "12 MP HEIC, no thumbnail inside",
        lambda: images.heic((4032, 3024), seed=22),
        runs=7,
        variants=BARE,
    ),
    Case("12 MP AVIF", lambda: images.avif((4032, 3024), seed=23), runs=15, variants=BARE),
    Case(
        "24 MP Adobe RGB JPEG q90",
        lambda: images.adobe_rgb_jpeg((6000, 4000), seed=24),
        runs=9,
        variants=BARE,
    ),
]

SCALE = [
    Case("1 MP JPEG (1224x816)", lambda: images.jpeg((1224, 816), seed=11), runs=11),
    Case("4 MP JPEG (2448x1632)", lambda: images.jpeg((2448, 1632), seed=12), runs=9),
    Case("16 MP JPEG (4896x3264)", lambda: images.jpeg((4896, 3264), seed=13), runs=7),
    Case("64 MP JPEG (9792x6528)", lambda: images.jpeg((9792, 6528), seed=14), runs=3),
    Case("100 MP JPEG (12240x8160)", lambda: images.jpeg((12240, 8160), seed=15), runs=3),
]


# A table column: its header, and how a result's cell reads.
Column = tuple[str, Callable[[Result], str]]
IMAGE: list[Column] = [("image", lambda r: r.label), ("MB", lambda r: f"{r.size / 1e6:.1f}")]


def wall_ms(label: str, variant: str) -> Column:
    return f"{label} ms", lambda r: ms(r.wall[variant])


def cpu_ms(label: str, variant: str) -> Column:
    return f"{label} CPU ms", lambda r: ms(r.cpu[variant])


def added_mib(label: str, variant: str) -> Column:
    return f"{label} MiB", lambda r: mib(r.memory[variant].delta)


def each(column: Callable[[str, str], Column], variants: list[tuple[str, str]]) -> list[Column]:
    """``column`` for every (label, variant) pair."""
    return [column(label, variant) for label, variant in variants]


# (label, variant): the three pipelines side by side, and the handler against the bare one.
ALL_THREE = [("handler", "handler"), ("Pillow", "pillow"), ("pyvips", "pyvips")]
AGAINST_BARE = [("handler", "handler"), ("bare", "pillow")]


def table_of(title: str, columns: list[Column], results: list[Result]) -> Table:
    """One row per result; each header stays beside the cell it names."""
    table = Table(title, [header for header, _ in columns])
    for r in results:
        table.add(*(cell(r) for _, cell in columns))
    return table


def per_image_table(results: list[Result]) -> Table:
    columns = [
        *IMAGE,
        *each(wall_ms, ALL_THREE),
        ("handler/Pillow", lambda r: ratio(r.wall["handler"], r.wall["pillow"])),
        ("handler/pyvips", lambda r: ratio(r.wall["handler"], r.wall["pyvips"])),
        *each(cpu_ms, ALL_THREE),
        *each(added_mib, ALL_THREE),
        (
            "mem handler/Pillow",
            lambda r: ratio(r.memory["handler"].delta, r.memory["pillow"].delta),
        ),
    ]
    table = table_of(
        "1. Thumbnail per image (128 px, handler code path, no network)", columns, results
    )
    table.notes.append(
        "ms: median wall time; CPU ms: median process CPU time (all threads). MiB: peak RSS "
        "added by the case, each run alone in a fresh interpreter (median of 3)."
    )
    return table


def formats_table(results: list[Result]) -> Table:
    columns = [
        *IMAGE,
        *each(wall_ms, AGAINST_BARE),
        ("handler/bare", lambda r: ratio(r.wall["handler"], r.wall["pillow"])),
        *each(cpu_ms, AGAINST_BARE),
        ("CPU handler/bare", lambda r: ratio(r.cpu["handler"], r.cpu["pillow"])),
        *each(added_mib, AGAINST_BARE),
    ]
    table = table_of(
        "1b. HEIC, AVIF and a wide-gamut JPEG against the bare library pipeline (128 px)",
        columns,
        results,
    )
    table.notes.append(
        "bare: register pillow-heif, Image.open, thumbnail(), save as JPEG q85; it neither "
        "converts colours nor asks for the embedded thumbnail in the photo's shape, which the "
        "handler does (so the iPhone-like HEIC decodes 320x240 instead of 12 MP). The handler "
        "converts the Adobe RGB thumbnail to sRGB with littlecms. Timing and memory as in 1."
    )
    return table


def scale_table(results: list[Result]) -> Table:
    columns = [
        *IMAGE,
        *each(wall_ms, ALL_THREE),
        cpu_ms("handler", "handler"),
        added_mib("handler", "handler"),
        ("handler peak RSS MiB", lambda r: mib(r.memory["handler"].peak)),
        added_mib("Pillow", "pillow"),
        added_mib("pyvips", "pyvips"),
    ]
    table = table_of(
        "4. How cost grows with image size (JPEG q90, 128 px thumbnail)", columns, results
    )
    table.notes.append(
        f"THUMBNAIL_MAX_PIXELS at its default ({MAX_PIXELS:,}): the 100 MP image is accepted. "
        "Peak RSS is the whole child interpreter (Python, Pillow, the input bytes)."
    )
    return table


def run(cases: list[Case], log: Callable[[str], None]) -> list[Result]:
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-thumbs-") as workdir:
        for case in cases:
            started = time.perf_counter()
            results.append(measure(case, Path(workdir)))
            log(f"  {case.label}: {time.perf_counter() - started:.0f} s")
    return results


def _child(variant: str, path: str) -> None:
    _setup_variant(variant)
    data = Path(path).read_bytes()
    child_report(lambda: VARIANTS[variant](data))


if __name__ == "__main__" and len(sys.argv) == 4 and sys.argv[1] == "child":
    _child(sys.argv[2], sys.argv[3])
