"""ICC profiles written byte by byte (ICC.1 v2 layout), for the colour tests and benchmarks.

``ImageCms.createProfile`` makes only sRGB, LAB and XYZ, so the wide-gamut, grey and CMYK
profiles a camera, a phone or a print shop embeds are built here from their published
numbers; no profile file is shipped or downloaded. Each builder says where its numbers come
from. Not deployed.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence

Matrix = tuple[tuple[float, ...], ...]
XYZ = tuple[float, float, float]

# The ICC profile connection space's white (ICC.1, 7.2.16): D50.
D50: XYZ = (0.9642, 1.0, 0.8249)
D65_XY = (0.3127, 0.3290)  # CIE 15 / IEC 61966-2-1
# Bradford cone response matrix (ICC.1 Annex E, Lam 1985).
_BRADFORD: Matrix = (
    (0.8951, 0.2664, -0.1614),
    (-0.7502, 1.7135, 0.0367),
    (0.0389, -0.0685, 1.0296),
)


def adobe_rgb() -> bytes:
    """Adobe RGB (1998): primaries, D65 white and gamma 563/256 from Adobe's "Adobe RGB (1998)
    Color Image Encoding" (version 2005-05), sections 4.3.1.1, 4.3.1.2 and 4.3.4.2."""
    primaries = ((0.64, 0.33), (0.21, 0.71), (0.15, 0.06))
    return rgb_profile("Adobe RGB (1998)-like test profile", primaries, _gamma_curve(563 / 256))


def display_p3() -> bytes:
    """Display P3 (Apple): DCI-P3 primaries (SMPTE EG 432-1) with the D65 white and the sRGB
    transfer curve (IEC 61966-2-1), as Apple's Display P3 profile defines it."""
    primaries = ((0.680, 0.320), (0.265, 0.690), (0.150, 0.060))
    return rgb_profile("Display P3-like test profile", primaries, _srgb_curve())


def grey_gamma(gamma: float = 2.2) -> bytes:
    """A grey profile with a pure power curve (what "Gray Gamma 2.2" profiles hold)."""
    tags = {
        b"desc": _desc(f"Gray gamma {gamma} test profile"),
        b"cprt": _text("No copyright, generated for tests"),
        b"wtpt": _xyz_tag(D50),
        b"kTRC": _gamma_curve(gamma),
    }
    return _profile(b"mntr", b"GRAY", b"XYZ ", tags)


def rgb_profile(description: str, primaries: Sequence[tuple[float, float]], curve: bytes) -> bytes:
    """A matrix/TRC RGB profile: colorants adapted from D65 to D50 with Bradford (ICC.1 F.3)."""
    to_xyz = _rgb_to_xyz(primaries, D65_XY)
    adapted = _multiply(_bradford(_xy_to_xyz(D65_XY), D50), to_xyz)
    red, green, blue = ((adapted[0][c], adapted[1][c], adapted[2][c]) for c in range(3))
    tags = {
        b"desc": _desc(description),
        b"cprt": _text("No copyright, generated for tests"),
        b"wtpt": _xyz_tag(D50),
        b"rXYZ": _xyz_tag(red),
        b"gXYZ": _xyz_tag(green),
        b"bXYZ": _xyz_tag(blue),
        b"rTRC": curve,
        b"gTRC": curve,
        b"bTRC": curve,
    }
    return _profile(b"mntr", b"RGB ", b"XYZ ", tags)


# Solid inks and paper on coated paper (ISO 12647-2:2004/Amd 1:2007, paper type 1, the
# values FOGRA39 characterises), CIELAB D50.
PAPER_LAB = (95.0, 0.0, -2.0)
INK_LAB = {
    "C": (55.0, -37.0, -50.0),
    "M": (48.0, 74.0, -3.0),
    "Y": (89.0, -5.0, 93.0),
    "K": (16.0, 0.0, 0.0),
}


