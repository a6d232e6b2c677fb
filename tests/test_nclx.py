"""HEIF/AVIF colour given only by an nclx box (CICP) is converted like an ICC-tagged source.

The reference for each nclx source is the same pixels tagged with an ICC profile built
independently (tools/icc.py) and taken through the existing ICC path. Colour difference is
CIE76 (Euclidean distance in CIELAB, D65 white): for saturated colours it reads larger than
CIEDE2000, so "within 2" in CIE76 is the stricter claim.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import pytest
from azure.storage.blob import BlobServiceClient
from PIL import Image, ImageCms

from handlers.images import make_thumbnail
from handlers.nclx import Cicp, profile_for, read_cicp
from handlers.thumbnails import thumbnail_name
from tests.support import images as gen
from tests.support.host import outcome_of
from tools import icc

LIMIT = 150_000_000
P3_RED = (255, 0, 0)  # beyond sRGB: both paths clip it to about sRGB red
P3_BRICK = (200, 60, 50)  # inside sRGB once converted: tells converted from untouched
BT2020_GREEN = (40, 220, 60)
BT2020 = ((0.708, 0.292), (0.170, 0.797), (0.131, 0.046))
_LAB = ImageCms.buildTransform(
    ImageCms.createProfile("sRGB"), ImageCms.createProfile("LAB", 6500), "RGB", "LAB"
)


def heic(colour: tuple[int, int, int], **colour_options: Any) -> bytes:
    return gen.encode(Image.new("RGB", (640, 480), colour), "HEIF", quality=95, **colour_options)


def avif(
    colour: tuple[int, int, int], primaries: int | None = None, transfer: int = 13, **options: Any
) -> bytes:
    """An AVIF from Pillow; its nclx box (Pillow writes 1/13/6) patched to other code points."""
    data = gen.encode(Image.new("RGB", (640, 480), colour), "AVIF", quality=95, **options)
    if primaries is None:
        return data
    at = data.index(b"colrnclx") + 8
    assert data[at : at + 4] == b"\x00\x01\x00\x0d"  # what is replaced is what we expect
    return data[:at] + bytes([0, primaries, 0, transfer]) + data[at + 4 :]


def centre(data: bytes) -> tuple[int, int, int]:
    result = make_thumbnail(data, 128, LIMIT)
    image = gen.open_bytes(result.data).convert("RGB")
    pixel = image.getpixel((image.width // 2, image.height // 2))
    assert isinstance(pixel, tuple)
    return (pixel[0], pixel[1], pixel[2])


def delta_e76(a: tuple[int, int, int], b: tuple[int, int, int]) -> float:
    pixels = Image.new("RGB", (2, 1))
    pixels.putdata([a, b])
    lab = ImageCms.applyTransform(pixels, _LAB)
    assert lab is not None
    (l1, a1, b1), (l2, a2, b2) = (lab.getpixel((x, 0)) for x in range(2))  # type: ignore[misc]
    # Pillow's 8-bit LAB: L scaled to 0..255, a and b offset by 128.
    return (((l1 - l2) * 100 / 255) ** 2 + (a1 - a2) ** 2 + (b1 - b2) ** 2) ** 0.5


@pytest.mark.parametrize("fmt", ["heic", "avif"])
@pytest.mark.parametrize("colour", [P3_RED, P3_BRICK])
def test_nclx_display_p3_lands_on_the_icc_result(fmt: str, colour: tuple[int, int, int]) -> None:
    if fmt == "heic":
        nclx_source = heic(
            colour, color_primaries=12, transfer_characteristics=13, matrix_coefficients=6
        )
        icc_source = heic(colour, icc_profile=icc.display_p3())
    else:
        nclx_source, icc_source = (
            avif(colour, primaries=12),
            avif(colour, icc_profile=icc.display_p3()),
        )
    from_nclx, from_icc = centre(nclx_source), centre(icc_source)
    assert delta_e76(from_nclx, from_icc) <= 2, (from_nclx, from_icc)
    if colour == P3_BRICK:  # taken as sRGB (the old reading) it would be far from both
        assert delta_e76(from_nclx, centre(avif(colour))) > 10


@pytest.mark.parametrize("fmt", ["heic", "avif"])
def test_nclx_bt2020_is_converted_too(fmt: str) -> None:
    profile = icc.rgb_profile("BT.2020 test profile", BT2020, icc._srgb_curve())
    if fmt == "heic":
        nclx_source = heic(
            BT2020_GREEN, color_primaries=9, transfer_characteristics=13, matrix_coefficients=6
        )
        icc_source = heic(BT2020_GREEN, icc_profile=profile)
    else:
        nclx_source, icc_source = (
            avif(BT2020_GREEN, primaries=9),
            avif(BT2020_GREEN, icc_profile=profile),
        )
    from_nclx, from_icc = centre(nclx_source), centre(icc_source)
    assert delta_e76(from_nclx, from_icc) <= 2, (from_nclx, from_icc)
    assert delta_e76(from_nclx, centre(avif(BT2020_GREEN))) > 10


@pytest.mark.parametrize(
    ("transfer", "says"),
    [
        (16, "nclx transfer 16 (PQ (SMPTE ST 2084), HDR) not supported"),
        (18, "nclx transfer 18 (HLG"),
    ],
)
def test_hdr_transfers_are_left_alone_and_said(transfer: int, says: str) -> None:
    source = avif(P3_BRICK, primaries=12, transfer=transfer)
    result = make_thumbnail(source, 128, LIMIT)
    assert result.note is not None and result.note.startswith(says)
    assert "taken as sRGB" in result.note
    assert delta_e76(centre(source), centre(avif(P3_BRICK))) <= 1  # values kept as decoded


def test_unspecified_transfer_assumes_srgb_and_says_so() -> None:
    source = avif(P3_BRICK, primaries=12, transfer=2)
    result = make_thumbnail(source, 128, LIMIT)
    assert result.note == "nclx transfer unspecified: sRGB curve assumed"
    assert delta_e76(centre(source), centre(avif(P3_BRICK, primaries=12))) <= 1
    assert delta_e76(centre(source), centre(avif(P3_BRICK))) > 10


@pytest.mark.parametrize(
    ("cicp", "note"),
    [
        (Cicp(1, 13, 6, True), None),  # sRGB: nothing to do, nothing to say
        (Cicp(2, 2, 2, True), None),  # all unspecified: sRGB, as every viewer takes it
        (Cicp(11, 17, 6, True), "nclx primaries 11 not supported: taken as sRGB"),
        (Cicp(12, 7, 6, True), "nclx transfer 7 not supported: taken as sRGB"),
    ],
)
def test_what_is_not_converted(cicp: Cicp, note: str | None) -> None:
    assert profile_for(cicp) == (None, note)


def test_an_icc_profile_wins_over_the_nclx_box() -> None:
    source = heic(P3_RED, icc_profile=icc.adobe_rgb())
    assert centre(source) == centre(heic(P3_RED, icc_profile=icc.adobe_rgb()))
    assert make_thumbnail(source, 128, LIMIT).note is None


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: data[:40],  # cut inside the meta box
        lambda data: data.replace(b"colrnclx", b"colrjunk"),
        lambda data: data.replace(b"ipco", b"ipcx"),
    ],
)
def test_unreadable_boxes_mean_no_nclx(damage: Callable[[bytes], bytes]) -> None:
    data = damage(avif(P3_RED, primaries=12))
    image = Image.open(io.BytesIO(avif(P3_RED, primaries=12)))
    assert read_cicp(image, data) is None


@pytest.mark.azurite
def test_create_thumbnail_converts_nclx_p3_and_reports_hdr(
    app_env: dict[str, str],
    containers: dict[str, str],
    upload_event: Callable[..., dict[str, Any]],
    blob_service: BlobServiceClient,
) -> None:
    images, thumbs = containers["images"], containers["thumbnails"]
    p3 = outcome_of(
        "create_thumbnail", upload_event(images, "phone.avif", avif(P3_BRICK, primaries=12))
    )
    hdr = outcome_of(
        "create_thumbnail",
        upload_event(images, "hdr.avif", avif(P3_RED, primaries=12, transfer=16)),
    )
    assert p3.status == hdr.status == "written"
    assert "nclx" not in p3.detail
    assert hdr.detail.endswith(
        "; nclx transfer 16 (PQ (SMPTE ST 2084), HDR) not supported: no tone mapping, "
        "decoded values taken as sRGB"
    )
    client = blob_service.get_blob_client(thumbs, thumbnail_name(images, "phone.avif"))
    stored = gen.open_bytes(client.download_blob().readall()).convert("RGB")
    pixel = stored.getpixel((stored.width // 2, stored.height // 2))
    assert isinstance(pixel, tuple)
    assert (
        delta_e76(
            (pixel[0], pixel[1], pixel[2]), centre(avif(P3_BRICK, icc_profile=icc.display_p3()))
        )
        <= 2
    )
