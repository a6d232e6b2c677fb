"""Entropy crop: how well ``handlers.crop.entropy_window`` agrees with libvips' own
``thumbnail(..., crop="entropy")`` on real photos, and what it costs next to pyvips.

The photos are the ones scikit-image ships inside its wheel (bench/requirements.txt), read
from the installed package: nothing is downloaded. libvips does not report where it cropped,
so its window is found by sliding its cropped thumbnail along the same image shrunk to cover
the target (uncropped, by the same ``thumbnail`` call) and keeping the offset that matches
best. Both windows are compared in the source's pixels.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageChops

from bench.common import Table, median
from handlers.crop import entropy_window
from handlers.images import make_renditions
from handlers.renditions import Shape

# Photographs among scikit-image's bundled data (its README credits each); screenshots,
# textures, charts and synthetic pictures are left out.
PHOTOS = (
    "astronaut.png",
    "camera.png",
    "chelsea.png",
    "coffee.png",
    "rocket.jpg",
    "motorcycle_left.png",
    "hubble_deep_field.jpg",
    "coins.png",
    "moon.png",
    "retina.jpg",
    "ihc.png",
)
MAX_PIXELS = 150_000_000  # THUMBNAIL_MAX_PIXELS' default
# Target boxes (the thumbnail's width x height): square, landscape and portrait covers.
TARGETS = ((128, 128), (128, 72), (72, 128), (96, 128))
RUNS = 7
IOU_TARGET = 0.9


@dataclass
class Case:
    photo: str
    size: tuple[int, int]  # the source's
    target: tuple[int, int]
    ours: tuple[float, float, float, float]  # window in source pixels
    vips: tuple[float, float, float, float]
    iou: float
    window_ms: float  # entropy_window alone, on the decoded image
    pillow_ms: float  # open, decode, entropy_window, crop, resize, encode
    pyvips_ms: float  # pyvips thumbnail(crop="entropy") from the file, encode


def photos_dir() -> Path:
    import skimage

    return Path(skimage.__file__).parent / "data"


def run(log: Callable[[str], None], runs: int = RUNS) -> list[Case]:
    folder = photos_dir()
    cases = []
    for name in PHOTOS:
        path = folder / name
        for target in TARGETS:
            with Image.open(path) as image:
                size = image.size
            if size[0] * target[1] == size[1] * target[0]:
                continue  # same shape: nothing to crop
            cases.append(_case(path, size, target, runs))
            log(f"   {name} {target[0]}x{target[1]}: IoU {cases[-1].iou:.3f}")
    return cases


def _case(path: Path, size: tuple[int, int], target: tuple[int, int], runs: int) -> Case:
    ours = _ours(path, target)
    vips = _vips_window(path, size, target)
    timings: dict[str, list[float]] = {"window": [], "pillow": [], "pyvips": []}
    for _ in range(runs):  # interleaved, so load drifts hit both alike
        with Image.open(path) as image:
            image.load()
            started = time.perf_counter()
            entropy_window(image, *target)
            timings["window"].append(time.perf_counter() - started)
        started = time.perf_counter()
        _pillow_cover(path, target)
        timings["pillow"].append(time.perf_counter() - started)
        started = time.perf_counter()
        _pyvips_cover(path, target)
        timings["pyvips"].append(time.perf_counter() - started)
    return Case(
        path.name,
        size,
        target,
        ours,
        vips,
        _iou(ours, vips),
        median(timings["window"]) * 1000,
        median(timings["pillow"]) * 1000,
        median(timings["pyvips"]) * 1000,
    )


def _shape(target: tuple[int, int]) -> Shape:
    """The handler's settings for this target: THUMBNAIL_FIT=cover, THUMBNAIL_ASPECT=target."""
    return Shape((max(target),), "cover", target)


def _ours(path: Path, target: tuple[int, int]) -> tuple[float, float, float, float]:
    """Our window as the handler finds it: on the image resized to the shape's decode size
    (draft-reduced for JPEG), which is what ``make_renditions`` crops."""
    shape = _shape(target)
    with Image.open(path) as image:
        full = image.size
        decode = shape.decode_size(full)
        image.thumbnail((decode, decode))
        left, top, right, bottom = entropy_window(image, *target)
        sx, sy = full[0] / image.width, full[1] / image.height
    return (left * sx, top * sy, right * sx, bottom * sy)


