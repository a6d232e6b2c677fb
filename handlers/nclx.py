"""Colour given only by an nclx box (CICP code points of ITU-T H.273) as an ICC profile.

AVIF files, and some HEIC files, say their colour with three numbers instead of an embedded
ICC profile: primaries, transfer characteristics and matrix coefficients. The decoder already
used the matrix (YCbCr to RGB); the primaries and the transfer are what a viewer would need
to show the RGB right. For Display P3 and BT.2020 sources this module writes the equivalent
matrix/TRC ICC profile, so ``handlers.colour.to_srgb`` converts them exactly as it converts an
ICC-tagged source. HDR transfers (PQ, HLG) would need tone mapping, which is not done: such
images keep their decoded values (taken as sRGB), and the returned note says so.
"""

from __future__ import annotations

import logging
import struct
from dataclasses import dataclass
from functools import lru_cache

from PIL import Image

logger = logging.getLogger(__name__)

# H.273 colour primaries: red, green, blue and white chromaticities (x, y).
_D65 = (0.3127, 0.3290)
_PRIMARIES = {
    9: ("BT.2020", ((0.708, 0.292), (0.170, 0.797), (0.131, 0.046))),
    12: ("Display P3", ((0.680, 0.320), (0.265, 0.690), (0.150, 0.060))),
}
_SRGB_PRIMARIES = {1: "BT.709/sRGB", 2: "unspecified"}
# H.273 transfer characteristics we can express as a tone curve.
_SRGB_TRANSFER = 13
_TRANSFERS = {
    1: "BT.709",
    6: "BT.601",
    14: "BT.2020 10-bit",
    15: "BT.2020 12-bit",
    13: "sRGB",
    4: "gamma 2.2",
    5: "gamma 2.8",
    8: "linear",
}
_HDR = {16: "PQ (SMPTE ST 2084)", 18: "HLG (ARIB STD-B67)"}
_UNSPECIFIED = 2
# How far into the file the boxes are walked (the meta box comes first in practice).
_MAX_BOXES = 64
# The profile connection space's white (D50) and the Bradford cone matrix (ICC.1 Annex E).
_D50_XYZ = (0.9642, 1.0, 0.8249)
_BRADFORD = ((0.8951, 0.2664, -0.1614), (-0.7502, 1.7135, 0.0367), (0.0389, -0.0685, 1.0296))


@dataclass(frozen=True)
class Cicp:
    primaries: int
    transfer: int
    matrix: int
    full_range: bool


def source_profile(image: Image.Image, data: bytes) -> tuple[bytes | None, str | None]:
    """The ICC profile to convert ``image`` with (embedded, or written from its nclx box) and
    a note on what was assumed or is not supported (None when nothing was)."""
    embedded = image.info.get("icc_profile")
    if embedded or image.format not in ("AVIF", "HEIF") or image.mode not in ("RGB", "RGBA"):
        return embedded or None, None  # grey carries no primaries; an ICC profile wins
    cicp = read_cicp(image, data)
    if cicp is None:
        return None, None
    return profile_for(cicp)


def read_cicp(image: Image.Image, data: bytes) -> Cicp | None:
    """The nclx code points: pillow-heif reports them for HEIF; for AVIF, Pillow does not,
    so they are read from the file's first ``colr`` box of type ``nclx``."""
    nclx = image.info.get("nclx_profile")
    if isinstance(nclx, dict):
        try:
            return Cicp(
                int(nclx["color_primaries"]),
                int(nclx["transfer_characteristics"]),
                int(nclx["matrix_coefficients"]),
                bool(nclx["full_range_flag"]),
            )
        except (KeyError, TypeError, ValueError):
            return None
    if image.format == "AVIF":
        return _nclx_box(data)
    return None


