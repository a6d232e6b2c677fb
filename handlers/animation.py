"""Animated GIF and WebP sources as animated WebP thumbnails: pure CPU work, no storage.

Pillow composites every frame onto the full canvas as browsers show it (GIF disposal 1-3
and transparency, WebP blending and disposal), so a frame here is a whole picture. Each is
resized on its own, as soon as it is decoded, to the box the still path uses; only the small
frames are kept for the encoder, so what is held at once is one canvas's decode plus the
thumbnail-sized frames. That total is reserved in a decode budget before the first frame is
decoded, and the frame count is lowered to what the budget can ever hold.
"""

from __future__ import annotations

import io
import logging
import math
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Protocol

from PIL import GifImagePlugin, Image

logger = logging.getLogger(__name__)

# The source formats whose animation is kept. AVIF sequences and APNG stay first-frame stills.
ANIMATED_FORMATS = ("GIF", "WEBP")
# WebP stores the loop count in 16 bits; 0 is "forever" in both formats.
_MAX_LOOP = 65535

# Bytes per canvas pixel alive at the peak of one frame, beyond the kept small frames.
# GIF (Pillow's plugin): the composited canvas (RGB/RGBA, 4), the disposal copy of the
# frame's area, the frame's own palette image and its RGBA conversion while it is pasted,
# then our RGBA copy and the premultiplied copy resizing makes; not all at once. WebP
# (libwebp's animation decoder): its canvas and previous canvas, the frame bytes Pillow
# copies out and its image, and our two copies. Measured on 1920x1080 frames (peak RSS
# over the slack): GIF 11-12.3 bytes a pixel (disposal 2 the most), WebP 16.4.
_CANVAS_BYTES_PER_PIXEL = {"GIF": 14, "WEBP": 18}
# The WebP animation encoder's own canvases (previous, current, candidate sub-frames) at the
# small size: an allowance of 8.
_ENCODER_CANVASES = 8
# Decoder state, Python objects and the encoded output; as handlers.images' slack.
_SLACK = 8 * 1024 * 1024


class Budget(Protocol):
    """What is needed of the process's decode budget (handlers.memory.DecodeBudget):
    ``limit`` bytes at most at once (0: no limit), and a reservation held for a block."""

    @property
    def limit(self) -> int: ...

    def reserve(self, size: int, what: str) -> AbstractContextManager[None]: ...


@dataclass(frozen=True)
class Animation:
    """An encoded animated WebP and what it keeps of its source."""

    data: bytes
    width: int
    height: int
    durations: tuple[int, ...]  # per kept frame, in ms, as the source gave them
    loop: int  # WebP's: how many times it plays; 0 forever
    source_frames: int
    note: str  # for the outcome line: how many frames, and why fewer than the source's


