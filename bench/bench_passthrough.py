"""What the local event source costs: uploads straight to Azurite against uploads through the
pass-through, in the same run, side by side.

    .venv/bin/python bench/bench_passthrough.py [--repeat 5] [--quick]

One in-memory Azurite; the event source in this process in front of it, routing with the
project's subscriptions and delivering to a target that accepts at once (so the figures are
the pass-through and the event bookkeeping, not the functions). Each case alternates direct
and proxied runs and reports the medians, their ratio and the throughput.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from azure.storage.blob import BlobServiceClient  # noqa: E402

from bench.common import machine as common_machine  # noqa: E402
from tools import azurite  # noqa: E402
from tools.eventsource import EventSource, EventSourceConfig, Result  # noqa: E402

MiB = 1024 * 1024


class AcceptingTarget:
    """Takes every event at once and counts them."""

    description = "accepting target (bench)"

    def __init__(self) -> None:
        self.count = 0

    def available(self) -> bool:
        return True

    def deliver(self, function: str, event: Mapping[str, Any]) -> Result:
        self.count += 1
        return Result(True, "Succeeded", 200)


@dataclass(frozen=True)
class Case:
    name: str
    size: int  # bytes per blob
    count: int  # blobs per run
    options: dict[str, Any]  # BlobServiceClient options (block sizes)
    concurrency: int = 1


CASES = [
    Case("small Put Blob (4 KiB x 200)", 4 * 1024, 200, {}),
    Case("Put Blob (1 MiB x 40)", MiB, 40, {}),
    Case("large Put Blob (64 MiB x 2)", 64 * MiB, 2, {"max_single_put_size": 64 * MiB}),
    Case(
        "Put Block List (128 MiB, 8 MiB blocks, 4 threads)",
        128 * MiB,
        1,
        {"max_single_put_size": 8 * MiB, "max_block_size": 8 * MiB},
        concurrency=4,
    ),
]
QUICK = [CASES[0], CASES[1]]


def run_case(connection_string: str, container: str, case: Case, data: bytes) -> float:
    service = BlobServiceClient.from_connection_string(connection_string, **case.options)
    client = service.get_container_client(container)
    started = time.perf_counter()
    for number in range(case.count):
        client.upload_blob(
            f"bench/{number}.jpg", data, overwrite=True, max_concurrency=case.concurrency
        )
    return time.perf_counter() - started


def machine() -> dict[str, str]:
    """The shared machine description plus what this benchmark depends on."""
    node = subprocess.run(["node", "--version"], capture_output=True, text=True, check=False)
    package = (ROOT / "node_modules" / "azurite" / "package.json").read_text()
    version = package.split('"version": "', 1)[1].split('"', 1)[0]
    return {**common_machine(), "node": node.stdout.strip(), "azurite": version}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs per case and path")
    parser.add_argument("--quick", action="store_true", help="the two small cases only")
    args = parser.parse_args(argv)
    cases = QUICK if args.quick else CASES

    info = machine()
    with azurite.start() as service, tempfile.TemporaryDirectory() as state:
        target = AcceptingTarget()
        source = EventSource(
            EventSourceConfig(port=0, upstream_port=service.port, state_dir=Path(state)), target
        ).start()
        try:
            direct = BlobServiceClient.from_connection_string(service.connection_string)
            direct.create_container("images")  # routed: every upload makes an event
            rows = []
            for case in cases:
                data = os.urandom(case.size)
                paths: dict[str, Callable[[], float]] = {
                    "direct": lambda c=case, d=data: run_case(
                        service.connection_string, "images", c, d
                    ),
                    "proxy": lambda c=case, d=data: run_case(
                        source.connection_string, "images", c, d
                    ),
                }
                for run in paths.values():
                    run()  # warm-up: connections, Azurite's first allocation
                times: dict[str, list[float]] = {"direct": [], "proxy": []}
                for _ in range(args.repeat):
                    for name, run in paths.items():
                        times[name].append(run())
                medians = {name: statistics.median(values) for name, values in times.items()}
                volume = case.size * case.count / MiB
                rows.append(
                    (
                        case.name,
                        medians["direct"] * 1000,
                        medians["proxy"] * 1000,
                        medians["proxy"] / medians["direct"],
                        # The fastest runs are the least disturbed by other work on the box.
                        min(times["proxy"]) / min(times["direct"]),
                        volume / medians["direct"],
                        volume / medians["proxy"],
                    )
                )
                print(f"  done: {case.name}", file=sys.stderr, flush=True)
            deadline = time.monotonic() + 30
            while source.queue.pending() and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            source.stop()

    for key, value in info.items():
        print(f"{key:8} {value}")
    print(f"runs     median of {args.repeat} per path, alternating, after one warm-up each")
    print(f"events   {target.count} delivered")
    print(f"load     {os.getloadavg()[0]:.2f} (1-minute load average at the end)\n")
    header = (
        "case",
        "direct ms",
        "proxy ms",
        "ratio",
        "ratio of min",
        "direct MiB/s",
        "proxy MiB/s",
    )
    print(f"| {header[0]:50} | " + " | ".join(f"{h:>12}" for h in header[1:]) + " |")
    print(f"|{'-' * 52}|" + "|".join("-" * 13 + ":" for _ in header[1:]) + "|")
    for name, direct_ms, proxy_ms, ratio, ratio_min, direct_rate, proxy_rate in rows:
        print(
            f"| {name:50} | {direct_ms:12.1f} | {proxy_ms:12.1f} | {ratio:12.2f} | "
            f"{ratio_min:12.2f} | {direct_rate:12.1f} | {proxy_rate:12.1f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