def profile_for(cicp: Cicp) -> tuple[bytes | None, str | None]:
    """An ICC profile for the code points (None: take as sRGB) and why, if anything was
    assumed or left unconverted."""
    if cicp.transfer in _HDR:
        return None, (
            f"nclx transfer {cicp.transfer} ({_HDR[cicp.transfer]}, HDR) not supported: "
            "no tone mapping, decoded values taken as sRGB"
        )
    if cicp.primaries in _SRGB_PRIMARIES:
        return None, None  # as today: sRGB (BT.709 primaries), whatever the curve's label
    if cicp.primaries not in _PRIMARIES:
        return None, f"nclx primaries {cicp.primaries} not supported: taken as sRGB"
    transfer, note = cicp.transfer, None
    if transfer == _UNSPECIFIED:
        transfer, note = _SRGB_TRANSFER, "nclx transfer unspecified: sRGB curve assumed"
    elif transfer not in _TRANSFERS:
        return None, f"nclx transfer {transfer} not supported: taken as sRGB"
    return _profile(cicp.primaries, transfer), note


def _nclx_box(data: bytes) -> Cicp | None:
    """meta > iprp > ipco > colr('nclx') of an ISO base media file, or None."""
    meta = _child(data, 0, len(data), b"meta")
    if meta is None:
        return None
    iprp = _child(data, meta[0] + 4, meta[1], b"iprp")  # meta is a full box: skip version
    ipco = _child(data, *iprp, b"ipco") if iprp else None
    if ipco is None:
        return None
    start = ipco[0]
    while (colr := _child(data, start, ipco[1], b"colr")) is not None:
        body = data[colr[0] : colr[1]]
        if body[:4] == b"nclx" and len(body) >= 11:
            primaries, transfer, matrix, flags = struct.unpack(">HHHB", body[4:11])
            return Cicp(primaries, transfer, matrix, bool(flags & 0x80))
        start = colr[1]
    return None


def _child(data: bytes, start: int, end: int, kind: bytes) -> tuple[int, int] | None:
    """(body start, body end) of the first box of ``kind`` between ``start`` and ``end``."""
    position = start
    for _ in range(_MAX_BOXES):
        if position + 8 > end:
            return None
        size, box = struct.unpack(">I4s", data[position : position + 8])
        header = 8
        if size == 1 and position + 16 <= end:
            (size,) = struct.unpack(">Q", data[position + 8 : position + 16])
            header = 16
        elif size == 0:
            size = end - position
        if size < header or position + size > end:
            return None
        if box == kind:
            return position + header, position + size
        position += size
    return None


@lru_cache(maxsize=16)
def _profile(primaries: int, transfer: int) -> bytes:
    """A matrix/TRC ICC v2 display profile for H.273 primaries with a D65 white."""
    name, chromaticities = _PRIMARIES[primaries]
    logger.debug("nclx primaries %s (%s), transfer %s as an ICC profile", primaries, name, transfer)
    to_xyz = _rgb_to_xyz(chromaticities, _D65)
    adapt = _adaptation(_xyz_of(_D65), _D50_XYZ)
    colorants = _product(adapt, to_xyz)
    curve = _curve(transfer)
    description = f"nclx {name} primaries, {_TRANSFERS[transfer]} transfer"
    tags = [
        (b"desc", _desc(description)),
        (b"wtpt", _xyz(_D50_XYZ)),
        *(
            (tag, _xyz(tuple(colorants[row][column] for row in range(3))))
            for column, tag in enumerate((b"rXYZ", b"gXYZ", b"bXYZ"))
        ),
        (b"rTRC", curve),
        (b"gTRC", curve),
        (b"bTRC", curve),
    ]
    return _assemble(tags)


def _decode(transfer: int, value: float) -> float:
    """The H.273 transfer's inverse: encoded value to linear light, both on 0..1."""
    if transfer == 13:
        return value / 12.92 if value <= 0.04045 else ((value + 0.055) / 1.055) ** 2.4
    if transfer in (1, 6, 14, 15):
        return value / 4.5 if value < 0.081 else ((value + 0.099) / 1.099) ** (1 / 0.45)
    if transfer == 4:
        return float(value**2.2)
    if transfer == 5:
        return float(value**2.8)
    return value  # 8: linear


