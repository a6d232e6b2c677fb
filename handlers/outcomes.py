"""What handling one event came to, as one loggable value."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Outcome:
    """``status``: written, duplicate, superseded, ignored, dispatched, dry-run or failed.

    ``setting`` names the app setting the outcome follows from instead of from the event
    (``dry-run``: BATCH_ENDPOINT_URI is not set). Such an outcome is not final: once the
    setting is given, the same event comes to something else, so a replay or a backfill must
    keep the event to do rather than count it as handled. The code that makes the outcome
    says so, since only it knows why it did not do the work.
    """

    status: str
    detail: str
    setting: str | None = None

    @property
    def final(self) -> bool:
        return self.setting is None
