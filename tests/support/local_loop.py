"""Helpers for the event source and local loop tests: a recording delivery target, routes on
a test's own containers, a `func` on PATH, and what /proc says about processes."""

from __future__ import annotations

import copy
import json
import shlex
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tools.eventsource.targets import Result, result_for_status
from tools.routes import ROUTES_FILE, Routes, parse_routes


def routes_for(
    containers: Mapping[str, str], extra_apis: tuple[str, ...] = (), **retry: int
) -> Routes:
    """The project's routes, moved onto this test's containers; ``retry`` overrides every
    subscription's retryPolicy (maxDeliveryAttempts=..., eventTimeToLiveInMinutes=...) and
    ``extra_apis`` widens their data.api filters."""
    document = json.loads(ROUTES_FILE.read_text(encoding="utf-8"))
    document = copy.deepcopy(document)
    moved = {"images": containers["images"], "batch-input": containers["incoming"]}
    document["containers"]["images"] = containers["images"]
    document["containers"]["batchInput"] = containers["incoming"]
    document["containers"]["thumbnails"] = containers["thumbnails"]
    document["containers"]["dispatchLedger"] = containers["ledger"]
    document["containers"]["deadLetter"] = containers["deadletter"]
    for entry in document["subscriptions"]:
        prefix = entry["filter"]["subjectBeginsWith"]
        for old, new in moved.items():
            prefix = prefix.replace(f"/containers/{old}/", f"/containers/{new}/")
        entry["filter"]["subjectBeginsWith"] = prefix
        entry.setdefault("retryPolicy", {}).update(retry)
        for item in entry["filter"].get("advancedFilters", []):
            if item["key"] == "data.api":
                item["values"] = [*item["values"], *extra_apis]
    return parse_routes(document)


@dataclass
class RecordingTarget:
    """A delivery target that records each event and answers with ``statuses`` in turn
    (the last one repeats)."""

    statuses: list[int] = field(default_factory=lambda: [200])
    up: bool = True
    description: str = "recording target"
    deliveries: list[tuple[str, dict[str, Any], float]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def available(self) -> bool:
        return self.up

    def deliver(self, function: str, event: Mapping[str, Any]) -> Result:
        with self.lock:
            self.deliveries.append((function, dict(event), time.monotonic()))
            status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
        return result_for_status(status)

    def events(self) -> list[dict[str, Any]]:
        with self.lock:
            return [event for _, event, _ in self.deliveries]


def _proc_stats() -> dict[int, list[str]]:
    """Every live process's /proc/<pid>/stat fields after the command name (state first)."""
    stats: dict[int, list[str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name may hold spaces and parentheses: fields follow the last ')'.
        stats[int(entry.name)] = stat[stat.rfind(")") + 2 :].split()
    return stats


def child_pids(pid: int) -> set[int]:
    """Every live descendant of ``pid``, from /proc."""
    parents = {child: int(fields[1]) for child, fields in _proc_stats().items()}
    found: set[int] = set()
    frontier = [pid]
    while frontier:
        current = frontier.pop()
        for child, parent in parents.items():
            if parent == current and child not in found:
                found.add(child)
                frontier.append(child)
    return found


def process_group_members(pgid: int) -> set[int]:
    """Live (non-zombie) processes whose process group is ``pgid``."""
    return {
        member
        for member, fields in _proc_stats().items()
        if int(fields[2]) == pgid and fields[0] != "Z"
    }


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2 :].split()[0] != "Z"


# Core Tools cannot be installed here, so tests of the local loop's func mode put this
# `func` first on PATH: the functions host stand-in, started the way the loop starts `func
# start` (from the project root, which `-m` puts on sys.path).
FAKE_FUNC = """#!/bin/sh
exec {python} -m tools.standins.functions_host "$@"
"""


def install_fake_func(bin_dir: Path, python: str) -> Path:
    bin_dir.mkdir(parents=True, exist_ok=True)
    path = bin_dir / "func"
    path.write_text(FAKE_FUNC.format(python=shlex.quote(python)))
    path.chmod(0o755)
    return path
