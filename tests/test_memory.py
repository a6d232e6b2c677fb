"""The decode budget: the budget itself under threads, what a decode reserves, and what
create_thumbnail comes to when the budget is full or too small, against a real Azurite."""

from __future__ import annotations

import io
import os
import random
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from PIL import Image

from handlers import memory, sources
from handlers.context import AppContext, get_context, reset_context
from handlers.decode_cost import DECODE_SLACK
from handlers.errors import (
    DecodeBusyError,
    InvalidBlobError,
    PermanentError,
    TooLargeToDecodeError,
    TransientError,
)
from handlers.images import make_thumbnail
from handlers.memory import DecodeBudget, MiB
from handlers.settings import DEFAULTS, Settings
from tests.support import images as gen
from tests.support.host import outcome_of
from tests.support.polling import poll
from tools.counting_proxy import CountingProxy, counting_proxy

LIMIT = 150_000_000
Upload = Callable[..., dict[str, Any]]


@contextmanager
def held(budget: DecodeBudget, size: int) -> Iterator[None]:
    """``size`` bytes reserved by another thread (another event's decode) until the block
    ends."""
    taken, release = threading.Event(), threading.Event()

    def hold() -> None:
        with budget.reserve(size, "another image"):
            taken.set()
            release.wait(30)

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    assert taken.wait(5), "the other decode never got its reservation"
    try:
        yield
    finally:
        release.set()
        thread.join(5)


# --- The budget ------------------------------------------------------------------------------


def test_fits_alongside_others_and_releases() -> None:
    budget = DecodeBudget(100)
    with held(budget, 60):
        with budget.reserve(40, "image"):
            assert budget.in_use == 100
        assert budget.in_use == 60
    assert budget.in_use == 0
    assert budget.peak == 100


def test_waits_for_room_then_proceeds() -> None:
    budget = DecodeBudget(100, wait_seconds=30)
    got: list[int] = []
    taken, release = threading.Event(), threading.Event()

    def first() -> None:
        with budget.reserve(80, "first"):
            taken.set()
            release.wait(30)

    def second() -> None:
        with budget.reserve(40, "second"):
            got.append(budget.in_use)

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    threads[0].start()
    assert taken.wait(5)
    threads[1].start()
    poll(lambda: budget.waiting == 1, 5, "the second decode to wait")
    assert got == []
    release.set()
    for thread in threads:
        thread.join(10)
    assert got == [40], "the second decode ran while the first still held its bytes"
    assert budget.in_use == 0


def test_waits_a_bounded_time_then_fails_transiently() -> None:
    budget = DecodeBudget(100, wait_seconds=0.2)
    with held(budget, 80):
        with pytest.raises(DecodeBusyError) as caught, budget.reserve(40, "12000x8000 RGB PNG"):
            pytest.fail("reserved more than the budget holds")
        assert isinstance(caught.value, TransientError)
        assert "12000x8000 RGB PNG" in str(caught.value)
        assert budget.in_use == 80 and budget.waiting == 0
    assert budget.in_use == 0


def test_larger_than_the_whole_budget_fails_permanently_without_waiting() -> None:
    budget = DecodeBudget(100 * MiB, wait_seconds=60)  # a wait would hang the test
    with (
        pytest.raises(TooLargeToDecodeError) as caught,
        budget.reserve(101 * MiB, "20000x20000 RGBA PNG"),
    ):
        pytest.fail("reserved more than the budget holds")
    assert isinstance(caught.value, PermanentError)
    message = str(caught.value)
    assert "20000x20000 RGBA PNG" in message and "THUMBNAIL_DECODE_BUDGET_MB" in message
    assert "101 MB" in message and "100 MB" in message
    assert budget.in_use == 0


def test_released_when_the_block_raises() -> None:
    budget = DecodeBudget(100)
    with pytest.raises(RuntimeError), budget.reserve(70, "image"):
        raise RuntimeError("decoder failed")
    assert budget.in_use == 0
    with budget.reserve(100, "image"):  # the whole budget is free again
        pass


