"""Wait for something asynchronous with a deadline, never a bare sleep."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def poll(check: Callable[[], T | None], deadline_seconds: float, what: str) -> T:
    """Call ``check`` until it returns something truthy and return that, or fail."""
    deadline = time.monotonic() + deadline_seconds
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {deadline_seconds} s waiting for {what}")
        time.sleep(0.02)
