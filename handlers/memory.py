"""A process-wide budget of decoded image bytes, so that large images handled at the same
time cannot exhaust the instance's memory and take every event in flight down with it.

A decode reserves what it will allocate (predicted from the image's header, before any pixel
is decoded) and gives it back once its buffers are freed:

    with budget.reserve(cost, "12000x8000 RGB PNG"):
        ...decode, resize...

A reservation that does not fit waits, in arrival order, for at most WAIT_SECONDS and then
fails with DecodeBusyError (transient: Event Grid delivers the event again later); one
larger than the whole budget can never fit and fails at once with TooLargeToDecodeError
(permanent). docs/memory-budget.md explains the numbers.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import platform
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from handlers.errors import DecodeBusyError, TooLargeToDecodeError

logger = logging.getLogger(__name__)

MiB = 1024 * 1024

# How long a decode waits for room. Event Grid counts a delivery that has not answered within
# 30 s as failed and sends it again; a 100-megapixel PNG or HEIC decodes in about 3-8 s on
# one core, so waiting 10 s and then decoding still answers in time. The retry comes 10 s,
# 30 s, 1 min... later, when the decodes ahead of it have finished.
WAIT_SECONDS = 10.0


@dataclass(frozen=True)
class InstanceSizing:
    """What this app sets for one Flex Consumption instance size."""

    decode_budget_mb: int  # THUMBNAIL_DECODE_BUDGET_MB
    concurrency: int  # functionAppConfig.scaleAndConcurrency.triggers.http.perInstanceConcurrency


# By functionAppConfig.scaleAndConcurrency.instanceMemoryMB. The rest of each instance is for
# the Functions host (a .NET process of about 150-250 MB), the Python worker (about 60 MB
# with this app imported), the blobs being downloaded and uploaded, and the allocator's
# slack; on 512 MB the host and worker alone take about 300 MB, hence a quarter there and
# half elsewhere. Budget / concurrency is what every event can decode without waiting (32 to
# 64 MB: a 16-megapixel PNG, an 8-megapixel HEIC; JPEG draft-decodes in far less).
# infra/main.bicep holds the same table; tests/test_infra_memory.py checks they agree.
INSTANCE_SIZING: dict[int, InstanceSizing] = {
    512: InstanceSizing(decode_budget_mb=128, concurrency=4),
    2048: InstanceSizing(decode_budget_mb=1024, concurrency=16),
    4096: InstanceSizing(decode_budget_mb=2048, concurrency=32),
}
DEFAULT_INSTANCE_MB = 2048  # Flex Consumption's default, and main.bicep's


def pixel_bytes(mode: str) -> int:
    """Bytes per pixel Pillow stores for an image of ``mode``: one for 1, L and P, two for
    the 16-bit greyscale modes, four for every other mode (Pillow pads RGB, YCbCr, LAB and
    HSV to four bytes, and keeps LA and PA in four as well)."""
    if mode in ("1", "L", "P"):
        return 1
    if mode.startswith("I;16"):
        return 2
    return 4


def megabytes(size: int) -> str:
    return f"{size / MiB:.0f} MB"


class DecodeBudget:
    """At most ``limit`` bytes reserved at once, across every thread of the process.

    ``limit`` 0 turns the budget off: every reservation succeeds at once (what is reserved
    is still counted, so ``peak`` tells what the decodes would have needed). Waiters are
    served in arrival order, so a large image is not starved by a stream of small ones.
    """

    def __init__(self, limit: int, wait_seconds: float = WAIT_SECONDS) -> None:
        if limit < 0:
            raise ValueError(f"limit must be 0 (off) or positive, not {limit}")
        self.limit = limit
        self.wait_seconds = wait_seconds
        self._in_use = 0
        self._peak = 0
        self._queue: deque[object] = deque()
        self._changed = threading.Condition(threading.Lock())

    @property
    def enabled(self) -> bool:
        return self.limit > 0

    @property
    def in_use(self) -> int:
        with self._changed:
            return self._in_use

    @property
    def peak(self) -> int:
        """The most bytes ever reserved at once."""
        with self._changed:
            return self._peak

    @property
    def waiting(self) -> int:
        with self._changed:
            return len(self._queue)

    @contextmanager
    def reserve(self, size: int, what: str) -> Iterator[None]:
        """Hold ``size`` bytes for the duration of the block; ``what`` names the decode in
        the error messages (for example "12000x8000 RGB PNG")."""
        size = max(0, size)
        self._acquire(size, what)
        try:
            yield
        finally:
            with self._changed:
                self._in_use -= size
                self._changed.notify_all()

    def _acquire(self, size: int, what: str) -> None:
        if self.enabled and size > self.limit:
            raise TooLargeToDecodeError(
                f"decoding this {what} needs about {megabytes(size)}, more than the whole "
                f"decode budget (THUMBNAIL_DECODE_BUDGET_MB, {megabytes(self.limit)}); a "
                "larger instanceMemoryMB raises the budget"
            )
        with self._changed:
            if not self.enabled or (not self._queue and self._fits(size)):
                self._take(size)
                return
            ticket = object()
            self._queue.append(ticket)
            deadline = time.monotonic() + self.wait_seconds
            try:
                while not (self._queue[0] is ticket and self._fits(size)):
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise DecodeBusyError(
                            f"decoding this {what} needs about {megabytes(size)}; other "
                            f"decodes held {megabytes(self._in_use)} of the "
                            f"{megabytes(self.limit)} budget for {self.wait_seconds:g} s"
                        )
                    self._changed.wait(left)
                self._take(size)
            finally:
                self._queue.remove(ticket)
                # The next in line may fit now, or may be able to give up.
                self._changed.notify_all()

    def _fits(self, size: int) -> bool:
        return self._in_use + size <= self.limit

    def _take(self, size: int) -> None:
        self._in_use += size
        self._peak = max(self._peak, self._in_use)


_shared: dict[int, DecodeBudget] = {}
_shared_lock = threading.Lock()


def shared(budget_mb: int) -> DecodeBudget:
    """The process's budget of ``budget_mb`` MB (THUMBNAIL_DECODE_BUDGET_MB; 0: off).

    One object per value, kept for the life of the process: a context rebuilt from the
    environment (``reset_context``) still counts the decodes that the previous one started.
    """
    with _shared_lock:
        budget = _shared.get(budget_mb)
        if budget is None:
            budget = _shared[budget_mb] = DecodeBudget(budget_mb * MiB)
            if budget.enabled:
                fix_mmap_threshold()
        return budget


# glibc's mallopt parameter, and the size above which an allocation gets a mapping of its own.
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 1 * MiB


@functools.cache
def fix_mmap_threshold() -> bool:
    """Make freed pixel buffers go back to the operating system at once, which the budget's
    count assumes; True when the allocator took the setting.

    Pillow allocates an image in blocks of up to 16 MB. glibc maps each large allocation on
    its own, but after such a mapping is freed it raises its threshold to that size (up to
    32 MB), so later blocks come from the per-thread heaps instead, which return memory only
    from their top. With decodes in several threads at once, the freed blocks then stay in
    the process: in bench ``memory`` the peak was 1,378 MiB while the budget never held more
    than 866. Setting the threshold once stops it moving (the call runs once per process). Other C
    libraries are left alone.
    """
    if platform.libc_ver()[0] != "glibc":
        return False
    fixed = bool(ctypes.CDLL(None).mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD))
    if not fixed:
        logger.warning(
            "the allocator refused M_MMAP_THRESHOLD=%d; freed pixels may stay in RSS",
            MMAP_THRESHOLD,
        )
    return fixed