def cmyk_print(grid: int = 5) -> bytes:
    """A CMYK output profile whose A2B0 table models print on coated paper.

    Each ink filters the paper's XYZ by its solid's ratio to paper (ISO 12647-2 solids
    above), partial coverage mixing linearly with bare paper and overprints multiplying: a
    simple subtractive model, coarse next to a measured FOGRA39 table but far from the naive
    "255 - C" the tests tell it apart from. B2A0 is only there because an output profile
    must carry one (CMYK from Lab lightness alone); nothing here converts to CMYK.
    """
    paper = _lab_to_xyz(PAPER_LAB)
    filters = {
        ink: tuple(i / p for i, p in zip(_lab_to_xyz(lab), paper, strict=True))
        for ink, lab in INK_LAB.items()
    }

    def lab_of(cmyk: Sequence[float]) -> Sequence[float]:
        xyz = list(paper)
        for ink, amount in zip("CMYK", cmyk, strict=True):
            for index in range(3):
                xyz[index] *= 1 - amount + amount * filters[ink][index]
        return _xyz_to_lab((xyz[0], xyz[1], xyz[2]))

    def cmyk_of(lab: Sequence[float]) -> Sequence[float]:
        return (0.0, 0.0, 0.0, 1.0 - lab[0] / 100.0)

    tags = {
        b"desc": _desc("CMYK coated print test profile"),
        b"cprt": _text("No copyright, generated for tests"),
        b"wtpt": _xyz_tag(_lab_to_xyz(PAPER_LAB)),
        b"A2B0": _lut16(4, 3, grid, lab_of, _encode_lab),
        b"B2A0": _lut16(3, 4, 2, lambda lab: cmyk_of(_decode_lab(lab)), _encode_unit),
    }
    return _profile(b"prtr", b"CMYK", b"Lab ", tags)


# ---- ICC structures ----------------------------------------------------------------------


def _profile(device_class: bytes, space: bytes, pcs: bytes, tags: dict[bytes, bytes]) -> bytes:
    offset = 128 + 4 + 12 * len(tags)
    table, body = [], b""
    for signature, data in tags.items():
        padded = data + b"\x00" * (-len(data) % 4)
        table.append(struct.pack(">4sII", signature, offset + len(body), len(data)))
        body += padded
    size = offset + len(body)
    header = (
        struct.pack(">I4sI4s4s4s", size, b"lcms", 0x02100000, device_class, space, pcs)
        + struct.pack(">6H", 2026, 1, 1, 0, 0, 0)
        + b"acsp"
        + b"\x00" * 24  # platform, flags, manufacturer, model, attributes
        + struct.pack(">I", 0)  # rendering intent: perceptual
        + b"".join(_s15(value) for value in D50)
        + b"test"
        + b"\x00" * 44  # profile id (v4 only) and reserved
    )
    assert len(header) == 128
    return header + struct.pack(">I", len(tags)) + b"".join(table) + body


def _s15(value: float) -> bytes:
    return struct.pack(">i", round(value * 65536))


def _xyz_tag(xyz: XYZ) -> bytes:
    return b"XYZ \x00\x00\x00\x00" + b"".join(_s15(value) for value in xyz)


def _text(text: str) -> bytes:
    return b"text\x00\x00\x00\x00" + text.encode("ascii") + b"\x00"


def _desc(text: str) -> bytes:
    ascii_text = text.encode("ascii") + b"\x00"
    return (
        b"desc\x00\x00\x00\x00"
        + struct.pack(">I", len(ascii_text))
        + ascii_text
        + struct.pack(">II", 0, 0)  # no Unicode description
        + struct.pack(">HB", 0, 0)  # no ScriptCode description
        + b"\x00" * 67
    )


def _gamma_curve(gamma: float) -> bytes:
    return b"curv\x00\x00\x00\x00" + struct.pack(">IH", 1, round(gamma * 256))


def _srgb_curve(entries: int = 1024) -> bytes:
    def decode(value: float) -> float:
        return value / 12.92 if value <= 0.04045 else ((value + 0.055) / 1.055) ** 2.4

    table = [round(decode(index / (entries - 1)) * 65535) for index in range(entries)]
    return b"curv\x00\x00\x00\x00" + struct.pack(f">I{entries}H", entries, *table)


def _lut16(
    inputs: int,
    outputs: int,
    grid: int,
    function: Callable[[Sequence[float]], Sequence[float]],
    encode: Callable[[Sequence[float]], Sequence[int]],
) -> bytes:
    """lut16Type (ICC.1 10.9): identity curves around a ``grid``-point table of ``function``
    sampled on [0, 1] per input, the first input varying slowest."""
    identity = struct.pack(">2H", 0, 65535)
    points = [0.0] * inputs
    samples: list[int] = []
    for index in range(grid**inputs):
        rest = index
        for channel in reversed(range(inputs)):
            points[channel] = (rest % grid) / (grid - 1)
            rest //= grid
        samples.extend(encode(function(points)))
    matrix = b"".join(_s15(value) for value in (1, 0, 0, 0, 1, 0, 0, 0, 1))
    return (
        b"mft2\x00\x00\x00\x00"
        + struct.pack(">4B", inputs, outputs, grid, 0)
        + matrix
        + struct.pack(">2H", 2, 2)
        + identity * inputs
        + struct.pack(f">{len(samples)}H", *samples)
        + identity * outputs
    )


