"""What handling one event came to, as one loggable value."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Outcome:
    # written, duplicate, superseded, ignored, dispatched, dry-run, failed
    status: str
    detail: str
