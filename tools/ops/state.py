"""The backfill's checkpoint: where the listing stands and what is done, in a local JSON file.

The file is rewritten atomically (write a temporary file, then rename), so a crash leaves
either the old or the new checkpoint, never half of one. Each set of arguments (the key) has
its own numbered file, ``<stem>-<n>.json``; the key is written into its lock file,
``<stem>-<n>.json.lock``, when the number is first taken. A lock on that file held for the
whole run keeps two backfills with the same arguments from overwriting each other's
checkpoint; the operating system releases it when the process dies, so a crash never leaves
a stale lock behind. A run that finishes removes its checkpoint and lock file.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

FORMAT = 1
_SAVE_EVERY_SECONDS = 1.0


# The checkout these tools run from (tools/ops/state.py -> the project's root).
_CHECKOUT = Path(__file__).resolve().parents[2]


def default_state_dir() -> Path:
    """The project's ``.local/state`` (git-ignored) when the tools run from a checkout, so
    state stays with the project it belongs to; otherwise
    ``$XDG_STATE_HOME/blob-event-functions/ops`` (``~/.local/state/...`` when unset)."""
    if (_CHECKOUT / ".git").exists():
        return _CHECKOUT / ".local" / "state"
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


def find(state_dir: Path, stem: str, key: dict[str, Any]) -> Path | None:
    """The checkpoint file of ``key``, or None when no run with these arguments took one."""
    for _, lock in _numbered(state_dir, stem):
        try:
            if json.loads(lock.read_text(encoding="utf-8")) == key:
                return _checkpoint_of(lock)
        except (OSError, ValueError):
            continue  # being written by a claim, or not ours: not this key's
    return None


@contextlib.contextmanager
def held(state_dir: Path, stem: str, key: dict[str, Any]) -> Iterator[Path]:
    """The checkpoint file of ``key`` (taking a new number the first time), locked for the
    life of the block; RuntimeError when another run with the same arguments holds it.

    A run that leaves no checkpoint (it finished, or cleared it) removes its lock file too:
    nothing is left to resume, so nothing is left in the state folder.
    """
    state_dir.mkdir(parents=True, exist_ok=True)
    # Finding, taking a number, locking it and removing a finished run's lock all happen
    # under the folder's lock: a lock file is never removed between another run's finding
    # and locking it.
    with _locked(state_dir):
        path = find(state_dir, stem, key) or _claim(state_dir, stem, key)
        lock = path.with_name(path.name + ".lock")
        stream = lock.open("a+", encoding="utf-8")
        try:
            _flock(stream, wait=False)
        except BlockingIOError:
            stream.close()
            raise RuntimeError(f"another backfill with the same arguments holds {lock}") from None
    try:
        yield path
    finally:
        try:
            if not path.exists():
                with _locked(state_dir):
                    lock.unlink(missing_ok=True)
        finally:
            stream.close()


def _claim(state_dir: Path, stem: str, key: dict[str, Any]) -> Path:
    taken = [number for number, _ in _numbered(state_dir, stem)]
    lock = state_dir / f"{stem}-{max(taken, default=0) + 1}.json.lock"
    with lock.open("x", encoding="utf-8") as stream:
        json.dump(key, stream, sort_keys=True)
    return _checkpoint_of(lock)


def _numbered(state_dir: Path, stem: str) -> list[tuple[int, Path]]:
    pattern = re.compile(rf"^{re.escape(stem)}-(\d+)\.json\.lock$")
    found = []
    for path in state_dir.glob(f"{stem}-*.json.lock"):
        match = pattern.match(path.name)
        if match is not None:
            found.append((int(match[1]), path))
    return sorted(found)


def _checkpoint_of(lock: Path) -> Path:
    return lock.with_name(lock.name.removesuffix(".lock"))


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """An exclusive lock on the folder itself (waiting for it), so no lock file is left."""
    if sys.platform == "win32":
        yield
        return
    import fcntl

    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _flock(stream: IO[str], wait: bool) -> None:
    """An exclusive lock on the open file (POSIX only); BlockingIOError at once if it is
    taken and not ``wait``. Closing the file releases it, and so does the process's death."""
    if sys.platform == "win32":
        return
    import fcntl

    fcntl.flock(stream.fileno(), fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))


@dataclass
class Page:
    """One page of the listing: the continuation token after it, and what is still running
    in it."""

    next: str | None
    pending: set[str] = field(default_factory=set)
    done: set[str] = field(default_factory=set)


class Tracker:
    """Keeps a checkpoint true while the blobs of several listing pages finish in any order,
    and saves it now and then (never when ``path`` is None: a dry run)."""

    def __init__(self, path: Path | None, checkpoint: Checkpoint) -> None:
        self.path = path
        self.checkpoint = checkpoint
        self.pages: deque[Page] = deque()
        # Finished blobs of a resumed checkpoint whose page has not been listed again yet.
        self.carried = set(checkpoint.done)
        self._lock = threading.Lock()
        self._saved_at = 0.0
        self._dirty = False

    def add_page(self, page: Page) -> None:
        with self._lock:
            self.carried -= page.done
            self.pages.append(page)
            self._advance()

    def listing_finished(self) -> None:
        with self._lock:
            if not self.pages:
                self.checkpoint.listing_complete = True
                self._dirty = True

    def forget(self, name: str) -> None:
        """Drop a blob to retry that no longer exists."""
        with self._lock:
            self.checkpoint.retry.discard(name)
            self._dirty = True

    def finish(self, name: str, page: Page | None, ok: bool) -> None:
        """``name`` is done (or failed, to retry next run); ``page`` None: it came from the
        retry list."""
        with self._lock:
            if ok:
                self.checkpoint.retry.discard(name)
            else:
                self.checkpoint.retry.add(name)
            if page is not None:
                page.pending.discard(name)
                if ok:
                    page.done.add(name)
                self._advance()
            self._dirty = True
            if time.monotonic() - self._saved_at >= _SAVE_EVERY_SECONDS:
                self._save()

    def _advance(self) -> None:
        """Drop finished pages from the front; the checkpoint then starts after them."""
        while self.pages and not self.pages[0].pending:
            page = self.pages.popleft()
            self.checkpoint.marker = page.next
            if page.next is None:
                self.checkpoint.listing_complete = True
        self.checkpoint.done = self.carried.union(*(page.done for page in self.pages))
        self._dirty = True

    def save(self) -> None:
        with self._lock:
            self._save()

    def _save(self) -> None:
        if self._dirty and self.path is not None:
            save(self.path, self.checkpoint)
            self._dirty = False
        self._saved_at = time.monotonic()

    @property
    def complete(self) -> bool:
        with self._lock:
            return self.checkpoint.listing_complete and not self.pages and not self.checkpoint.retry