def _encode_lab(lab: Sequence[float]) -> Sequence[int]:
    """ICC v2 16-bit Lab (ICC.1 10.9 note): L 0..100 -> 0..0xFF00, a/b -128..127.996 ->
    0..0xFFFF."""
    lightness, a, b = lab
    return (
        _clamp16(round(lightness * 0xFF00 / 100)),
        _clamp16(round((a + 128) * 256)),
        _clamp16(round((b + 128) * 256)),
    )


def _decode_lab(encoded: Sequence[float]) -> Sequence[float]:
    """The inverse of _encode_lab for table coordinates on [0, 1]."""
    return (
        encoded[0] * 65535 / 0xFF00 * 100,
        encoded[1] * 65535 / 256 - 128,
        encoded[2] * 65535 / 256 - 128,
    )


def _encode_unit(values: Sequence[float]) -> Sequence[int]:
    return tuple(_clamp16(round(max(0.0, min(1.0, value)) * 65535)) for value in values)


def _clamp16(value: int) -> int:
    return max(0, min(65535, value))


# ---- colour science ----------------------------------------------------------------------


def _xy_to_xyz(xy: tuple[float, float]) -> XYZ:
    x, y = xy
    return (x / y, 1.0, (1 - x - y) / y)


def _rgb_to_xyz(primaries: Sequence[tuple[float, float]], white: tuple[float, float]) -> Matrix:
    """The RGB -> XYZ matrix whose columns are the primaries scaled so RGB 1,1,1 is white
    (SMPTE RP 177)."""
    columns = [_xy_to_xyz(xy) for xy in primaries]
    unscaled = tuple(tuple(columns[c][r] for c in range(3)) for r in range(3))
    scale = _apply(_inverse(unscaled), _xy_to_xyz(white))
    return tuple(tuple(unscaled[r][c] * scale[c] for c in range(3)) for r in range(3))


def _bradford(source: XYZ, destination: XYZ) -> Matrix:
    cone_source = _apply(_BRADFORD, source)
    cone_destination = _apply(_BRADFORD, destination)
    scale = tuple(
        tuple((cone_destination[r] / cone_source[r]) if r == c else 0.0 for c in range(3))
        for r in range(3)
    )
    return _multiply(_inverse(_BRADFORD), _multiply(scale, _BRADFORD))


def _lab_to_xyz(lab: Sequence[float]) -> XYZ:
    lightness, a, b = lab
    fy = (lightness + 16) / 116
    fx, fz = fy + a / 500, fy - b / 200

    def inverse(t: float) -> float:
        return t**3 if t > 6 / 29 else 3 * (6 / 29) ** 2 * (t - 4 / 29)

    return (D50[0] * inverse(fx), D50[1] * inverse(fy), D50[2] * inverse(fz))


def _xyz_to_lab(xyz: XYZ) -> tuple[float, float, float]:
    def f(t: float) -> float:
        return t ** (1 / 3) if t > (6 / 29) ** 3 else t / (3 * (6 / 29) ** 2) + 4 / 29

    fx, fy, fz = (f(value / white) for value, white in zip(xyz, D50, strict=True))
    return (116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz))


def _multiply(left: Matrix, right: Matrix) -> Matrix:
    return tuple(
        tuple(sum(left[r][k] * right[k][c] for k in range(3)) for c in range(3)) for r in range(3)
    )


def _apply(matrix: Matrix, vector: XYZ) -> XYZ:
    x, y, z = (sum(matrix[r][k] * vector[k] for k in range(3)) for r in range(3))
    return (x, y, z)


def _inverse(m: Matrix) -> Matrix:
    (a, b, c), (d, e, f), (g, h, i) = m
    det = a * (e * i - f * h) - b * (d * i - f * g) + c * (d * h - e * g)
    return (
        ((e * i - f * h) / det, (c * h - b * i) / det, (b * f - c * e) / det),
        ((f * g - d * i) / det, (a * i - c * g) / det, (c * d - a * f) / det),
        ((d * h - e * g) / det, (b * g - a * h) / det, (a * e - b * d) / det),
    )
