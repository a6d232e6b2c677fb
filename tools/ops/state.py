"""The backfill's checkpoint: where the listing stands and what is done, in a local JSON file.

The file is rewritten atomically (write a temporary file, then rename), so a crash leaves
either the old or the new checkpoint, never half of one. A lock held for the whole run keeps
two backfills with the same arguments from overwriting each other's checkpoint; the operating
system releases it when the process dies, so a crash never leaves a stale lock behind.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any

FORMAT = 1


def default_state_dir() -> Path:
    """``$XDG_STATE_HOME/blob-event-functions/ops`` (``~/.local/state/...`` when unset)."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "blob-event-functions" / "ops"


@dataclass
class Checkpoint:
    """Resume point: the listing page to start from, and the blobs already finished.

    ``marker`` is the storage listing's continuation token of the first page that is not
    finished (None: the start). ``done`` names the finished blobs of that page and the pages
    after it that were reached. ``retry`` names the blobs that failed transiently; the next
    run handles them first. ``listing_complete`` means no page is left to list.
    """

    key: dict[str, Any]
    marker: str | None = None
    done: set[str] = field(default_factory=set)
    retry: set[str] = field(default_factory=set)
    listing_complete: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "key": self.key,
            "marker": self.marker,
            "listingComplete": self.listing_complete,
            "done": sorted(self.done),
            "retry": sorted(self.retry),
        }

    @classmethod
    def from_json(cls, document: Any, key: dict[str, Any]) -> Checkpoint:
        """The checkpoint in ``document``; ValueError when it is not one for ``key``."""
        if not isinstance(document, dict) or document.get("format") != FORMAT:
            raise ValueError("not a checkpoint of this version")
        if document.get("key") != key:
            raise ValueError("the checkpoint belongs to other arguments")
        marker = document.get("marker")
        done = document.get("done")
        retry = document.get("retry")
        if (
            not (marker is None or isinstance(marker, str))
            or not isinstance(done, list)
            or not isinstance(retry, list)
            or not all(isinstance(name, str) for name in done + retry)
        ):
            raise ValueError("the checkpoint's fields have the wrong types")
        return cls(
            key=key,
            marker=marker,
            done=set(done),
            retry=set(retry),
            listing_complete=bool(document.get("listingComplete")),
        )


def load(path: Path, key: dict[str, Any]) -> Checkpoint | None:
    """The saved checkpoint, None when there is none; ValueError when it is unreadable."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"{path} is not JSON: {exc}") from None
    try:
        return Checkpoint.from_json(document, key)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


def save(path: Path, checkpoint: Checkpoint) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as stream:
            json.dump(checkpoint.to_json(), stream, indent=1)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def clear(path: Path) -> None:
    path.unlink(missing_ok=True)


class StateLock:
    """An exclusive lock on ``<state file>.lock`` for the life of a run (POSIX only)."""

    def __init__(self, path: Path) -> None:
        self.path = path.with_name(path.name + ".lock")
        self._stream: IO[str] | None = None

    def __enter__(self) -> StateLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        stream = self.path.open("a+", encoding="utf-8")
        if sys.platform != "win32":
            import fcntl

            try:
                fcntl.flock(stream.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                stream.close()
                raise RuntimeError(
                    f"another backfill with the same arguments holds {self.path}"
                ) from None
        self._stream = stream
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._stream is not None:
            self._stream.close()  # closing releases the lock
            self._stream = None
