"""End to end on the local loop: HD JPEG uploads through the local event source
(tools/eventsource: pass-through in front of Azurite, persistent queue, delivery workers)
to a thumbnail in Azurite, for the project's function and for a seed-style handler, run
the same way.

Each run starts its own in-memory Azurite and event source with the project's routes
(infra/event-subscriptions.json) and 4 delivery workers; uploads go through the event
source from 4 threads. Latency is from the end of a blob's upload to the moment its
delivery succeeded (the function returned, so the thumbnail is in storage); total is from
the first upload to the last thumbnail.
"""

from __future__ import annotations

import io
import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from azure.storage.blob import BlobServiceClient, ContentSettings
from PIL import Image

from bench import images
from bench.common import Table, by_variant, median, percentile
from tools import azurite
from tools.eventsource import EventSource, EventSourceConfig, InProcessTarget, Report, Result

UPLOADERS = 4
DELIVERY_WORKERS = 4
DISTINCT_IMAGES = 8


def seed_handler(event: Mapping[str, Any], connection_string: str, thumbnails: str) -> None:
    """The seed's thumbnail function (shared/seeds/001), run per event: a new client, the
    container and name cut out of data.url, download, Pillow, upload with overwrite. The
    only change: it writes to the thumbnail container (the seed writes thumbnails/<name>
    into the source container, which the images subscription would deliver again)."""
    blob_url = event["url"]
    service = BlobServiceClient.from_connection_string(connection_string)
    path = urlsplit(blob_url).path.split("/")[2:]  # /<account>/<container>/<blob...>
    container, blob_name = path[0], unquote("/".join(path[1:]))
    data = service.get_blob_client(container, blob_name).download_blob().readall()
    image = Image.open(io.BytesIO(data))
    image.thumbnail((128, 128))
    stream = io.BytesIO()
    image.save(stream, format="JPEG")
    stream.seek(0)
    service.get_blob_client(thumbnails, f"{container}/{blob_name}").upload_blob(
        stream, overwrite=True
    )


class SeedTarget:
    """Delivers to the seed-style handler through the worker's converter, like the host."""

    description = "seed-style handler (in-process)"

    def __init__(self, connection_string: str, thumbnails: str) -> None:
        self.connection_string = connection_string
        self.thumbnails = thumbnails

    def available(self) -> bool:
        return True

    def deliver(self, function: str, event: Mapping[str, Any]) -> Result:
        from azure.functions.eventgrid import EventGridEventInConverter
        from azure.functions.meta import Datum

        if function != "create_thumbnail":
            return Result(True, "Succeeded", 200)
        decoded = EventGridEventInConverter.decode(
            Datum(json.dumps(event), "json"), trigger_metadata={}
        )
        try:
            seed_handler(decoded.get_json(), self.connection_string, self.thumbnails)
        except Exception as exc:
            return Result(False, "GenericError", 500, f"{type(exc).__name__}: {exc}"[:300])
        return Result(True, "Succeeded", 200)


@dataclass
class Run:
    variant: str
    total: float
    latencies: list[float]
    thumbnails: int
    attempts: int


