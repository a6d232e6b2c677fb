"""Helpers for the event source and local loop tests: a Functions host stand-in that speaks
the Event Grid webhook contract, a recording delivery target, routes on a test's own
containers, and polling with a deadline."""

from __future__ import annotations

import copy
import json
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.servers import Recorded, Scripted, StandIn
from tools.eventsource import Result
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
        from tools.eventsource.delivery import result_for_status

        return result_for_status(status)

    def events(self) -> list[dict[str, Any]]:
        with self.lock:
            return [event for _, event, _ in self.deliveries]


class FunctionsHostStandIn(StandIn):
    """``func start``'s Event Grid webhook: POST /runtime/webhooks/EventGrid?functionName=...

    Records every request. With ``run_functions`` it runs each event through the worker's
    converter and the indexed function (as the host does) and answers 202, or 500 when the
    function raises; a functionName the app lacks still gets 202, as the real host answers.
    Otherwise it answers ``status``. Stops itself after ``lifetime`` seconds.
    """

    def __init__(
        self,
        port: int = 0,
        *,
        run_functions: bool = True,
        status: int = 202,
        lifetime: float = 120.0,
    ) -> None:
        self.run_functions = run_functions
        self.status = status
        super().__init__(lifetime=lifetime, port=port)

    def answer(
        self, request: Recorded, scripted: Scripted | None
    ) -> tuple[int, Any, dict[str, str]]:
        if scripted is not None:
            return scripted.status, scripted.body, scripted.headers
        return self._status(request), None, {}

    def _status(self, request: Recorded) -> int:
        if not self.run_functions:
            return self.status
        from tests.conftest import functions, invoke

        name = (request.query.get("functionName") or [""])[0]
        if request.path != "/runtime/webhooks/EventGrid" or name not in functions():
            return 202
        try:
            for event in request.json():
                invoke(name, event)
        except Exception:
            return 500
        return 202


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


def lines_until(lines: Iterator[str], marker: str, seen: list[str]) -> str:
    """Consume ``lines`` into ``seen`` until one contains ``marker``; return it."""
    for line in lines:
        seen.append(line)
        if marker in line:
            return line
    raise AssertionError(f"output ended before {marker!r}:\n" + "".join(seen[-40:]))


# A stand-in for Core Tools' `func start`, for tests of the local loop's func mode (Core
# Tools cannot be installed here): it comes up after a delay, as the real host does, serves
# the Event Grid webhook by running the app's functions through the worker's converter, and
# starts a child process of its own, as the real host starts its language worker.
FAKE_FUNC = """#!{python}
import json, os, subprocess, sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

assert sys.argv[1] == "start", sys.argv
port = int(sys.argv[sys.argv.index("--port") + 1])
sys.path.insert(0, os.getcwd())
worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
time.sleep(1.0)

import function_app
from azure.functions.eventgrid import EventGridEventInConverter
from azure.functions.meta import Datum

functions = {{fn.get_function_name(): fn for fn in function_app.app.get_functions()}}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        parts = urlsplit(self.path)
        name = parse_qs(parts.query).get("functionName", [""])[0]
        status = 202
        if parts.path == "/runtime/webhooks/EventGrid" and name in functions:
            try:
                for event in json.loads(body):
                    decoded = EventGridEventInConverter.decode(
                        Datum(json.dumps(event), "json"), trigger_metadata={{}}
                    )
                    functions[name].get_user_function()(decoded)
            except Exception:
                status = 500
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()


print("fake func host listening on", port, "worker", worker.pid, flush=True)
ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
"""


def install_fake_func(bin_dir: Path, python: str) -> Path:
    bin_dir.mkdir(parents=True, exist_ok=True)
    path = bin_dir / "func"
    path.write_text(FAKE_FUNC.format(python=python))
    path.chmod(0o755)
    return path
