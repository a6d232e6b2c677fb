"""``make bench``: every benchmark against its baselines, in one run; prints each table and
rewrites bench/RESULTS.md with the figures, the machine and how to reproduce them.

    .venv/bin/python -m bench [--quick] [--only PARTS]

PARTS, comma-separated: thumbs, e2e, dispatch, scale, tracking, crop, memory, anim, renditions,
folders.

A run of some parts only (``--only``) replaces those parts' tables and target lines in
RESULTS.md and leaves the rest as the last full run wrote it.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime

from bench import anim, crop, dispatch, end_to_end, folders, memory, renditions, thumbs, tracking
from bench.common import ROOT, Table, machine

RESULTS = ROOT / "bench" / "RESULTS.md"
PASSTHROUGH = ROOT / "bench" / "RESULTS-passthrough.md"
ALL = (
    "thumbs", "e2e", "dispatch", "scale", "tracking", "crop", "memory", "anim", "renditions",
    "folders",
)  # fmt: skip


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs and events (a smoke run)")
    parser.add_argument("--only", default=",".join(ALL), help=f"comma-separated subset of {ALL}")
    parser.add_argument("--no-write", action="store_true", help="do not rewrite RESULTS.md")
    args = parser.parse_args(argv)
    chosen = [name for name in args.only.split(",") if name]
    unknown = set(chosen) - set(ALL)
    if unknown:
        parser.error(f"unknown benchmark(s) {sorted(unknown)}")

    info = machine()
    started = time.perf_counter()
    tables: list[Table] = []
    verdicts: list[str] = []

    if "thumbs" in chosen:
        log("1. thumbnail per image ...")
        cases = thumbs.PER_IMAGE
        if args.quick:
            cases = [thumbs.Case(c.label, c.make, max(3, c.runs // 3)) for c in cases]
        results = thumbs.run(cases, log)
        tables.append(thumbs.per_image_table(results))
        for r in results:
            jpeg = "JPEG" in r.label
            checks = [
                ("time <= 1.05x bare Pillow", r.wall["handler"] <= 1.05 * r.wall["pillow"]),
                (
                    "memory <= 1.5x bare Pillow",
                    r.memory["handler"].delta <= 1.5 * r.memory["pillow"].delta,
                ),
            ]
            if jpeg:
                checks.append(("time <= 1.0x pyvips", r.wall["handler"] <= r.wall["pyvips"]))
            for what, ok in checks:
                verdicts.append(f"- {r.label}: {what}: {'met' if ok else 'MISSED'}")
        print(tables[-1].markdown() + "\n", flush=True)

        log("1b. HEIC, AVIF, Adobe RGB ...")
        cases = thumbs.FORMATS
        if args.quick:
            cases = [thumbs.Case(c.label, c.make, 3, c.variants) for c in cases]
        formats = thumbs.run(cases, log)
        tables.append(thumbs.formats_table(formats))
        for r in formats:
            ok = r.wall["handler"] <= 1.10 * r.wall["pillow"]
            verdicts.append(
                f"- {r.label}: time <= 1.10x the bare pipeline: {'met' if ok else 'MISSED'}"
            )
        print(tables[-1].markdown() + "\n", flush=True)

    count = 100 if args.quick else 500
    if "e2e" in chosen:
        log(f"2. end to end, {count} uploads ...")
        runs = end_to_end.run(count, 1 if args.quick else 2, log)
        tables.append(end_to_end.table(runs, count))
        print(tables[-1].markdown() + "\n", flush=True)

    if "dispatch" in chosen:
        log("3. batch dispatch ...")
        dispatch_runs = dispatch.run(1 if args.quick else 3, log)
        tables.append(dispatch.table(dispatch_runs))
        mine = [r for r in dispatch_runs if r.variant == "function"]
        verdicts.append(
            f"- dispatch: token requests {max(r.token_requests for r in mine)} (target 1): "
            f"{'met' if all(r.token_requests == 1 for r in mine) else 'MISSED'}"
        )
        verdicts.append(
            f"- dispatch: jobs connections {max(r.job_connections for r in mine)} "
            f"(target <= {dispatch.WORKERS} worker threads): "
            f"{'met' if all(r.job_connections <= dispatch.WORKERS for r in mine) else 'MISSED'}"
        )
        print(tables[-1].markdown() + "\n", flush=True)

    if "scale" in chosen:
        log("4. cost by image size ...")
        cases = thumbs.SCALE
        if args.quick:
            cases = [thumbs.Case(c.label, c.make, min(c.runs, 3)) for c in cases]
        scale = thumbs.run(cases, log)
        tables.append(thumbs.scale_table(scale))
        verdicts.append("- 100 MP JPEG accepted under the default THUMBNAIL_MAX_PIXELS: met")
        print(tables[-1].markdown() + "\n", flush=True)

    if "tracking" in chosen:
        log("5. batch job tracking ...")
        tracking_runs = tracking.run(1 if args.quick else 3, log)
        tables.append(tracking.table(tracking_runs))
        mine = [r for r in tracking_runs if r.variant != tracking.VARIANTS[-1]]
        verdicts.append(
            f"- tracking: status requests per pass {max(r.status_requests for r in mine)} "
            f"(target {tracking.OPEN}, one per open job), token requests "
            f"{max(r.token_requests for r in mine)} (target 1): "
            + (
                "met"
                if all(r.status_requests == tracking.OPEN and r.token_requests == 1 for r in mine)
                else "MISSED"
            )
        )
        steady = [r for r in tracking_runs if r.variant == "steady"]
        verdicts.append(
            f"- tracking: record reads when nothing changed {max(r.record_reads for r in steady)} "
            f"(target 0): {'met' if all(r.record_reads == 0 for r in steady) else 'MISSED'}"
        )
        print(tables[-1].markdown() + "\n", flush=True)

    if "crop" in chosen:
        log("6. entropy crop against pyvips ...")
        runs = 3 if args.quick else crop.RUNS
        crop_cases = crop.run(log, runs)
        tables.append(crop.table(crop_cases, runs))
        agreed = crop.summary(crop_cases)["iou"]
        verdicts.append(
            f"- entropy crop: median IoU with pyvips {agreed:.3f} (target >= {crop.IOU_TARGET}): "
            f"{'met' if agreed >= crop.IOU_TARGET else 'MISSED'}"
        )
        print(tables[-1].markdown() + "\n", flush=True)

    if "memory" in chosen:
        log(f"7. decode budget, {memory.CONCURRENT} concurrent 100 MP decodes ...")
        from handlers.settings import DEFAULTS

        default_mb = int(DEFAULTS["THUMBNAIL_DECODE_BUDGET_MB"])
        budget_runs = memory.run(log)
        tables.append(memory.table(budget_runs, default_mb))
        verdicts += memory.verdicts(budget_runs, default_mb)

    if "anim" in chosen:
        log("8. animated GIF and WebP ...")
        anim_results = anim.run(log, 3 if args.quick else anim.RUNS)
        tables.append(anim.table(anim_results))
        for r in anim_results:
            fast = r.wall["handler"] <= 1.05 * r.wall["pillow"]
            covered = r.memory["handler"].delta <= r.predicted
            verdicts.append(
                f"- {r.label}: time <= 1.05x bare Pillow: {'met' if fast else 'MISSED'}; "
                f"budget prediction covers the measured peak: {'met' if covered else 'MISSED'}"
            )
        print(tables[-1].markdown() + "\n", flush=True)

    if "renditions" in chosen:
        log("9. renditions of a 24 MP JPEG ...")
        runs = 3 if args.quick else renditions.RUNS
        made = renditions.run(log, runs)
        tables.append(renditions.table(made, runs))
        verdicts.append(
            f"- renditions: 24 MP JPEG, 3 sizes + BlurHash, time "
            f"{made.wall['handler'] / made.wall['pillow']:.2f}x bare Pillow "
            f"(target <= {renditions.TARGET:.2f}x), "
            f"{made.wall['handler'] / made.wall['pyvips']:.2f}x pyvips: "
            f"{'met' if made.met else 'MISSED'}"
        )
        print(tables[-1].markdown() + "\n", flush=True)

    if "folders" in chosen:
        files = 1000 if args.quick else folders.FILES
        log(f"10. folder drop, {files} files and a marker ...")
        folder_runs = folders.run(files, log)
        tables.append(folders.table(folder_runs, files))
        verdicts += folders.verdicts(folder_runs)
        print(tables[-1].markdown() + "\n", flush=True)

    elapsed = time.perf_counter() - started
    log(f"done in {elapsed:.0f} s")
    if verdicts:
        print("Targets:\n" + "\n".join(verdicts))
    if not args.no_write and not args.quick:
        if set(chosen) == set(ALL):
            RESULTS.write_text(render(info, tables, verdicts, elapsed), encoding="utf-8")
        elif RESULTS.exists():
            when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
            load = info["load average at start"]
            for table in tables:
                table.notes += [
                    "",
                    f"Measured by `python -m bench --only {args.only}` on {when} (load "
                    f"average at its start {load}), apart from the full run above.",
                ]
            text = RESULTS.read_text(encoding="utf-8")
            RESULTS.write_text(merge(text, tables, verdicts), encoding="utf-8")
        else:
            return 0
        log(f"wrote {RESULTS.relative_to(ROOT)}")
    return 0


def _part(line: str) -> str:
    """What a target line is about: its text up to the first colon ("- dispatch")."""
    return line.split(":", 1)[0]


def merge(text: str, tables: list[Table], verdicts: list[str]) -> str:
    """RESULTS.md with these tables and target lines in place of their earlier versions (a
    table by its number, a target line by its part), new ones added at the end of their
    section."""
    lines = text.splitlines()
    parts = {_part(line) for line in verdicts}
    targets = lines.index("## Targets")
    end = next(i for i in range(targets + 1, len(lines)) if lines[i].startswith("## "))
    kept = [line for line in lines[targets + 1 : end] if line and _part(line) not in parts]
    lines[targets + 1 : end] = ["", *kept, *verdicts, ""]
    for table in tables:
        number = table.title.split(" ", 1)[0]
        block = [*table.markdown().splitlines(), ""]
        start = next((i for i, line in enumerate(lines) if line.startswith(f"### {number} ")), None)
        if start is None:
            start = stop = next(
                i for i, line in enumerate(lines) if line.startswith("## The local event source")
            )
        else:
            stop = next(
                (i for i in range(start + 1, len(lines)) if lines[i].startswith(("### ", "## "))),
                len(lines),
            )
        lines[start:stop] = block
    return "\n".join(lines) + "\n"


def render(info: dict[str, str], tables: list[Table], verdicts: list[str], elapsed: float) -> str:
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Benchmark results",
        "",
        f"Written by `make bench` (`python -m bench`) on {when}; the whole run took "
        f"{elapsed / 60:.1f} minutes. Rerun to refresh; the figures below are from that run only.",
        "",
        "## Machine",
        "",
        *(f"- {key}: {value}" for key, value in info.items()),
        "",
        "## How to reproduce",
        "",
        "```",
        "make bench                      # installs bench/requirements.txt, runs everything",
        ".venv/bin/python -m bench --quick --only thumbs   # a smoke run, RESULTS.md untouched",
        "```",
        "",
        "Inputs are generated with fixed seeds (bench/images.py: gradients, a soft fractal and",
        "per-pixel noise, so encoded sizes are realistic). Every baseline runs in the same run as",
        "the code it is compared with, interleaved; ratios are of medians. Peak memory is",
        "measured per case in a fresh interpreter (VmHWM of a child that runs just that case,",
        "minus its RSS just before the case; ru_maxrss is not used because Linux carries it",
        "over from the parent across fork and exec).",
        "",
        "## Targets",
        "",
        *verdicts,
        "",
        "## Results",
        "",
    ]
    for table in tables:
        lines += [table.markdown(), ""]
    lines += ["## The local event source", ""]
    if PASSTHROUGH.exists():
        summary = [
            line
            for line in PASSTHROUGH.read_text(encoding="utf-8").splitlines()
            if line.startswith("|")
        ]
        lines += [
            "What the pass-through in front of Azurite costs is measured by",
            "`bench/bench_passthrough.py`; its results are in",
            "[RESULTS-passthrough.md](RESULTS-passthrough.md). Its table, as last written:",
            "",
            *summary,
        ]
    else:
        lines += [
            "What the pass-through in front of Azurite costs is measured separately by",
            "`bench/bench_passthrough.py` (results in RESULTS-passthrough.md once written).",
        ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
