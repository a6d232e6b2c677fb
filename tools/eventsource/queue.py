"""The pending deliveries, kept in SQLite so that they survive a restart of the event source.

One row per (event, subscription) not yet delivered or dead-lettered. Times are wall-clock
epoch seconds, since they have to mean the same thing to the next process.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tools.routes import Route

_SCHEMA = """
CREATE TABLE IF NOT EXISTS deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    subscription TEXT NOT NULL,
    function TEXT NOT NULL,
    schema TEXT NOT NULL,
    event TEXT NOT NULL,
    blob TEXT NOT NULL,
    publish_time REAL NOT NULL,
    max_attempts INTEGER NOT NULL,
    ttl_minutes INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt REAL NOT NULL,
    last_outcome TEXT,
    last_status INTEGER,
    last_attempt REAL,
    dead_letter_reason TEXT
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (next_attempt);
"""


@dataclass(frozen=True)
class Delivery:
    id: int
    subscription: str
    function: str
    schema: str
    event: dict[str, Any]
    blob: str
    publish_time: float
    max_attempts: int
    ttl_minutes: int
    attempts: int
    next_attempt: float
    last_outcome: str | None
    last_status: int | None
    last_attempt: float | None
    dead_letter_reason: str | None  # set: delivery is over, the dead-letter blob is not written

    @property
    def event_id(self) -> str:
        return str(self.event.get("id", "?"))


class DeliveryQueue:
    """Thread-safe access to the deliveries table of ``<state_dir>/deliveries.sqlite3``."""

    def __init__(self, state_dir: Path) -> None:
        state_dir.mkdir(parents=True, exist_ok=True)
        self.path = state_dir / "deliveries.sqlite3"
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._lock = threading.Lock()
        self.on_enqueue: Callable[[], None] | None = None
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            # WAL with NORMAL survives a crash or kill of this process (what a local tool
            # meets); only a power cut could lose the last commits. FULL costs an fsync per
            # upload, ~1.7 ms here.
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)

    def enqueue(self, route: Route, event: dict[str, Any], blob: str) -> int:
        now = time.time()
        with self._lock:
            cursor = self._db.execute(
                "INSERT INTO deliveries (subscription, function, schema, event, blob, "
                "publish_time, max_attempts, ttl_minutes, next_attempt) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    route.name,
                    route.function,
                    route.schema,
                    json.dumps(event),
                    blob,
                    now,
                    route.max_delivery_attempts,
                    route.event_ttl_minutes,
                    now,
                ),
            )
            row_id = int(cursor.lastrowid or 0)
        if self.on_enqueue is not None:
            self.on_enqueue()
        return row_id

    def next_due(self, now: float, busy: Collection[int]) -> Delivery | float | None:
        """The first due delivery not in ``busy``, else when the next one is due (or None)."""
        marks = ",".join("?" * len(busy))
        where = f"WHERE id NOT IN ({marks})" if busy else ""
        with self._lock:
            row = self._db.execute(
                f"SELECT * FROM deliveries {where} ORDER BY next_attempt, id LIMIT 1",  # noqa: S608
                tuple(busy),
            ).fetchone()
        if row is None:
            return None
        if row["next_attempt"] > now:
            return float(row["next_attempt"])
        return _delivery(row)

    def record_failure(
        self,
        delivery: Delivery,
        *,
        next_attempt: float,
        outcome: str,
        status: int | None,
        attempted_at: float,
        dead_letter_reason: str | None = None,
    ) -> None:
        """Store a failed attempt and when to make the next one (with
        ``dead_letter_reason``: that the delivery is over and only its dead-letter blob is
        left to write)."""
        with self._lock:
            self._db.execute(
                "UPDATE deliveries SET attempts = ?, next_attempt = ?, last_outcome = ?, "
                "last_status = ?, last_attempt = ?, dead_letter_reason = ? WHERE id = ?",
                (
                    delivery.attempts,
                    next_attempt,
                    outcome,
                    status,
                    attempted_at,
                    dead_letter_reason,
                    delivery.id,
                ),
            )

    def postpone(self, delivery: Delivery, next_attempt: float) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE deliveries SET next_attempt = ? WHERE id = ?", (next_attempt, delivery.id)
            )

    def remove(self, delivery: Delivery) -> None:
        with self._lock:
            self._db.execute("DELETE FROM deliveries WHERE id = ?", (delivery.id,))

    def pending(self) -> list[Delivery]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM deliveries ORDER BY id").fetchall()
        return [_delivery(row) for row in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _delivery(row: sqlite3.Row) -> Delivery:
    return Delivery(
        id=int(row["id"]),
        subscription=str(row["subscription"]),
        function=str(row["function"]),
        schema=str(row["schema"]),
        event=json.loads(row["event"]),
        blob=str(row["blob"]),
        publish_time=float(row["publish_time"]),
        max_attempts=int(row["max_attempts"]),
        ttl_minutes=int(row["ttl_minutes"]),
        attempts=int(row["attempts"]),
        next_attempt=float(row["next_attempt"]),
        last_outcome=row["last_outcome"],
        last_status=row["last_status"],
        last_attempt=row["last_attempt"],
        dead_letter_reason=row["dead_letter_reason"],
    )
