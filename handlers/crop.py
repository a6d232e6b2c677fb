"""Where a ``cover`` thumbnail crops: the window libvips' ``entropy`` smartcrop would keep.

The rule (libvips ``vips_smartcrop`` with ``VIPS_INTERESTING_ENTROPY``): while the window is
larger than the target, compare the histogram entropy of the two edge slices along each axis
still too long and cut away the duller one. The slice is an eighth of the largest excess,
so it takes about eight steps; libvips scores a slice over all its bands (the mean of the
per-band entropies, plus a constant), with alpha premultiplied. libvips runs this on the image
already shrunk to cover the target; here it runs on a copy reduced to about that scale
(``_WORK_SIDE``), which keeps it to a few milliseconds whatever the decoded size.
"""

from __future__ import annotations

import math

from PIL import Image

Box = tuple[int, int, int, int]

# The working copy's shorter side is reduced (by an integer factor) to at most about this:
# the scale a default (128 px) thumbnail is cropped at, where libvips measures entropy.
_WORK_SIDE = 128
_STEPS = 8  # libvips aims for eight cuts along the axis that needs the most trimming
# Modes whose bands histogram() can score as they are.
_DIRECT = ("L", "RGB", "CMYK", "YCbCr", "LAB", "HSV")


def entropy_window(image: Image.Image, width: int, height: int) -> Box:
    """Return (left, top, right, bottom) of the largest ``width``:``height`` region of ``image``
    that libvips' entropy rule keeps; the whole image when it already has that shape."""
    if width < 1 or height < 1:
        raise ValueError(f"aspect must be positive, not {width}:{height}")
    full_w, full_h = image.size
    if full_w < 1 or full_h < 1:
        raise ValueError(f"image has no pixels ({full_w}x{full_h})")
    crop_w, crop_h = _fit(full_w, full_h, width, height)
    if (crop_w, crop_h) == (full_w, full_h):
        return (0, 0, full_w, full_h)
    factor = max(1, min(full_w, full_h) // _WORK_SIDE)
    work = _scoring_copy(image, factor)
    scale_x, scale_y = full_w / work.width, full_h / work.height
    target_w = max(1, min(work.width, round(crop_w / scale_x)))
    target_h = max(1, min(work.height, round(crop_h / scale_y)))
    left, top = _trim(work, target_w, target_h)
    # Back to the image's pixels: centre of the kept window, clamped so the box stays inside.
    centre_x = (left + target_w / 2) * scale_x
    centre_y = (top + target_h / 2) * scale_y
    out_left = min(max(0, round(centre_x - crop_w / 2)), full_w - crop_w)
    out_top = min(max(0, round(centre_y - crop_h / 2)), full_h - crop_h)
    return (out_left, out_top, out_left + crop_w, out_top + crop_h)


def _fit(full_w: int, full_h: int, width: int, height: int) -> tuple[int, int]:
    """The largest width:height box inside the image (one side always the image's own)."""
    if full_w * height > full_h * width:  # wider than the target: crop left/right
        return max(1, min(full_w, round(full_h * width / height))), full_h
    return full_w, max(1, min(full_h, round(full_w * height / width)))


def _scoring_copy(image: Image.Image, factor: int) -> Image.Image:
    """A reduced copy whose bands score like libvips' (alpha premultiplied, then dropped)."""
    if image.mode in _DIRECT:
        work = image
    elif image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        premultiplied = image.convert("RGBA").convert("RGBa")
        work = Image.merge("RGB", premultiplied.split()[:3])
    elif image.mode.startswith("I") or image.mode == "F":
        work = _eight_bit(image)
    else:  # P, 1, RGBX: what their pixels look like
        work = image.convert("RGB")
    return work.reduce(factor) if factor > 1 else work


def _eight_bit(image: Image.Image) -> Image.Image:
    """Deep greyscale stretched over 0..255 (clipping would turn most of it white or black)."""
    values = image.convert("F")
    low, high = values.getextrema()
    assert isinstance(low, float) and isinstance(high, float)
    scale = 255.0 / (high - low) if high > low else 0.0
    return values.point(lambda value: (value - low) * scale).convert("L")


def _trim(work: Image.Image, target_w: int, target_h: int) -> tuple[int, int]:
    """libvips' loop: cut the lower-entropy edge slice off each axis still too long."""
    left = top = 0
    width, height = work.size
    max_slice = max(math.ceil((width - target_w) / _STEPS), math.ceil((height - target_h) / _STEPS))
    while width > target_w or height > target_h:
        slice_w = min(width - target_w, max_slice)
        slice_h = min(height - target_h, max_slice)
        if slice_w > 0:
            first = _entropy(work, (left, top, left + slice_w, top + height))
            last = _entropy(work, (left + width - slice_w, top, left + width, top + height))
            width -= slice_w
            if first < last:
                left += slice_w
        if slice_h > 0:
            first = _entropy(work, (left, top, left + width, top + slice_h))
            last = _entropy(work, (left, top + height - slice_h, left + width, top + height))
            height -= slice_h
            if first < last:
                top += slice_h
    return left, top


def _entropy(image: Image.Image, box: Box) -> float:
    """-sum(p log2 p) over the region's histogram of all bands together, as libvips scores."""
    counts = image.crop(box).histogram()
    total = sum(counts)
    if total == 0:
        return 0.0
    weighted = sum(count * math.log2(count) for count in counts if count)
    return math.log2(total) - weighted / total