def test_waiters_are_served_in_arrival_order() -> None:
    """A small decode arriving after a large waiting one does not overtake it, or a stream
    of small images would starve a large one."""
    budget = DecodeBudget(100, wait_seconds=30)
    order: list[str] = []
    taken, release = threading.Event(), threading.Event()

    def hold() -> None:
        with budget.reserve(60, "holder"):
            taken.set()
            release.wait(30)

    def decode(name: str, size: int) -> None:
        with budget.reserve(size, name):
            order.append(name)

    holder = threading.Thread(target=hold)
    holder.start()
    assert taken.wait(5)
    large = threading.Thread(target=decode, args=("large", 80))
    large.start()
    poll(lambda: budget.waiting == 1, 5, "the large decode to wait")
    small = threading.Thread(target=decode, args=("small", 30))  # would fit beside the holder
    small.start()
    poll(lambda: budget.waiting == 2, 5, "the small decode to queue behind it")
    assert order == []
    release.set()
    for thread in (holder, large, small):
        thread.join(10)
    assert order == ["large", "small"]


def test_never_over_the_limit_under_many_threads() -> None:
    budget = DecodeBudget(1000, wait_seconds=30)
    lock = threading.Lock()
    inside = [0, 0]  # bytes held right now, most ever held (counted by the decodes)
    rng = random.Random(7)
    sizes = [rng.randint(1, 600) for _ in range(200)]

    def decode(size: int) -> None:
        with budget.reserve(size, "image"):
            with lock:
                inside[0] += size
                inside[1] = max(inside[1], inside[0])
            threading.Event().wait(0.001)
            with lock:
                inside[0] -= size

    threads = [threading.Thread(target=decode, args=(size,)) for size in sizes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert inside[1] <= 1000 and budget.peak <= 1000
    assert inside[1] > 600, "the decodes never overlapped: the test shows nothing"
    assert budget.in_use == 0 and budget.waiting == 0


def test_zero_turns_it_off_but_still_counts() -> None:
    budget = DecodeBudget(0)
    with budget.reserve(10**12, "image"), budget.reserve(10**12, "image"):
        assert budget.in_use == 2 * 10**12
    assert budget.peak == 2 * 10**12 and budget.in_use == 0


def test_shared_budget_is_one_per_value() -> None:
    assert memory.shared(1024) is memory.shared(1024)
    assert memory.shared(1024).limit == 1024 * MiB
    assert not memory.shared(0).enabled


# Four threads decode 64 MiB images one after another, each keeping a small result, after one
# 32 MiB image has moved glibc's mmap threshold; prints the MiB the process still holds.
_FREED_PIXELS = """
import re, sys, threading
from PIL import Image
from handlers import memory

def rss():
    return int(re.search(r"VmRSS:\\s+(\\d+)", open("/proc/self/status").read()).group(1)) * 1024

if sys.argv[1] == "budget":
    memory.shared(1024)
Image.new("RGB", (4096, 2048)).close()
kept = []

def decode():
    for _ in range(5):
        image = Image.new("RGB", (4096, 4096))
        kept.append(image.resize((64, 64)))
        image.close()

threads = [threading.Thread(target=decode) for _ in range(4)]
before = rss()
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print((rss() - before) // memory.MiB)
"""


def _still_held_mib(mode: str) -> int:
    done = subprocess.run(
        [sys.executable, "-c", _FREED_PIXELS, mode],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )
    return int(done.stdout)


def test_an_enabled_budget_makes_freed_pixels_leave_the_process() -> None:
    """Without the fixed threshold the freed 16 MB blocks stay in the threads' heaps (about
    260 MiB here), memory the budget believes given back."""
    assert _still_held_mib("plain") > 128
    assert _still_held_mib("budget") < 32


def test_default_is_the_2048_mb_instance_budget() -> None:
    sizing = memory.INSTANCE_SIZING[memory.DEFAULT_INSTANCE_MB]
    assert DEFAULTS["THUMBNAIL_DECODE_BUDGET_MB"] == str(sizing.decode_budget_mb)
    settings = Settings.from_env({"DATA_STORAGE": "UseDevelopmentStorage=true"})
    assert settings.thumbnail_decode_budget_mb == sizing.decode_budget_mb


# --- What a decode reserves ------------------------------------------------------------------


def reserved_by(data: bytes) -> int:
    budget = DecodeBudget(0)
    make_thumbnail(data, 128, LIMIT, budget=budget)
    return budget.peak


def test_png_reserves_what_pillow_stores_at_full_size() -> None:
    # RGB is stored in four bytes per pixel; RGBA also gets a premultiplied copy in resize.
    rgb = gen.encode(gen.halves((1500, 1000)), "PNG")
    assert reserved_by(rgb) == 1500 * 1000 * 4 + DECODE_SLACK
    rgba = gen.encode(gen.transparent_rgba((1500, 1000)), "PNG")
    assert reserved_by(rgba) == 1500 * 1000 * 8 + DECODE_SLACK


def test_jpeg_reserves_its_draft_size_not_its_full_size() -> None:
    data = gen.encode(gen.halves((4000, 3000)), "JPEG")
    with Image.open(io.BytesIO(data)) as image:
        image.draft(None, (256, 256))  # what thumbnail() asks of the decoder for 128 px
        drafted = image.size
    assert drafted[0] < 4000 // 4, "Pillow did not draft-decode; the test shows nothing"
    assert reserved_by(data) == drafted[0] * drafted[1] * 4 + DECODE_SLACK
    # So a budget that cannot hold the full size still takes it.
    make_thumbnail(data, 128, LIMIT, budget=DecodeBudget(16 * MiB, wait_seconds=0))
    with pytest.raises(TooLargeToDecodeError):
        make_thumbnail(
            gen.encode(gen.halves((4000, 3000)), "PNG"),
            128,
            LIMIT,
            budget=DecodeBudget(16 * MiB, wait_seconds=0),
        )


def test_heic_with_a_thumbnail_inside_reserves_the_thumbnail() -> None:
    pytest.importorskip("pillow_heif")
    data = gen.encode(gen.halves((3000, 2000)), "HEIF", thumbnails=[320])
    assert reserved_by(data) < 2 * MiB + DECODE_SLACK
    assert reserved_by(gen.encode(gen.halves((3000, 2000)), "HEIF")) > 3000 * 2000 * 8


def noisy_png(size: tuple[int, int]) -> bytes:
    """A PNG whose pixel data is most of the file, so that cutting it in half cuts pixels."""
    pixels = random.Random(3).randbytes(size[0] * size[1] * 3)
    return gen.encode(Image.frombytes("RGB", size, pixels), "PNG")


def test_released_after_a_decode_error() -> None:
    data = noisy_png((1200, 900))
    budget = DecodeBudget(64 * MiB)
    with pytest.raises(InvalidBlobError, match="truncated"):
        make_thumbnail(data[: len(data) // 2], 128, LIMIT, budget=budget)
    assert budget.peak == 1200 * 900 * 4 + DECODE_SLACK, "the decode never reserved"
    assert budget.in_use == 0


# --- Through create_thumbnail, against Azurite -----------------------------------------------


def png(size: tuple[int, int] = (1000, 800)) -> bytes:
    return gen.encode(gen.halves(size), "PNG")


PNG_COST = 1000 * 800 * 4 + DECODE_SLACK


@pytest.fixture
def app(app_env: dict[str, str], containers: dict[str, str], upload_event: Upload) -> Any:
    class App:
        def upload(self, name: str, data: bytes) -> dict[str, Any]:
            return upload_event(containers["images"], name, data)

        def context(self, budget: DecodeBudget) -> AppContext:
            return AppContext(Settings.from_env(os.environ), decode_budget=budget)

    return App()


@pytest.mark.azurite
def test_handler_fits_beside_other_decodes_and_releases(app: Any) -> None:
    budget = DecodeBudget(PNG_COST + 20 * MiB)
    event = app.upload("big/fits.png", png())
    with held(budget, 20 * MiB):
        outcome = outcome_of("create_thumbnail", event, app.context(budget))
        assert outcome.status == "written", outcome.detail
        assert budget.in_use == 20 * MiB
    assert budget.peak == PNG_COST + 20 * MiB
    assert budget.in_use == 0


@pytest.mark.azurite
def test_handler_waits_then_fails_transiently_then_succeeds_on_redelivery(app: Any) -> None:
    budget = DecodeBudget(PNG_COST + 10 * MiB, wait_seconds=0.3)
    event = app.upload("big/busy.png", png())
    ctx = app.context(budget)
    # handle() re-raises the transient error, so that Event Grid delivers the event again.
    with held(budget, 20 * MiB), pytest.raises(DecodeBusyError):
        outcome_of("create_thumbnail", event, ctx)
    assert budget.in_use == 0
    assert outcome_of("create_thumbnail", event, ctx).status == "written"


@pytest.mark.azurite
def test_handler_refuses_an_image_larger_than_the_budget_for_good(
    app: Any, containers: dict[str, str], blob_service: Any, caplog: pytest.LogCaptureFixture
) -> None:
    os.environ["THUMBNAIL_DECODE_BUDGET_MB"] = "2"  # read from the settings, as in Azure
    reset_context()
    event = app.upload("big/too-big.png", png())
    outcome = outcome_of("create_thumbnail", event)
    assert outcome.status == "failed"
    assert "THUMBNAIL_DECODE_BUDGET_MB" in outcome.detail and "1000x800" in outcome.detail
    assert "outcome=failed" in caplog.text
    assert not blob_service.get_container_client(containers["thumbnails"]).exists()
    assert memory.shared(2).in_use == 0


@pytest.mark.azurite
def test_handler_releases_after_a_corrupt_image(app: Any) -> None:
    budget = DecodeBudget(64 * MiB)
    data = noisy_png((1000, 800))
    event = app.upload("big/corrupt.png", data[: len(data) // 2])
    outcome = outcome_of("create_thumbnail", event, app.context(budget))
    assert outcome.status == "failed" and "truncated" in outcome.detail
    assert budget.peak == PNG_COST and budget.in_use == 0


@pytest.mark.azurite
def test_handler_with_the_budget_set_to_zero_decodes_what_a_small_budget_refuses(
    app: Any, containers: dict[str, str], blob_service: Any
) -> None:
    data = png()
    os.environ["THUMBNAIL_DECODE_BUDGET_MB"] = "2"
    reset_context()
    refused = outcome_of("create_thumbnail", app.upload("big/refused.png", data))
    assert refused.status == "failed" and "THUMBNAIL_DECODE_BUDGET_MB" in refused.detail

    os.environ["THUMBNAIL_DECODE_BUDGET_MB"] = "0"  # off, read from the settings
    reset_context()
    outcome = outcome_of("create_thumbnail", app.upload("big/unlimited.png", data))
    assert outcome.status == "written", outcome.detail
    thumbnails = blob_service.get_container_client(containers["thumbnails"])
    made = [blob.name for blob in thumbnails.list_blobs()]
    assert made == [f"{containers['images']}/big/unlimited.png"]
    budget = get_context().decode_budget
    assert budget is memory.shared(0) and not budget.enabled and budget.in_use == 0


@pytest.mark.azurite
def test_handler_counts_a_jpeg_at_its_draft_size(app: Any) -> None:
    """A 12-megapixel JPEG is 48 MB at full size; its draft decode fits in 16 MB."""
    budget = DecodeBudget(16 * MiB, wait_seconds=0)
    data = gen.encode(gen.halves((4000, 3000)), "JPEG")
    outcome = outcome_of("create_thumbnail", app.upload("big/draft.jpg", data), app.context(budget))
    assert outcome.status == "written", outcome.detail
    assert 0 < budget.peak < 16 * MiB and budget.in_use == 0
    same_as_png = app.upload("big/full.png", gen.encode(gen.halves((4000, 3000)), "PNG"))
    refused = outcome_of("create_thumbnail", same_as_png, app.context(budget))
    assert refused.status == "failed" and "THUMBNAIL_DECODE_BUDGET_MB" in refused.detail


# --- A large source is reserved before it is downloaded ----------------------------------------


def large_png() -> tuple[bytes, int]:
    """A noisy PNG above PREDICT_ABOVE, and what its decode alone reserves."""
    size = (1500, 1200)
    data = noisy_png(size)
    assert len(data) > sources.PREDICT_ABOVE
    return data, size[0] * size[1] * 4 + DECODE_SLACK


@pytest.fixture
def storage_proxy(app_env: dict[str, str], azurite_service: Any) -> Iterator[CountingProxy]:
    """The app's storage requests go through the counting pass-through."""
    with counting_proxy(azurite_service) as proxy:
        os.environ["DATA_STORAGE"] = proxy.connection_string
        reset_context()
        yield proxy


def through(proxy: CountingProxy, event: dict[str, Any], azurite_service: Any) -> dict[str, Any]:
    """``event`` as storage behind ``proxy`` would send it: its blob URL names the proxy."""
    data = dict(event["data"])
    data["url"] = data["url"].replace(azurite_service.blob_url, proxy.blob_url)
    return {**event, "data": data}


def reads_of(proxy: CountingProxy, container: str, name: str) -> list[str | None]:
    """The ranges of the GETs of ``container/name`` the app sent."""
    return [
        seen.range
        for seen in proxy.requests()
        if seen.method == "GET" and seen.blob(container) == name and not seen.query
    ]


@pytest.mark.azurite
def test_a_large_source_counts_its_bytes_and_the_download_beside_its_decode(app: Any) -> None:
    data, decode = large_png()
    budget = DecodeBudget(256 * MiB)
    outcome = outcome_of("create_thumbnail", app.upload("big/large.png", data), app.context(budget))
    assert outcome.status == "written", outcome.detail
    assert budget.peak == decode + len(data) + sources.download_buffers(len(data))
    assert budget.in_use == 0


@pytest.mark.azurite
def test_a_large_source_waits_for_room_before_it_is_downloaded(
    app: Any, containers: dict[str, str], storage_proxy: CountingProxy, azurite_service: Any
) -> None:
    data, decode = large_png()
    needs = decode + len(data) + sources.download_buffers(len(data))
    budget = DecodeBudget(needs + 10 * MiB, wait_seconds=0.3)
    event = through(storage_proxy, app.upload("big/waits.png", data), azurite_service)
    ctx = app.context(budget)
    with held(budget, 20 * MiB), pytest.raises(DecodeBusyError, match="1500x1200 RGB PNG"):
        outcome_of("create_thumbnail", event, ctx)
    # Only the header was read: the blob's bytes never came while there was no room.
    ranges = reads_of(storage_proxy, containers["images"], "big/waits.png")
    assert ranges == [f"bytes=0-{sources.HEAD_BYTES - 1}"]
    assert budget.in_use == 0
    assert outcome_of("create_thumbnail", event, ctx).status == "written"


@pytest.mark.azurite
def test_a_large_source_larger_than_the_budget_is_refused_without_its_download(
    app: Any, containers: dict[str, str], storage_proxy: CountingProxy, azurite_service: Any
) -> None:
    data, decode = large_png()
    budget = DecodeBudget(decode + len(data) // 2)  # the decode fits; with the file it does not
    event = through(storage_proxy, app.upload("big/refused.png", data), azurite_service)
    outcome = outcome_of("create_thumbnail", event, app.context(budget))
    assert outcome.status == "failed"
    assert "THUMBNAIL_DECODE_BUDGET_MB" in outcome.detail and "1500x1200" in outcome.detail
    assert reads_of(storage_proxy, containers["images"], "big/refused.png") == [
        f"bytes=0-{sources.HEAD_BYTES - 1}"
    ]


@pytest.mark.azurite
def test_a_large_source_whose_header_does_not_tell_is_decoded_as_before(app: Any) -> None:
    """Pillow needs the whole of a WebP to open it: the decode is reserved after the download."""
    pixels = random.Random(5).randbytes(1400 * 1000 * 3)
    data = gen.encode(Image.frombytes("RGB", (1400, 1000), pixels), "WEBP", lossless=True)
    assert len(data) > sources.PREDICT_ABOVE
    budget = DecodeBudget(256 * MiB)
    outcome = outcome_of(
        "create_thumbnail", app.upload("big/large.webp", data), app.context(budget)
    )
    assert outcome.status == "written", outcome.detail
    assert 0 < budget.peak < len(data) + 1400 * 1000 * 4 * 5, "the decode was not reserved"
    assert budget.in_use == 0