def _pillow_cover(path: Path, target: tuple[int, int]) -> bytes:
    """The handler's own cover thumbnail (decode, colour, crop, resize, JPEG encode)."""
    (made,) = make_renditions(path.read_bytes(), _shape(target), MAX_PIXELS, "jpeg").items
    return made.data


def _pyvips_cover(path: Path, target: tuple[int, int]) -> bytes:
    import pyvips

    thumb = pyvips.Image.thumbnail(str(path), target[0], height=target[1], crop="entropy")
    return bytes(thumb.write_to_buffer(".jpg", Q=85))


def _vips_window(
    path: Path, size: tuple[int, int], target: tuple[int, int]
) -> tuple[float, float, float, float]:
    """Where libvips' entropy thumbnail was cut from, in source pixels."""
    import pyvips

    scale = max(target[0] / size[0], target[1] / size[1])
    cover = (math.ceil(size[0] * scale - 1e-9), math.ceil(size[1] * scale - 1e-9))
    cropped = pyvips.Image.thumbnail(str(path), target[0], height=target[1], crop="entropy")
    whole = pyvips.Image.thumbnail(str(path), cover[0], height=cover[1], size="force")
    crop_img, whole_img = _to_pillow(cropped), _to_pillow(whole)
    best, best_score = (0, 0), math.inf
    for left in range(whole_img.width - crop_img.width + 1):
        for top in range(whole_img.height - crop_img.height + 1):
            window = whole_img.crop((left, top, left + crop_img.width, top + crop_img.height))
            score = sum(ImageChops.difference(window, crop_img).convert("L").histogram()[8:])
            if score < best_score:
                best, best_score = (left, top), score
    sx, sy = size[0] / whole_img.width, size[1] / whole_img.height
    left, top = best
    return (
        left * sx,
        top * sy,
        (left + crop_img.width) * sx,
        (top + crop_img.height) * sy,
    )


def _to_pillow(image: object) -> Image.Image:
    import pyvips

    assert isinstance(image, pyvips.Image)
    if image.bands == 1:
        image = image.colourspace("srgb")
    image = image[0:3] if image.bands > 3 else image
    data = image.cast("uchar").write_to_memory()
    return Image.frombytes("RGB", (image.width, image.height), data)


def _iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union else 1.0


def table(cases: list[Case], runs: int = RUNS) -> Table:
    result = Table(
        "6. Entropy crop: agreement with pyvips thumbnail(crop=entropy) and time",
        [
            "photo",
            "source",
            "target",
            "IoU",
            "window ms",
            "handler cover ms",
            "pyvips ms",
            "handler/pyvips",
        ],
    )
    for case in cases:
        result.add(
            case.photo,
            f"{case.size[0]}x{case.size[1]}",
            f"{case.target[0]}x{case.target[1]}",
            f"{case.iou:.3f}",
            f"{case.window_ms:.2f}",
            f"{case.pillow_ms:.1f}",
            f"{case.pyvips_ms:.1f}",
            f"{case.pillow_ms / case.pyvips_ms:.2f}x",
        )
    result.add(
        "median",
        "",
        "",
        f"{summary(cases)['iou']:.3f}",
        f"{summary(cases)['window_ms']:.2f}",
        f"{summary(cases)['pillow_ms']:.1f}",
        f"{summary(cases)['pyvips_ms']:.1f}",
        "",
    )
    result.notes.append(
        "Photos: scikit-image's bundled data (read from the installed wheel). IoU of the two "
        "crop windows in source pixels; window ms: entropy_window alone on the decoded image; "
        "handler cover: make_renditions with THUMBNAIL_FIT=cover and the target's aspect (decode, "
        "sRGB, entropy window, crop, resize, JPEG encode); pyvips: "
        f"thumbnail(crop='entropy') and JPEG encode. Medians of {runs} interleaved runs."
    )
    return result


def summary(cases: list[Case]) -> dict[str, float]:
    return {
        "iou": median([c.iou for c in cases]),
        "window_ms": median([c.window_ms for c in cases]),
        "pillow_ms": median([c.pillow_ms for c in cases]),
        "pyvips_ms": median([c.pyvips_ms for c in cases]),
    }
