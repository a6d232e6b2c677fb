"""Shared pieces: the machine's description, medians, peak memory of a case run alone in a
fresh interpreter, the batch stand-ins a run points the app at, and Markdown tables."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

if TYPE_CHECKING:
    from tools.standins import JobsEndpoint, ManagedIdentityEndpoint

ROOT = Path(__file__).resolve().parent.parent
MiB = 1024 * 1024


def machine() -> dict[str, str]:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram = "?"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                ram = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                break
    except OSError:
        pass
    versions = {"pillow": "?", "pyvips": "not installed", "libvips": "-"}
    try:
        import PIL

        versions["pillow"] = PIL.__version__
        import pyvips

        versions["pyvips"] = pyvips.__version__
        versions["libvips"] = ".".join(str(pyvips.version(n)) for n in range(3))
    except ImportError:
        pass
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    return {
        "system": f"{platform.system()} {platform.release()} {platform.machine()}",
        "cpu": f"{cpu}, {os.cpu_count()} logical cores",
        "ram": ram,
        "python": platform.python_version(),
        "pillow": versions["pillow"],
        "pyvips": f"{versions['pyvips']} (libvips {versions['libvips']})",
        "load average at start": " ".join(f"{value:.2f}" for value in load),
    }


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def current_rss() -> int:
    """Resident set size of this process now, in bytes."""
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


def peak_rss() -> int:
    """Highest resident set size of this process image so far, in bytes.

    VmHWM rather than ru_maxrss: Linux keeps ru_maxrss across fork and exec, so a child
    started by a parent holding 300 MB of test images would report at least those 300 MB.
    VmHWM belongs to the address space that exec made, so it counts the child alone."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


@dataclass
class Memory:
    """Peak memory of one case, each run alone in a fresh interpreter."""

    peak: float  # bytes, the child's ru_maxrss (median of the runs)
    delta: float  # bytes, that peak minus the child's RSS just before the case ran


def memory_of(module: str, args: Sequence[str], repeat: int = 3) -> Memory:
    """Run ``python -m <module> child <args>`` ``repeat`` times; each prints
    {"before": rss, "peak": maxrss}. Returns the medians."""
    peaks, deltas = [], []
    for _ in range(repeat):
        out = subprocess.run(
            [sys.executable, "-m", module, "child", *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
        figures = json.loads(out.stdout.strip().splitlines()[-1])
        peaks.append(figures["peak"])
        deltas.append(figures["peak"] - figures["before"])
    return Memory(median(peaks), median(deltas))


def child_report(run: Callable[[], object]) -> None:
    """In a memory child: note RSS, run the case once, print both figures as JSON."""
    before = current_rss()
    run()
    print(json.dumps({"before": before, "peak": peak_rss()}))


@contextlib.contextmanager
def batch_stand_ins(
    data_storage: str, ledger: str
) -> Iterator[tuple[ManagedIdentityEndpoint, JobsEndpoint]]:
    """Fresh managed-identity and jobs stand-ins, with this process's settings pointed at
    them, at ``data_storage`` and at the run's own ``ledger`` container; afterwards the
    settings and the process context are as they were and the stand-ins stopped, so each
    run starts cold. Imports are local: the memory children of other benches import this
    module, and their figures must not include the app's modules."""
    from handlers.context import reset_context
    from tools.standins import JobsEndpoint, ManagedIdentityEndpoint

    identity = ManagedIdentityEndpoint()
    jobs = JobsEndpoint(identity.token)
    saved = dict(os.environ)
    try:
        for name in list(os.environ):
            if name.startswith(("AZURE_", "MSI_", "IDENTITY_")):
                del os.environ[name]
        os.environ.update(
            {
                **identity.environment(),
                "DATA_STORAGE": data_storage,
                "BATCH_ENDPOINT_URI": jobs.scoring_uri,
                "DISPATCH_LEDGER_CONTAINER": ledger,
            }
        )
        reset_context()
        yield identity, jobs
    finally:
        os.environ.clear()
        os.environ.update(saved)
        reset_context()
        jobs.stop()
        identity.stop()


class _Measured(Protocol):
    @property
    def variant(self) -> str: ...


R = TypeVar("R", bound=_Measured)


@dataclass
class Variant(Generic[R]):
    """One row of a comparison: a variant's runs and the median of what it is ranked by."""

    name: str
    runs: list[R]
    median: float
    baseline: float  # the baseline variant's median, for the ratio column

    @property
    def ratio(self) -> str:
        return ratio(self.median, self.baseline)

    def timing(self, items: int) -> list[str]:
        """The first cells of a row: variant, median wall seconds, ms per item, ratio."""
        return [self.name, f"{self.median:.2f}", ms(self.median / items), self.ratio]

    def worst(self, counts: Callable[[R], tuple[int, ...]]) -> tuple[int, ...]:
        """Each count at its highest over the runs: counts are held to targets, so the
        worst run is the one that tells."""
        return tuple(max(column) for column in zip(*map(counts, self.runs), strict=True))


def medians_note(runs: Sequence[object], variants: Sequence[str], targets: str) -> str:
    """The note under a comparison of timings and counts made by ``by_variant``."""
    return (
        f"Medians of {len(runs) // len(variants)} runs per variant, interleaved; counts are the "
        f"worst run. Targets: {targets}"
    )


def by_variant(
    runs: Sequence[R], variants: Sequence[str], measure: Callable[[R], float], baseline: str
) -> list[Variant[R]]:
    """Each variant's runs in table order, with medians of ``measure`` and the one of the
    ``baseline`` variant that every row is compared with."""
    grouped = {name: [run for run in runs if run.variant == name] for name in variants}
    medians = {name: median([measure(run) for run in mine]) for name, mine in grouped.items()}
    return [Variant(name, grouped[name], medians[name], medians[baseline]) for name in variants]


@dataclass
class Table:
    title: str
    header: list[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, *cells: object) -> None:
        self.rows.append([str(cell) for cell in cells])

    def markdown(self) -> str:
        widths = [
            max(len(self.header[i]), *(len(row[i]) for row in self.rows)) if self.rows else 0
            for i in range(len(self.header))
        ]
        widths = [max(width, len(self.header[i])) for i, width in enumerate(widths)]

        def line(cells: Sequence[str]) -> str:
            padded = [
                cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i])
                for i, cell in enumerate(cells)
            ]
            return "| " + " | ".join(padded) + " |"

        rule = (
            "|"
            + "|".join(
                "-" * (w + 2) if i == 0 else "-" * (w + 1) + ":" for i, w in enumerate(widths)
            )
            + "|"
        )
        parts = [f"### {self.title}", "", line(self.header), rule]
        parts += [line(row) for row in self.rows]
        if self.notes:
            parts += ["", *self.notes]
        return "\n".join(parts)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def mib(size: float) -> str:
    return f"{size / MiB:.0f}"


def ratio(value: float, base: float) -> str:
    return f"{value / base:.2f}x" if base else "-"
