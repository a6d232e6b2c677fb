"""Child processes of the local loop: stopping them, and making sure they cannot outlive it.

``Watchdog`` is a tiny separate process that holds the read end of a pipe whose write end
only the loop has. The loop tells it which children to guard; if the loop dies in any way,
even SIGKILL, the kernel closes the write end, the watchdog reads end-of-file and stops
those children. Unlike PR_SET_PDEATHSIG this works on Linux and macOS alike.

    python -m tools.processes    (the watchdog: reads "watch|forget pid|group <n>" and
                                  "remove|removed <hex of a path>" lines)
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import IO

_ROOT = Path(__file__).resolve().parent.parent
# After SIGTERM, how long a guarded child has before SIGKILL.
GRACE_SECONDS = 5.0


def stop_group(process: subprocess.Popen[bytes]) -> None:
    """Stop a child started in its own session and everything it started: SIGINT, as Ctrl-C
    in its terminal would, then SIGTERM, then SIGKILL."""
    for sig, wait in ((signal.SIGINT, 10.0), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
        # The leader may leave a child behind in the group for a moment.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        return


class Interrupts:
    """SIGINT and SIGTERM raise KeyboardInterrupt, except inside ``deferred()``: there they
    are held until the block ends, so an interrupt cannot land between starting a child
    process and recording it, or cut the shutdown short. (Blocking the signals with
    pthread_sigmask instead would be inherited by the children.)"""

    def __init__(self) -> None:
        self.depth = 0
        self.pending = False

    def install(self) -> None:
        signal.signal(signal.SIGINT, self._handle)
        signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.depth:
            self.pending = True
            return
        raise KeyboardInterrupt

    @contextlib.contextmanager
    def deferred(self, *, then_raise: bool = True) -> Iterator[None]:
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1
        if self.depth == 0 and self.pending and then_raise:
            self.pending = False
            raise KeyboardInterrupt


class Watchdog:
    """The loop's side of the watchdog: start it, then ``watch`` each child as it starts."""

    def __init__(self) -> None:
        # The pipe's write end is not inheritable, so only this process holds it: its
        # death, however it comes, is what the watchdog sees.
        self._process = subprocess.Popen(
            [sys.executable, "-m", "tools.processes"],
            cwd=_ROOT,  # where `-m tools.processes` is found, wherever the loop was started
            stdin=subprocess.PIPE,
            start_new_session=True,  # Ctrl-C and a kill of our group must not reach it first
        )
        assert self._process.stdin is not None
        self._pipe: IO[bytes] = self._process.stdin

    @property
    def pid(self) -> int:
        return self._process.pid

    def watch(self, pid: int, *, group: bool = False) -> None:
        """Stop ``pid`` (its whole process group with ``group``) if this process dies."""
        self._say(f"watch {'group' if group else 'pid'} {pid}")

    def forget(self, pid: int) -> None:
        """``pid`` has been stopped and reaped: its number may be reused, leave it alone."""
        self._say(f"forget {pid}")

    def remove(self, path: Path) -> None:
        """Delete ``path`` if this process dies before it has done so itself."""
        self._say(f"remove {os.fsencode(path).hex()}")

    def removed(self, path: Path) -> None:
        """``path`` is gone (a new run may write it again): leave it alone."""
        self._say(f"removed {os.fsencode(path).hex()}")

    def close(self) -> None:
        """Everything is stopped: let the watchdog exit."""
        with contextlib.suppress(OSError):
            self._pipe.close()
        try:
            self._process.wait(timeout=GRACE_SECONDS + 5)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()

    def _say(self, line: str) -> None:
        self._pipe.write(line.encode("ascii") + b"\n")
        self._pipe.flush()


def _guard(lines: Iterator[str], files: list[Path] | None = None) -> dict[int, bool]:
    """Read the loop's instructions until end-of-file; return what is still guarded
    (pid -> whether it leads a group to stop); files to remove are added to ``files``."""
    guarded: dict[int, bool] = {}
    for line in lines:
        words = line.split()
        if len(words) == 3 and words[0] == "watch" and words[2].isdigit():
            guarded[int(words[2])] = words[1] == "group"
        elif len(words) == 2 and words[0] == "forget" and words[1].isdigit():
            guarded.pop(int(words[1]), None)
        elif len(words) == 2 and words[0] in ("remove", "removed") and files is not None:
            with contextlib.suppress(ValueError):
                path = Path(os.fsdecode(bytes.fromhex(words[1])))
                if words[0] == "remove":
                    files.append(path)
                elif path in files:
                    files.remove(path)
    return guarded


def _signal(pid: int, group: bool, sig: int) -> bool:
    """Send ``sig`` (0: only look); False when there is nothing left to send it to."""
    try:
        if group:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _stop_all(guarded: dict[int, bool]) -> None:
    left = {pid: group for pid, group in guarded.items() if _signal(pid, group, signal.SIGTERM)}
    deadline = time.monotonic() + GRACE_SECONDS
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = {pid: group for pid, group in left.items() if _signal(pid, group, 0)}
    for pid, group in left.items():
        _signal(pid, group, signal.SIGKILL)


def main() -> int:
    # Ctrl-C is for the loop (which stops its children itself); the watchdog waits for the
    # pipe to close either way.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    files: list[Path] = []
    guarded = _guard((line.decode("ascii", "replace") for line in sys.stdin.buffer), files)
    for path in files:
        with contextlib.suppress(OSError):
            path.unlink()
    _stop_all(guarded)
    return 0


if __name__ == "__main__":
    sys.exit(main())