def _curve(transfer: int, entries: int = 1024) -> bytes:
    samples = [round(_decode(transfer, index / (entries - 1)) * 65535) for index in range(entries)]
    return b"curv" + bytes(4) + struct.pack(f">I{entries}H", entries, *samples)


def _assemble(tags: list[tuple[bytes, bytes]]) -> bytes:
    """Header (ICC.1 7.2), tag table and tag data, each tag on a 4-byte boundary."""
    table_end = 128 + 4 + 12 * len(tags)
    entries, body = b"", b""
    for signature, content in tags:
        entries += struct.pack(">4sII", signature, table_end + len(body), len(content))
        body += content + bytes(-len(content) % 4)
    size = table_end + len(body)
    header = struct.pack(">I4sI4s4s4s", size, b"none", 0x02100000, b"mntr", b"RGB ", b"XYZ ")
    header += bytes(12) + b"acsp" + bytes(24) + struct.pack(">I", 0)
    header += b"".join(_s15(value) for value in _D50_XYZ) + bytes(48)
    return header + struct.pack(">I", len(tags)) + entries + body


def _s15(value: float) -> bytes:
    return struct.pack(">i", round(value * 65536))


def _xyz(values: tuple[float, ...]) -> bytes:
    return b"XYZ " + bytes(4) + b"".join(_s15(value) for value in values)


def _desc(text: str) -> bytes:
    ascii_text = text.encode("ascii") + b"\x00"
    return b"desc" + bytes(4) + struct.pack(">I", len(ascii_text)) + ascii_text + bytes(8 + 3 + 67)


Matrix = tuple[tuple[float, float, float], ...]


def _xyz_of(xy: tuple[float, float]) -> tuple[float, float, float]:
    return (xy[0] / xy[1], 1.0, (1 - xy[0] - xy[1]) / xy[1])


def _rgb_to_xyz(
    chromaticities: tuple[tuple[float, float], ...], white: tuple[float, float]
) -> Matrix:
    """Columns: each primary's XYZ, scaled so that RGB (1, 1, 1) is the white."""
    columns = [_xyz_of(xy) for xy in chromaticities]
    matrix: Matrix = tuple((columns[0][r], columns[1][r], columns[2][r]) for r in range(3))
    weights = _times(_inverse(matrix), _xyz_of(white))
    return tuple((row[0] * weights[0], row[1] * weights[1], row[2] * weights[2]) for row in matrix)


def _adaptation(source: tuple[float, ...], target: tuple[float, ...]) -> Matrix:
    """Bradford chromatic adaptation from ``source`` white to ``target`` white."""
    cone_source, cone_target = _times(_BRADFORD, source), _times(_BRADFORD, target)
    gains = [cone_target[i] / cone_source[i] for i in range(3)]
    scaled: Matrix = tuple(
        (row[0] * gains[i], row[1] * gains[i], row[2] * gains[i]) for i, row in enumerate(_BRADFORD)
    )
    return _product(_inverse(_BRADFORD), scaled)


def _times(matrix: Matrix, vector: tuple[float, ...]) -> tuple[float, float, float]:
    x, y, z = (sum(matrix[r][k] * vector[k] for k in range(3)) for r in range(3))
    return (x, y, z)


def _product(left: Matrix, right: Matrix) -> Matrix:
    rows = []
    for r in range(3):
        a, b, c = (sum(left[r][k] * right[k][column] for k in range(3)) for column in range(3))
        rows.append((a, b, c))
    return tuple(rows)


def _inverse(m: Matrix) -> Matrix:
    (a, b, c), (d, e, f), (g, h, i) = m
    det = a * (e * i - f * h) - b * (d * i - f * g) + c * (d * h - e * g)
    return (
        ((e * i - f * h) / det, (c * h - b * i) / det, (b * f - c * e) / det),
        ((f * g - d * i) / det, (a * i - c * g) / det, (c * d - a * f) / det),
        ((d * h - e * g) / det, (b * g - a * h) / det, (a * e - b * d) / det),
    )