def run_once(variant: str, count: int, bodies: list[bytes]) -> Run:
    from handlers.context import reset_context

    saved = dict(os.environ)
    with azurite.start() as storage, tempfile.TemporaryDirectory(prefix="bench-e2e-") as state:
        done: dict[str, float] = {}
        uploaded: dict[str, float] = {}
        attempts = [0]
        lock = threading.Condition()

        def listen(report: Report) -> None:
            with lock:
                attempts[0] += 1
                if report.final == "delivered":
                    done.setdefault(report.delivery.blob, time.perf_counter())
                    lock.notify_all()

        # The event source's own port is known once it runs; the functions read settings
        # at their first event, which comes after that.
        target_holder: dict[str, Any] = {}

        class Deferred:
            description = "deferred"

            def available(self) -> bool:
                return True

            def deliver(self, function: str, event: Mapping[str, Any]) -> Result:
                return target_holder["target"].deliver(function, event)  # type: ignore[no-any-return]

        source = EventSource(
            EventSourceConfig(
                port=0,
                upstream_port=storage.port,
                state_dir=Path(state),
                workers=DELIVERY_WORKERS,
            ),
            Deferred(),
        ).start()
        try:
            connection = source.connection_string
            os.environ.update(
                {
                    "DATA_STORAGE": connection,
                    "THUMBNAIL_CONTAINER": "thumbnails",
                    "DISPATCH_LEDGER_CONTAINER": "batch-dispatch",
                    "DEADLETTER_CONTAINER": "deadletter",
                }
            )
            os.environ.pop("BATCH_ENDPOINT_URI", None)
            reset_context()
            if variant == "function":
                from tools.eventsource.targets import indexed_functions

                indexed_functions()
                target_holder["target"] = InProcessTarget()
            else:
                target_holder["target"] = SeedTarget(connection, "thumbnails")
            source.dispatcher.listeners.append(listen)
            service = BlobServiceClient.from_connection_string(connection)
            for name in ("images", "thumbnails"):
                service.create_container(name)

            def upload(number: int) -> None:
                name = f"bench/{number:04d}.jpg"
                service.get_blob_client("images", name).upload_blob(
                    bodies[number % len(bodies)],
                    content_settings=ContentSettings(content_type="image/jpeg"),
                )
                with lock:
                    uploaded[f"images/{name}"] = time.perf_counter()

            started = time.perf_counter()
            with ThreadPoolExecutor(max_workers=UPLOADERS) as pool:
                for future in [pool.submit(upload, n) for n in range(count)]:
                    future.result()
            deadline = time.monotonic() + 600
            with lock:
                while len(done) < count and time.monotonic() < deadline:
                    lock.wait(timeout=1.0)
            if len(done) < count:
                raise RuntimeError(f"{variant}: only {len(done)} of {count} thumbnails in time")
            total = max(done.values()) - started
            latencies = [done[blob] - uploaded[blob] for blob in uploaded]
            made = len(list(service.get_container_client("thumbnails").list_blobs()))
            return Run(variant, total, latencies, made, attempts[0])
        finally:
            source.stop()
            os.environ.clear()
            os.environ.update(saved)
            reset_context()


VARIANTS = ("function", "seed-style")


def run(count: int, repeat: int, log: Callable[[str], None]) -> list[Run]:
    for noisy in ("handlers", "tools", "azure"):
        logging.getLogger(noisy).setLevel(logging.WARNING)  # a line per delivery otherwise
    bodies = [images.jpeg((1920, 1080), seed=100 + n) for n in range(DISTINCT_IMAGES)]
    runs = []
    for number in range(repeat):
        for variant in VARIANTS:
            started = time.perf_counter()
            runs.append(run_once(variant, count, bodies))
            log(f"  end to end {variant} run {number + 1}: {time.perf_counter() - started:.0f} s")
    return runs


def table(runs: list[Run], count: int) -> Table:
    result = Table(
        f"2. End to end on the local loop: {count} HD JPEG uploads (1920x1080 q90, ~0.7 MB)",
        [
            "handler",
            "to last thumbnail s",
            "thumbnails/s",
            "vs seed-style",
            "latency p50 ms",
            "latency p95 ms",
            "thumbnails",
            "delivery attempts",
        ],
    )
    for row in by_variant(runs, VARIANTS, lambda r: r.total, baseline="seed-style"):
        result.add(
            row.name,
            f"{row.median:.1f}",
            f"{count / row.median:.1f}",
            row.ratio,
            f"{median([percentile(r.latencies, 0.5) for r in row.runs]) * 1000:.0f}",
            f"{median([percentile(r.latencies, 0.95) for r in row.runs]) * 1000:.0f}",
            min(r.thumbnails for r in row.runs),
            max(r.attempts for r in row.runs),
        )
    result.notes.append(
        f"Medians of {len(runs) // len(VARIANTS)} runs per handler, interleaved; "
        f"{UPLOADERS} upload threads, {DELIVERY_WORKERS} delivery workers, every run on a fresh "
        "Azurite and event source. Latency: end of a blob's upload to its delivery succeeding."
    )
    return result
