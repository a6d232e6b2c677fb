"""A folder drop: 10,000 files and one ``_SUCCESS`` marker, in folder scope and in file scope.

Each blob's BlobCreated event goes through the batch route's filter as the routes file and
the Bicep give it for the scope (``tools.routes``, the same code the local event source
filters with), and each event that passes is delivered to ``dispatch_batch_job`` through
the worker's converter, with the ledger on Azurite and the jobs and identity stand-ins:
the events the function sees, the jobs it starts and the tokens it asks for are counted.
The events are built for blobs that exist only as events: the function reads none of them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from bench.common import Table, batch_stand_ins
from tools import azurite
from tools import events as build

FILES = 10_000
MARKER = "_SUCCESS"
WORKERS = 8
VARIANTS = ("folder scope", "file scope")


@dataclass
class Run:
    variant: str
    offered: int  # events the storage account emitted
    delivered: int  # events the subscription's filter let through to the function
    wall: float
    jobs: int
    posts: int
    token_requests: int


def _events(blob_url: str, files: int) -> list[dict[str, Any]]:
    names = [f"incoming/drop-01/part-{n:05d}.csv" for n in range(files)]
    names.append(f"incoming/drop-01/{MARKER}")
    return [
        build.blob_created(
            account=azurite.ACCOUNT,
            service_url=blob_url,
            container="batch-input",
            blob_name=name,
            etag=f'"0x8D{number:013X}"',
            content_type="text/csv",
            content_length=100,
            schema=build.CLOUD_EVENT_SCHEMA,
        )
        for number, name in enumerate(names)
    ]


def run_variant(variant: str, storage: azurite.Azurite, files: int) -> Run:
    import os

    from tools.eventsource.targets import InProcessTarget, indexed_functions
    from tools.routes import load_routes

    ledger = f"ledger-{variant.replace(' ', '-')}-{time.time_ns()}"
    with batch_stand_ins(storage.connection_string, ledger) as (identity, jobs):
        folder = variant == "folder scope"
        os.environ["BATCH_JOB_SCOPE"] = "folder" if folder else "file"
        route = load_routes(folder_marker=MARKER if folder else None).by_name("batch")
        events = _events(storage.blob_url, files)
        indexed_functions()
        target = InProcessTarget()
        started = time.perf_counter()
        passed = [event for event in events if route.matches(event)]
        _deliver(lambda event: _one(target, event), passed)
        wall = time.perf_counter() - started
        return Run(
            variant,
            len(events),
            len(passed),
            wall,
            len(jobs.jobs),
            len(jobs.posts()),
            len(identity.token_requests),
        )


def _one(target: Any, event: dict[str, Any]) -> None:
    result = target.deliver("dispatch_batch_job", event)
    assert result.delivered, result


def _deliver(work: Callable[[dict[str, Any]], None], events: list[dict[str, Any]]) -> None:
    lock = threading.Lock()
    failures: list[BaseException] = []

    def one(event: dict[str, Any]) -> None:
        try:
            work(event)
        except BaseException as exc:
            with lock:
                failures.append(exc)

    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        list(pool.map(one, events))
    if failures:
        raise failures[0]


def run(files: int, log: Callable[[str], None]) -> list[Run]:
    import logging

    logging.getLogger("handlers").setLevel(logging.WARNING)  # one INFO line per event
    runs = []
    with azurite.start() as storage:
        for variant in VARIANTS:
            runs.append(run_variant(variant, storage, files))
            log(f"  folders {variant}: {runs[-1].wall:.1f} s")
    return runs


def table(runs: list[Run], files: int) -> Table:
    result = Table(
        f"10. Folder drop: {files:,} files then one {MARKER}, batch route and "
        "dispatch_batch_job, local stand-ins",
        [
            "variant",
            "events emitted",
            "events delivered",
            "jobs started",
            "POSTs",
            "token requests",
            "wall s",
            "vs file scope",
        ],
    )
    baseline = next(r.wall for r in runs if r.variant == "file scope")
    for r in runs:
        result.add(
            r.variant,
            r.offered,
            r.delivered,
            r.jobs,
            r.posts,
            r.token_requests,
            f"{r.wall:.2f}",
            f"{r.wall / baseline:.3f}x",
        )
    result.notes.append(
        "Folder scope: the subscription's subjectEndsWith /_SUCCESS lets one event through, "
        "which starts one job over the folder (UriFolder). File scope: every file is a job, "
        "and the marker one more. Targets: folder scope 1 event, 1 job, 1 token request."
    )
    return result


def verdicts(runs: list[Run]) -> list[str]:
    folder = next(r for r in runs if r.variant == "folder scope")
    met = folder.delivered == 1 and folder.jobs == 1 and folder.token_requests == 1
    return [
        f"- folders: folder scope delivered {folder.delivered} event, started {folder.jobs} "
        f"job, asked {folder.token_requests} token (targets 1, 1, 1): "
        + ("met" if met else "MISSED")
    ]
