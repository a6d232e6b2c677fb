"""Counting outcomes for the summary, and showing progress on stderr while a command runs."""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections import Counter
from typing import TextIO

from handlers.outcomes import Outcome

# Outcome statuses of handlers.pipeline.handle, by the summary line that counts them.
ALREADY_DONE = frozenset({"duplicate"})
PERMANENT = frozenset({"failed"})
# Every other final outcome (written, dispatched, superseded, ignored) counts as processed:
# the handler reached a final decision about that blob version. An outcome that is not final
# (Outcome.final: a dry-run because BATCH_ENDPOINT_URI is unset) counts as still to do.

_MAX_LISTED_FAILURES = 20


def counted(number: int, noun: str) -> str:
    """``1 blob``, ``2 blobs``: a count with its noun in the right number."""
    return f"{number} {noun}{'' if number == 1 else 's'}"


EXIT_OK = 0
EXIT_TRANSIENT = 1  # something failed in a way a later run can fix: run the command again
EXIT_USAGE = 2  # bad arguments or app settings: nothing (more) was attempted, or some work
# only came to a not-final outcome because of a setting (it stays to do)
EXIT_MALFORMED = 3  # replay only: malformed dead-letter blobs were left in place
EXIT_INTERRUPTED = 130  # Ctrl-C; the state is saved, run the same command again


class Tally:
    """Thread-safe counts of what happened to each piece of work."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.processed = 0
        self.already_done = 0
        self.permanent = 0
        self.transient = 0
        self.not_final = 0
        self.settings: set[str] = set()  # the settings the not-final outcomes wait for
        self.by_status: Counter[str] = Counter()
        self.failures: list[str] = []

    def outcome(self, what: str, outcome: Outcome) -> None:
        with self._lock:
            if not outcome.final:
                self.not_final += 1
                self.settings.add(str(outcome.setting))
                self._remember(f"not final {what}: {outcome.status}: {outcome.detail}")
                return
            self.by_status[outcome.status] += 1
            if outcome.status in ALREADY_DONE:
                self.already_done += 1
            elif outcome.status in PERMANENT:
                self.permanent += 1
                self._remember(f"permanent {what}: {outcome.detail}")
            else:
                self.processed += 1

    def transient_failure(self, what: str, exc: BaseException) -> None:
        with self._lock:
            self.transient += 1
            self._remember(f"transient {what}: {type(exc).__name__}: {exc}")

    def _remember(self, line: str) -> None:
        if len(self.failures) < _MAX_LISTED_FAILURES:
            self.failures.append(line)

    def brief(self) -> str:
        with self._lock:
            return (
                f"processed {self.processed}, already done {self.already_done}, "
                f"permanent {self.permanent}, transient {self.transient}"
                + (f", not final {self.not_final}" if self.not_final else "")
            )

    def summary(self) -> list[str]:
        """The four counts, the statuses behind 'processed', and the first failures."""
        with self._lock:
            statuses = ", ".join(
                f"{status} {count}"
                for status, count in sorted(self.by_status.items())
                if status not in ALREADY_DONE | PERMANENT
            )
            lines = [
                f"processed: {self.processed}" + (f" ({statuses})" if statuses else ""),
                f"skipped as already done: {self.already_done}",
                f"permanent failures: {self.permanent}",
                f"transient failures: {self.transient}",
            ]
            if self.not_final:
                lines.append(
                    f"not final (depend on a setting): {self.not_final} "
                    f"(waiting for {', '.join(sorted(self.settings))}; they stay to do)"
                )
            if self.failures:
                lines.append("failures and work left to do:")
                lines += [f"  {line}" for line in self.failures]
                more = self.permanent + self.transient + self.not_final - len(self.failures)
                if more > 0:
                    lines.append(f"  ... and {more} more (see the log above)")
            return lines


class Progress:
    """One status line redrawn in place on a terminal; a plain line now and then otherwise."""

    def __init__(
        self, stream: TextIO, label: str, interval: float | None = None, enabled: bool = True
    ) -> None:
        self.stream = stream
        self.label = label
        self.enabled = enabled
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self.interval = interval if interval is not None else (0.1 if self.tty else 5.0)
        self._lock = threading.Lock()
        self._last_text = ""
        self._last_shown = time.monotonic()
        self._on_screen = False

    def update(self, text: str, force: bool = False) -> None:
        if not self.enabled:
            return
        with self._lock:
            self._last_text = text
            now = time.monotonic()
            if not force and now - self._last_shown < self.interval:
                return
            self._last_shown = now
            self._show()

    def write_line(self, line: str) -> None:
        """Print a whole line (a log record) without tearing the status line."""
        with self._lock:
            self._erase()
            self.stream.write(line + "\n")
            if self.tty and self.enabled and self._last_text:
                self._show()
            self.stream.flush()

    def close(self) -> None:
        """Leave the terminal clean: the summary follows on stdout."""
        with self._lock:
            self._erase()
            self.stream.flush()

    def _show(self) -> None:
        line = f"{self.label}: {self._last_text}"
        if self.tty:
            width = shutil.get_terminal_size((100, 20)).columns - 1
            self.stream.write("\r" + line[:width] + "\x1b[K")
            self._on_screen = True
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def _erase(self) -> None:
        if self._on_screen:
            self.stream.write("\r\x1b[K")
            self._on_screen = False


class ProgressLogHandler(logging.Handler):
    """Routes log records through the progress line so they do not overwrite each other."""

    def __init__(self, progress: Progress) -> None:
        super().__init__()
        self.progress = progress

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.progress.write_line(self.format(record))
        except Exception:
            self.handleError(record)
