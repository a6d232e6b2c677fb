"""Batch dispatch: 1000 BlobCreated events against the local jobs endpoint and managed
identity stand-ins (tools/standins/), from a pool of worker threads.

Variants, each on fresh stand-ins and a fresh process context:
- function: the dispatch_batch_job function as the host calls it (worker converter, ledger
  claim and record in Azurite, cached token, pooled connections);
- client only: the same BatchJobClient without the ledger, to show what the ledger costs;
- seed Logic App: what the Logic App in the seed does per event: a new token request and a
  new connection for every POST.
Connections are counted where the stand-ins accept them.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import requests

from bench.common import Table, batch_stand_ins, by_variant, medians_note, ms, percentile
from tools import azurite
from tools import events as build

EVENTS = 1000
WORKERS = 8


@dataclass
class Run:
    variant: str
    wall: float
    latencies: list[float]
    jobs: int
    token_requests: int
    job_connections: int
    identity_connections: int


def _events(blob_url: str) -> list[dict[str, Any]]:
    return [
        build.blob_created(
            account=azurite.ACCOUNT,
            service_url=blob_url,
            container="batch-input",
            blob_name=f"incoming/2026/part-{number:04d}.csv",
            etag=f'"0x8D{number:013X}"',
            content_type="text/csv",
            content_length=100,
            schema=build.CLOUD_EVENT_SCHEMA,
        )
        for number in range(EVENTS)
    ]


def _drive(
    work: Callable[[dict[str, Any]], None], events: list[dict[str, Any]]
) -> tuple[float, list[float]]:
    latencies: list[float] = []
    lock = threading.Lock()

    def one(event: dict[str, Any]) -> None:
        started = time.perf_counter()
        work(event)
        with lock:
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        for future in [pool.submit(one, event) for event in events]:
            future.result()
    return time.perf_counter() - started, latencies


def run_variant(variant: str, storage: azurite.Azurite) -> Run:
    from handlers.batch_client import JobSpec
    from handlers.context import AppContext
    from tools.eventsource.targets import InProcessTarget, indexed_functions

    ledger = f"ledger-{variant.replace(' ', '-')}-{time.time_ns()}"
    with batch_stand_ins(storage.connection_string, ledger) as (identity, jobs):
        events = _events(storage.blob_url)
        if variant == "function":
            indexed_functions()
            target = InProcessTarget()

            def work(event: dict[str, Any]) -> None:
                result = target.deliver("dispatch_batch_job", event)
                assert result.delivered, result

        elif variant == "client only":
            context = AppContext.from_env()
            client = context.batch_client
            assert client is not None

            def work(event: dict[str, Any]) -> None:
                url = event["data"]["url"]
                client.submit(JobSpec(f"job-{uuid.uuid4()}", url, None, str(uuid.uuid4())))

        else:
            token_url = identity.environment()["IDENTITY_ENDPOINT"]

            def work(event: dict[str, Any]) -> None:
                token = requests.get(
                    token_url,
                    params={"resource": "https://ml.azure.com", "api-version": "2019-08-01"},
                    headers={"X-IDENTITY-HEADER": identity.secret},
                    timeout=30,
                ).json()["access_token"]
                body = {
                    "properties": {
                        "InputData": {
                            "input_data": {"JobInputType": "UriFile", "Uri": event["data"]["url"]}
                        }
                    }
                }
                response = requests.post(
                    jobs.scoring_uri,
                    data=json.dumps(body),
                    headers={
                        "Authorization": f"Bearer {token}",
                        "Content-Type": "application/json",
                    },
                    timeout=30,
                )
                response.raise_for_status()

        wall, latencies = _drive(work, events)
        return Run(
            variant,
            wall,
            latencies,
            len(jobs.jobs),
            len(identity.token_requests),
            jobs.connections,
            identity.connections,
        )


VARIANTS = ("function", "client only", "seed Logic App")


def run(repeat: int, log: Callable[[str], None]) -> list[Run]:
    import logging

    logging.getLogger("handlers").setLevel(logging.WARNING)  # one INFO line per event
    runs = []
    with azurite.start() as storage:
        for number in range(repeat):
            for variant in VARIANTS:
                started = time.perf_counter()
                runs.append(run_variant(variant, storage))
                log(f"  dispatch {variant} run {number + 1}: {time.perf_counter() - started:.1f} s")
    return runs


def table(runs: list[Run]) -> Table:
    result = Table(
        f"3. Batch dispatch: {EVENTS} events, {WORKERS} worker threads, local stand-ins",
        [
            "variant",
            "wall s",
            "ms/event (wall/events)",
            "vs seed",
            "latency p50 ms",
            "latency p95 ms",
            "jobs",
            "token requests",
            "jobs TCP connections",
            "identity TCP connections",
        ],
    )
    for row in by_variant(runs, VARIANTS, lambda r: r.wall, baseline="seed Logic App"):
        latencies = [value for r in row.runs for value in r.latencies]
        result.add(
            *row.timing(EVENTS),
            ms(percentile(latencies, 0.5)),
            ms(percentile(latencies, 0.95)),
            *row.worst(
                lambda r: (r.jobs, r.token_requests, r.job_connections, r.identity_connections)
            ),
        )
    result.notes.append(
        medians_note(
            runs,
            VARIANTS,
            "1 token request, at most as many jobs connections as worker threads.",
        )
    )
    return result
