"""Ctrl-C for the ops commands: it must stop them even when Python loses the exception.

CPython drops an exception raised while a finalizer runs. urllib3's HTTP responses are io
objects, so when a SIGINT arrives while the garbage collector closes one, its
KeyboardInterrupt is raised inside that finalizer and swallowed without a trace: a backfill
then ran to its end instead of saving its place. The handler therefore also records the
request, and the commands' loops ask ``check()`` between steps.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

_requested = threading.Event()


def install() -> None:
    """Make Ctrl-C (and ``kill -INT``) stop the command, however its shell started it: a
    shell without job control starts background commands with SIGINT ignored."""
    signal.signal(signal.SIGINT, _handle)


def check() -> None:
    """Raise KeyboardInterrupt when Ctrl-C came, whether or not its exception got through."""
    if _requested.is_set():
        raise KeyboardInterrupt


def _handle(signum: int, frame: FrameType | None) -> None:
    _requested.set()
    raise KeyboardInterrupt