@dataclass(frozen=True)
class Cost:
    """Predicted bytes held at once: ``fixed`` for any frame count, ``per_frame`` for each
    frame kept until the encoder runs."""

    fixed: int
    per_frame: int

    def total(self, frames: int) -> int:
        return self.fixed + frames * self.per_frame

    def frames_within(self, limit: int) -> int:
        """The most frames whose total fits in ``limit`` bytes."""
        return max(0, (limit - self.fixed) // self.per_frame)


def is_animated(image: Image.Image) -> bool:
    """Whether ``image`` (opened, not loaded) is a GIF or WebP of more than one frame."""
    return image.format in ANIMATED_FORMATS and getattr(image, "n_frames", 1) > 1


def thumbnail_size(source: tuple[int, int], size: int) -> tuple[int, int]:
    """The size Pillow's ``thumbnail((size, size))`` gives ``source``: the still path's box."""
    probe = Image.new("1", source)
    probe.thumbnail((size, size))
    return probe.size


def frame_cost(image: Image.Image, size: int) -> Cost:
    """What decoding ``image``'s frames one by one and keeping them resized to ``size`` holds
    at once, predicted from the header alone."""
    width, height = image.size
    small_width, small_height = thumbnail_size(image.size, size)
    per_pixel = _CANVAS_BYTES_PER_PIXEL.get(
        str(image.format), max(_CANVAS_BYTES_PER_PIXEL.values())
    )
    small = small_width * small_height * 4
    return Cost(
        fixed=width * height * per_pixel + _ENCODER_CANVASES * small + _SLACK, per_frame=small
    )


def animated_thumbnail(
    image: Image.Image,
    size: int,
    max_frames: int,
    quality: int,
    *,
    budget: Budget | None = None,
    finish: Callable[[Image.Image], Image.Image] | None = None,
) -> Animation:
    """Encode the first ``max_frames`` frames of ``image`` (an animated GIF or WebP, opened
    and not loaded), each resized to fit ``size`` x ``size``, as an animated lossy WebP of
    ``quality``, keeping every frame's duration and the loop count. ``finish`` runs on each
    small frame (colour conversion, orientation). With a ``budget``, fewer frames are kept
    when that many could never fit in it, and the decode and encode wait for room in it (or
    are refused, as the budget decides, when not even one frame fits)."""
    (animation,) = animated_renditions(
        image, size, max_frames, quality, budget=budget, finish=finish
    )
    return animation


def animated_renditions(
    image: Image.Image,
    size: int,
    max_frames: int,
    quality: int,
    *,
    budget: Budget | None = None,
    finish: Callable[[Image.Image], Image.Image] | None = None,
    shape: Callable[[Image.Image], list[Image.Image]] | None = None,
    copies: int = 0,
) -> list[Animation]:
    """``animated_thumbnail`` for several renditions from one decode of the frames: each
    frame is decoded once, resized to fit ``size`` and finished, then ``shape`` turns it into
    the renditions' frames (none: the frame itself is the one rendition). ``copies`` is how
    many new images ``shape`` makes of each frame (a crop, the smaller sizes); the reservation
    counts each as large as the decoded frame."""
    if max_frames < 1:
        raise ValueError(f"max_frames must be at least 1, not {max_frames}")
    source_frames = int(getattr(image, "n_frames", 1))
    decoded = frame_cost(image, size)
    cost = Cost(decoded.fixed, decoded.per_frame * (1 + copies))
    frames = min(source_frames, max_frames)
    if budget is not None and budget.limit > 0:
        frames = min(frames, max(1, cost.frames_within(budget.limit)))
    plural = "s" if frames != 1 else ""
    what = f"{image.size[0]}x{image.size[1]} {image.format} of {frames} frame{plural}"
    loop = webp_loop(image)
    # The small frames stay alive through the encode, beside the encoder's own canvases.
    with budget.reserve(cost.total(frames), what) if budget is not None else nullcontext():
        small, durations = _decode(image, frames, size, finish)
        if shape is None:
            per_output = [small]
        else:
            shaped = [shape(frame) for frame in small]
            per_output = [list(kept) for kept in zip(*shaped, strict=True)]
        encoded = [_encode(kept, durations, loop, quality) for kept in per_output]
    note = _note(frames, source_frames, max_frames)
    return [
        Animation(
            data=data,
            width=kept[0].width,
            height=kept[0].height,
            durations=tuple(durations),
            loop=loop,
            source_frames=source_frames,
            note=note,
        )
        for data, kept in zip(encoded, per_output, strict=True)
    ]


def webp_loop(image: Image.Image) -> int:
    """The WebP loop count that plays as browsers play the source. A GIF without the
    NETSCAPE extension plays once; its count N means N repeats (N + 1 plays), while WebP's
    counts plays; 0 is forever in both (libwebp's gif2webp maps them the same way)."""
    loop = image.info.get("loop")
    if image.format != "GIF":
        return int(loop) if isinstance(loop, int) and 0 <= loop <= _MAX_LOOP else 0
    if not isinstance(loop, int) or loop < 0:
        return 1
    return 0 if loop == 0 else min(loop + 1, _MAX_LOOP)


def _decode(
    image: Image.Image,
    frames: int,
    size: int,
    finish: Callable[[Image.Image], Image.Image] | None,
) -> tuple[list[Image.Image], list[int]]:
    small: list[Image.Image] = []
    durations: list[int] = []
    for canvas in _frames(image, frames):
        canvas.thumbnail((size, size))
        frame = finish(canvas) if finish is not None else canvas
        frame.info = {}  # no profile, EXIF or XMP from the source
        small.append(frame)
        durations.append(_duration(image))
    return small, durations


def _frames(image: Image.Image, frames: int) -> Iterator[Image.Image]:
    """Each composited frame as an RGBA copy of the canvas (GIF's first frame is a palette
    image, later ones RGB or RGBA; WebP's are RGB or RGBA)."""
    for index in range(frames):
        image.seek(index)
        _dispose_to_transparent(image)
        yield image.convert("RGBA")  # loads the frame; the duration is known from here on


def _dispose_to_transparent(image: Image.Image) -> None:
    """After a frame with disposal 2 ("restore to background"), browsers clear its area to
    transparent. Pillow paints the background colour there instead unless that frame names a
    transparent index of its own; where the canvas has alpha, clear it as browsers do. (An
    opaque canvas, a GIF whose first frame has no transparency, keeps Pillow's colour.)"""
    if (
        isinstance(image, GifImagePlugin.GifImageFile)
        and image.mode == "RGBA"
        and image.disposal_method == 2
        and image.dispose is not None
    ):
        image.dispose = Image.new("RGBA", image.dispose.size, (0, 0, 0, 0)).im


def _duration(image: Image.Image) -> int:
    duration = image.info.get("duration", 0)
    if not isinstance(duration, (int, float)) or not math.isfinite(duration) or duration < 0:
        return 0
    return round(duration)


def _encode(frames: list[Image.Image], durations: list[int], loop: int, quality: int) -> bytes:
    """Lossy animated WebP. libwebp's encoder merges a frame identical to the one before into
    it (durations added), so such runs come out as one longer frame."""
    buffer = io.BytesIO()
    frames[0].save(
        buffer,
        "WEBP",
        save_all=True,
        append_images=frames[1:],
        duration=durations,
        loop=loop,
        quality=quality,
        background=(0, 0, 0, 0),
    )
    return buffer.getvalue()


def _note(frames: int, source_frames: int, max_frames: int) -> str:
    if frames == source_frames:
        return f"animated, {frames} frames"
    reason = "THUMBNAIL_MAX_FRAMES" if frames == max_frames else "the decode budget"
    return f"animated, first {frames} of {source_frames} frames ({reason})"
