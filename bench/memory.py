"""The decode budget under load: 16 concurrent 100-megapixel decodes (8 PNG, 8 HEIC) through
create_thumbnail against Azurite, once with THUMBNAIL_DECODE_BUDGET_MB at its default and
once with it off (0), each in a fresh interpreter whose peak RSS is the figure.

The parent generates the two images once (cached in bench/out/cache/), starts an in-memory
Azurite, uploads the 16 blobs and writes their BlobCreated events to a file. Each child
imports function_app, warms the code paths on two small images, notes its RSS (the baseline)
and then delivers the 16 events from 16 threads at once through the worker's converter, as
a host with perInstanceConcurrency 16 would. A delivery that fails transiently (the budget
stayed full for its wait) is delivered again after REDELIVERY_SECONDS, as Event Grid would
(Event Grid waits 10 s, 30 s, 1 min...). The child reports VmHWM, its baseline, the most the
budget ever had reserved, the deliveries and their durations.

Stated overhead, what the budget does not count: the baseline and what each event holds
before its reservation. A source over PREDICT_ABOVE bytes (all 16 here) reserves its file
and the storage SDK's download buffers with its decode, before the download, so only its
header read (HEAD_BYTES) is outside; a smaller one would be outside with its bytes and buffers.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import images
from bench.common import ROOT, MiB, Table, current_rss, mib, peak_rss

CONCURRENT = 16
PER_FORMAT = CONCURRENT // 2
SIZE = (12240, 8160)  # 99.9 megapixels, 3:2
CACHE = ROOT / "bench" / "out" / "cache"
REDELIVERY_SECONDS = 2.0
MAX_ATTEMPTS = 30  # Event Grid's default maxDeliveryAttempts
EVENT_GRID_TIMEOUT = 30.0  # a delivery slower than this counts as failed in Azure
# The budget-off child would hold every decode at once; it runs only with this much of the
# machine's available memory to spare beyond what it is predicted to need.
HEADROOM = 1.25


@dataclass(frozen=True)
class Source:
    label: str
    name: str
    content_type: str
    make: Callable[[], bytes]
    version: str = ""  # part of the cache file's name: change it when ``make`` changes


SOURCES = (
    # Low grain: a 100 MP photo-like PNG of ~120 MB (THUMBNAIL_MAX_BYTES is 256 MiB).
    Source("PNG", "100mp.png", "image/png", lambda: images.encode(_photo(), "PNG")),
    Source("HEIC", "100mp.heic", "image/heic", lambda: _heic(_photo()), "tiled512-"),
)


def _photo() -> Any:
    return images.photo(SIZE, seed=61, noise=0.02)


def _heic(image: Any) -> bytes:
    import pillow_heif

    pillow_heif.register_heif_opener()
    # Split into 512-pixel tiles, as phones and cameras write large HEICs: HEVC itself
    # allows at most 8192x4320-odd pictures, and libde265 refuses a 100 MP one.
    options = {"quality": 80, "enc_params": {"preset": "ultrafast"}, "tile_size": 512}
    return images.encode(image, "HEIF", **options)


def cached(source: Source, log: Callable[[str], None]) -> bytes:
    path = CACHE / f"{SIZE[0]}x{SIZE[1]}-{source.version}{source.name}"
    if not path.exists():
        started = time.perf_counter()
        CACHE.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        partial.write_bytes(source.make())
        partial.rename(path)
        log(f"  generated {path.relative_to(ROOT)} in {time.perf_counter() - started:.0f} s")
    return path.read_bytes()


@dataclass
class Run:
    config: str
    budget_mb: int
    baseline: int  # bytes: the child's RSS after imports and warm-up
    peak: int  # bytes: the child's VmHWM
    outside: int  # bytes the 16 events hold before (outside) their reservations
    reserved_peak: int  # bytes: the most the budget had reserved at once
    written: int
    attempts: int
    transient: int
    slowest: float  # seconds, the longest single delivery
    over_timeout: int  # deliveries longer than Event Grid's 30 s
    total: float  # seconds, first delivery to last thumbnail

    @property
    def overhead(self) -> int:
        return self.baseline + self.outside

    @property
    def bound(self) -> int:
        """Budget plus stated overhead, for the default budget (what the run is held to)."""
        return self.budget_mb * MiB + self.overhead


CONFIGS = ("default budget", "budget off")


def run(log: Callable[[str], None]) -> list[Run | str]:
    """One Run per configuration, or a sentence saying why that one was not run."""
    from handlers.settings import DEFAULTS
    from tools import azurite, events

    default_mb = int(DEFAULTS["THUMBNAIL_DECODE_BUDGET_MB"])
    bodies = {source.label: cached(source, log) for source in SOURCES}
    small = {
        "PNG": images.png((64, 48), seed=62),
        "HEIC": _heic(images.photo((64, 48), seed=63)),
    }
    with azurite.start() as storage, tempfile.TemporaryDirectory(prefix="bench-memory-") as work:
        from azure.storage.blob import BlobServiceClient, ContentSettings

        service = BlobServiceClient.from_connection_string(storage.connection_string)
        service.create_container("images")

        def upload(name: str, data: bytes, content_type: str) -> dict[str, Any]:
            result = service.get_blob_client("images", name).upload_blob(
                data, content_settings=ContentSettings(content_type=content_type)
            )
            return events.blob_created(
                account=azurite.ACCOUNT,
                service_url=storage.blob_url,
                container="images",
                blob_name=name,
                etag=str(result["etag"]),
                content_type=content_type,
                content_length=len(data),
            )

        started = time.perf_counter()
        load = []
        for source in SOURCES:
            for number in range(PER_FORMAT):
                load.append(
                    upload(
                        f"load/{number:02d}-{source.name}",
                        bodies[source.label],
                        source.content_type,
                    )
                )
        warm = [upload(f"warm/{s.name}", small[s.label], s.content_type) for s in SOURCES]
        log(f"  uploaded {len(load)} blobs in {time.perf_counter() - started:.0f} s")
        # Interleave the formats, so that both kinds are in flight from the first moment.
        load = [
            event
            for pair in zip(load[:PER_FORMAT], load[PER_FORMAT:], strict=True)
            for event in pair
        ]
        plan = Path(work) / "events.json"
        plan.write_text(json.dumps({"warm": warm, "load": load}), encoding="utf-8")
        source_bytes = PER_FORMAT * sum(len(data) for data in bodies.values())
        outside = PER_FORMAT * sum(_outside(len(data)) for data in bodies.values())
        need = _predicted_need(bodies) + source_bytes
        results: list[Run | str] = []
        for number, config in enumerate(CONFIGS):
            budget_mb = default_mb if config == "default budget" else 0
            available = _available_memory()
            if budget_mb == 0 and available < HEADROOM * need:
                results.append(
                    f"{config}: not run, it would need about {mib(need)} MiB and the machine "
                    f"has {mib(available)} MiB available"
                )
                log(f"  {results[-1]}")
                continue
            started = time.perf_counter()
            env = {
                **os.environ,
                "DATA_STORAGE": storage.connection_string,
                "THUMBNAIL_CONTAINER": f"thumbs{number}",
                "THUMBNAIL_DECODE_BUDGET_MB": str(budget_mb),
            }
            env.pop("BATCH_ENDPOINT_URI", None)
            out = subprocess.run(
                [sys.executable, "-m", "bench.memory", "child", str(plan)],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
                check=False,
            )
            if out.returncode != 0:
                raise RuntimeError(f"memory child ({config}) failed:\n{out.stderr[-3000:]}")
            figures = json.loads(out.stdout.strip().splitlines()[-1])
            results.append(Run(config, budget_mb, outside=outside, **figures))
            log(f"  {config}: {time.perf_counter() - started:.0f} s")
    return results


def _outside(length: int) -> int:
    """What an event holds outside its reservation, for a source of ``length`` bytes."""
    from handlers import sources

    if length > sources.PREDICT_ABOVE:
        return sources.HEAD_BYTES
    return length + sources.download_buffers(length)


def _predicted_need(bodies: dict[str, bytes]) -> int:
    """What the decodes reserve if all run at once (the budget's own prediction)."""
    import io

    from PIL import Image

    from handlers import images as app_images
    from handlers.decode_cost import decode_cost

    total = 0
    for data in bodies.values():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # 100 MP, on purpose
            image = Image.open(io.BytesIO(data), formats=app_images.FORMATS)
        with image:
            total += PER_FORMAT * decode_cost(image, 128)
    return total


def _available_memory() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


def table(results: list[Run | str], default_mb: int) -> Table:
    result = Table(
        f"7. Decode budget: {CONCURRENT} concurrent 100 MP decodes ({PER_FORMAT} PNG, "
        f"{PER_FORMAT} HEIC) through create_thumbnail",
        [
            "configuration",
            "THUMBNAIL_DECODE_BUDGET_MB",
            "peak RSS MiB",
            "baseline MiB",
            "outside reservations MiB",
            f"{default_mb} + overhead MiB",
            "peak <= budget + overhead",
            "most reserved MiB",
            "thumbnails",
            "deliveries",
            "transient",
            "slowest delivery s",
            "over 30 s",
            "to last thumbnail s",
        ],
    )
    for r in results:
        if isinstance(r, str):
            result.notes.append(f"Not run: {r}.")
            continue
        bound = default_mb * MiB + r.overhead
        result.add(
            r.config,
            r.budget_mb,
            mib(r.peak),
            mib(r.baseline),
            mib(r.outside),
            mib(bound),
            "yes" if r.peak <= bound else "no",
            mib(r.reserved_peak),
            f"{r.written}/{CONCURRENT}",
            r.attempts,
            r.transient,
            f"{r.slowest:.1f}",
            r.over_timeout,
            f"{r.total:.1f}",
        )
    result.notes.append(
        "Each configuration runs in a fresh interpreter. Peak RSS: its VmHWM. Baseline: its RSS "
        "with function_app imported and two small images thumbnailed. Overhead, what the budget "
        "does not count = baseline + what the events hold outside their reservations: every "
        "source here is large, so its file and download buffers are reserved with its decode "
        "before the download and only its header read is outside; the budget-off row (no "
        "reservations, every file downloaded at once) is held to the same line to show what "
        "the budget saves. Most reserved: the budget's own count at its highest (decodes, "
        "files and download buffers). A transient failure (the budget stayed full for 10 s) "
        "is delivered again "
        f"{REDELIVERY_SECONDS:g} s later (Event Grid: 10 s, 30 s, 1 min...); over 30 s: "
        "deliveries that Event Grid would have counted as failed and sent again."
    )
    return result


def verdicts(results: list[Run | str], default_mb: int) -> list[str]:
    runs = {r.config: r for r in results if isinstance(r, Run)}
    lines = []
    on = runs.get("default budget")
    if on is not None:
        ok = on.peak <= on.bound and on.written == CONCURRENT
        lines.append(
            f"- memory: {CONCURRENT} concurrent 100 MP PNG/HEIC, peak RSS {mib(on.peak)} MiB "
            f"<= budget {default_mb} MiB + overhead {mib(on.overhead)} MiB, every thumbnail "
            f"written: {'met' if ok else 'MISSED'}"
        )
    off = runs.get("budget off")
    lines.append(
        f"- memory: the same run with the budget off peaked at {mib(off.peak)} MiB"
        if off is not None
        else "- memory: the budget-off run was not run (see its table)"
    )
    return lines


# --- The child -------------------------------------------------------------------------------


def _child(plan_path: str) -> None:
    for noisy in ("handlers", "tools", "azure"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    from handlers.context import get_context
    from tools.eventsource.targets import InProcessTarget, indexed_functions

    plan = json.loads(Path(plan_path).read_text(encoding="utf-8"))
    indexed_functions()
    # No timeout of its own: the durations are recorded and compared with Event Grid's.
    target = InProcessTarget(timeout=float("inf"))
    for event in plan["warm"]:
        warmed = target.deliver("create_thumbnail", event)
        if not warmed.delivered:
            raise RuntimeError(f"warm-up delivery failed: {warmed.detail}")
    budget = get_context().decode_budget
    budget_before = budget.peak
    baseline = current_rss()

    lock = threading.Lock()
    counts = {"attempts": 0, "transient": 0, "over": 0}
    durations: list[float] = []
    finished: list[float] = []
    failures: list[str] = []

    def deliver(event: dict[str, Any]) -> None:
        for _ in range(MAX_ATTEMPTS):
            began = time.monotonic()
            result = target.deliver("create_thumbnail", event)
            took = time.monotonic() - began
            with lock:
                counts["attempts"] += 1
                durations.append(took)
                counts["over"] += took > EVENT_GRID_TIMEOUT
            if result.delivered:
                with lock:
                    finished.append(time.monotonic())
                return
            if "DecodeBusyError" not in (result.detail or ""):
                with lock:
                    failures.append(result.detail or result.outcome)
                return
            with lock:
                counts["transient"] += 1
            time.sleep(REDELIVERY_SECONDS)  # Event Grid's back-off, shortened

    started = time.monotonic()
    threads = [threading.Thread(target=deliver, args=(event,)) for event in plan["load"]]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise RuntimeError(f"deliveries failed for good: {failures}")
    # A delivery also succeeds when the function logged a permanent failure: count what
    # is in storage.
    ctx = get_context()
    thumbnails = ctx.blob_service.get_container_client(ctx.settings.thumbnail_container)
    written = sum("load/" in blob.name for blob in thumbnails.list_blobs())
    print(
        json.dumps(
            {
                "baseline": baseline,
                "peak": peak_rss(),
                "reserved_peak": max(budget.peak, budget_before),
                "written": written,
                "attempts": counts["attempts"],
                "transient": counts["transient"],
                "slowest": max(durations),
                "over_timeout": counts["over"],
                "total": max(finished) - started,
            }
        )
    )


if __name__ == "__main__" and len(sys.argv) == 3 and sys.argv[1] == "child":
    _child(sys.argv[2])
