"""Batch job tracking: one track_batch_jobs pass over 1,000 open jobs against the local jobs
endpoint and managed identity stand-ins, with 4,000 finished jobs in the ledger beside them.

Variants, each on fresh stand-ins, a fresh ledger and a fresh process context:
- steady: markers already noted (job name, last status), nothing changed: one status GET
  per open job and no record read;
- first look: markers as the dispatch leaves them: each record is read, noted on its
  marker, and the learned status written;
- all finish: every job completed since the last run: record read and written, marker
  removed;
- ledger scan (baseline): what a tracker without the open-jobs index does: list the whole
  ledger and read every record to find the open ones, then ask the same endpoint.
Storage requests are counted by a pass-through in front of Azurite, endpoint and token
requests by the stand-ins.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from bench.common import Table, batch_stand_ins, by_variant, medians_note
from tools import azurite, seed
from tools.counting_proxy import counting_proxy

OPEN = 1000
CLOSED = 4000
WORKERS = 8
VARIANTS = ("steady", "first look", "all finish", "ledger scan (baseline)")


@dataclass
class Run:
    variant: str
    wall: float
    status_requests: int
    token_requests: int
    storage_requests: int
    record_reads: int
    listings: int
    jobs_connections: int


def _records(source: str) -> tuple[list[seed.Blob], list[tuple[str, str]]]:
    """The ledger records (open and closed) and (record name, job name) of the open ones."""
    from handlers.batch_ledger import ledger_prefix

    blobs: list[seed.Blob] = []
    open_jobs = []
    for number in range(OPEN + CLOSED):
        blob = f"incoming/part-{number:05d}.csv"
        name = f"{ledger_prefix(source, blob)}0x8D{number:013X}.json"
        job = f"batchjob-{number:05d}"
        status = "Running" if number < OPEN else "Completed"
        record = {
            "status": "dispatched",
            "container": source,
            "blob": blob,
            "jobName": job,
            "jobStatus": status,
            "dispatchedAt": "2026-11-22T10:00:00.000+00:00",
        }
        blobs.append((name, json.dumps(record).encode(), {}))
        if number < OPEN:
            open_jobs.append((name, job))
    return blobs, open_jobs


def run_variant(variant: str, storage: azurite.Azurite) -> Run:
    from handlers import batch_index
    from handlers.batch_tracking import TrackLimits, track
    from handlers.context import AppContext

    ledger = f"ledger-{variant.split(maxsplit=1)[0]}-{time.time_ns()}"
    with (
        counting_proxy(storage) as proxy,
        batch_stand_ins(proxy.connection_string, ledger) as (identity, jobs),
    ):
        records, open_jobs = _records("batch-input")
        noted = variant in ("steady", "all finish")
        markers = [
            (
                batch_index.marker_name(name),
                b"",
                batch_index.noted(job, "Running") if noted else {},
            )
            for name, job in open_jobs
        ]
        seed.put_blobs(storage.blob_url, ledger, records + markers)
        for _, job in open_jobs:
            jobs.add_job(job, "Completed" if variant == "all finish" else "Running")
        ctx = AppContext.from_env()
        client = ctx.batch_client
        assert client is not None
        client.token()  # the token is not what is measured; it is counted below
        proxy.clear()
        started = time.perf_counter()
        if variant == "ledger scan (baseline)":
            _ledger_scan(ctx)
        else:
            report = track(ctx, TrackLimits(page=OPEN, workers=WORKERS, seconds=600))
            assert report.asked == OPEN and report.first_problem is None, report
        wall = time.perf_counter() - started
        seen = proxy.requests()
        return Run(
            variant,
            wall,
            jobs.requests_by_kind()["status"],
            len(identity.token_requests),
            len(seen),
            sum(1 for s in seen if s.method == "GET" and not s.is_listing),
            sum(1 for s in seen if s.is_listing),
            jobs.connections,
        )


def _ledger_scan(ctx: Any) -> None:
    """The baseline: every record read to find the open jobs, then the same status GETs."""
    from handlers.batch_ledger import read_ledger

    container = ctx.blob_service.get_container_client(ctx.settings.ledger_container)
    names = [blob.name for blob in container.list_blobs() if not blob.name.startswith("_")]

    def look(name: str) -> None:
        found = read_ledger(container.get_blob_client(name))
        if found and found[0].get("jobStatus") not in ("Completed", "Failed", "Canceled"):
            ctx.batch_client.job_status(found[0]["jobName"])

    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        list(pool.map(look, names))


def run(repeat: int, log: Callable[[str], None]) -> list[Run]:
    import logging

    logging.getLogger("handlers").setLevel(logging.WARNING)  # one INFO line per change
    runs = []
    for number in range(repeat):
        for variant in VARIANTS:
            started = time.perf_counter()
            # A fresh Azurite each time: its writes slow down as earlier runs' blobs pile up,
            # which would be charged to whichever variant runs last.
            with azurite.start() as storage:
                runs.append(run_variant(variant, storage))
            log(f"  tracking {variant} run {number + 1}: {time.perf_counter() - started:.1f} s")
    return runs


def table(runs: list[Run]) -> Table:
    result = Table(
        f"5. Batch job tracking: one pass over {OPEN} open jobs ({CLOSED} finished beside "
        f"them), {WORKERS} threads, local stand-ins",
        [
            "variant",
            "wall s",
            "ms/open job",
            "vs ledger scan",
            "status requests",
            "token requests",
            "storage requests",
            "record reads",
            "listings",
            "jobs TCP connections",
        ],
    )
    for row in by_variant(runs, VARIANTS, lambda r: r.wall, baseline=VARIANTS[-1]):
        counts = row.worst(
            lambda r: (
                r.status_requests,
                r.token_requests,
                r.storage_requests,
                r.record_reads,
                r.listings,
                r.jobs_connections,
            )
        )
        result.add(*row.timing(OPEN), *counts)
    result.notes.append(
        medians_note(
            runs,
            VARIANTS,
            "one status request per open job, one token request, no record read when "
            "nothing changed.",
        )
    )
    return result
