"""Running checkov over a Bicep folder offline, and judging its reports: nothing failed, every
file parsed, every deployed resource scanned, every suppression says why.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.infra.bicep import REPO


@dataclass(frozen=True)
class CheckovRun:
    """One checkov scan: its JSON report and the resources its CycloneDX report lists."""

    summary: dict[str, Any]
    failed: list[dict[str, Any]]
    skipped: list[dict[str, Any]]
    parsing_errors: list[str]
    resources: set[tuple[str, str, str]]  # (file relative to the scanned folder, type, symbol)
    passed: list[dict[str, Any]] = field(default_factory=list)


_PURL = re.compile(r"^pkg:bicep/(?:cli_repo/)?(?P<file>.+?\.bicep)/(?P<resource>[^@]+)@")


def checkov_executable(repo: Path = REPO, environ: Mapping[str, str] | None = None) -> Path:
    """``$CHECKOV`` if set (relative to the repo), else the repo's .venv-checkov."""
    configured = (environ or {}).get("CHECKOV")
    path = Path(configured) if configured else Path(".venv-checkov/bin/checkov")
    return path if path.is_absolute() else repo / path


def run_checkov(
    executable: Path, folder: Path, out: Path, environ: Mapping[str, str]
) -> CheckovRun:
    """Scan ``folder`` offline; raises RuntimeError if checkov did not produce its reports."""
    command = [
        str(executable),
        "--directory",
        str(folder),
        "--framework",
        "bicep",
        "--skip-download",
        "--output",
        "json",
        "--output",
        "cyclonedx_json",
        "--output-file-path",
        str(out),
    ]
    env = {**environ, "BC_SKIP_MAPPING": "TRUE"}
    done = subprocess.run(
        command,
        check=False,
        cwd=folder.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    report_file, bom_file = out / "results_json.json", out / "results_cyclonedx.json"
    # Exit status 1 means "some check failed"; anything else, or no report, is a crash.
    if done.returncode not in (0, 1) or not report_file.exists() or not bom_file.exists():
        raise RuntimeError(
            f"checkov exited with {done.returncode} and no report:\n{done.stderr[-3000:]}"
        )
    reports = json.loads(report_file.read_text(encoding="utf-8"))
    reports = reports if isinstance(reports, list) else [reports]
    report = next((r for r in reports if r.get("check_type") == "bicep"), None)
    if report is None:
        raise RuntimeError(f"checkov produced no bicep report: {json.dumps(reports)[:500]}")
    found = set()
    for component in json.loads(bom_file.read_text(encoding="utf-8")).get("components", []):
        match = _PURL.match(component.get("purl") or component.get("bom-ref") or "")
        if not match:
            raise RuntimeError(f"unexpected CycloneDX component {component}")
        file = Path(match["file"])
        if file.parts and file.parts[0] == folder.name:
            file = Path(*file.parts[1:])
        resource_type, _, symbol = match["resource"].rpartition(".")
        found.add((file.as_posix(), resource_type, symbol))
    results = report["results"]
    return CheckovRun(
        summary=report["summary"],
        failed=results.get("failed_checks", []),
        skipped=results.get("skipped_checks", []),
        parsing_errors=list(results.get("parsing_errors", [])),
        resources=found,
        passed=results.get("passed_checks", []),
    )


def check_checkov(run: CheckovRun, deployed: set[tuple[str, str, str]]) -> list[str]:
    """No failed check, every file parsed, every deployed resource scanned, every skip reasoned.

    checkov skips a file it cannot parse and only counts it under parsing_errors, and its
    summary's resource_count also counts parameters and leaves out resources no check applies
    to; so the resources are compared one by one with the CycloneDX list of what it scanned.
    """
    problems = [
        f"checkov {c['check_id']} failed on {c['file_path']} {c['resource']}: {c['check_name']}"
        for c in run.failed
    ]
    if run.summary.get("failed"):
        problems.append(f"checkov summary counts {run.summary['failed']} failed checks")
    if run.summary.get("parsing_errors") or run.parsing_errors:
        problems.append(f"checkov could not parse (so did not check): {run.parsing_errors}")
    problems += [
        f"checkov did not scan {file} {kind}.{symbol}"
        for file, kind, symbol in sorted(deployed - run.resources)
    ]
    problems += [
        f"checkov scanned {file} {kind}.{symbol}, which the pycep parse does not deploy"
        for file, kind, symbol in sorted(run.resources - deployed)
    ]
    for skip in run.skipped:
        reason = (skip.get("check_result") or {}).get("suppress_comment") or ""
        if len(reason.strip()) < 30:
            problems.append(f"checkov skip of {skip['check_id']} needs a real reason: {reason!r}")
    return problems
