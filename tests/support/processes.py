"""Helpers for the local loop suite: what /proc says about processes, and a `func` on PATH."""

from __future__ import annotations

import shlex
from pathlib import Path


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


# Core Tools cannot be installed here, so tests of the local loop's func mode put this
# `func` first on PATH: the functions host stand-in, started the way the loop starts `func
# start` (from the project root, which `-m` puts on sys.path).
FAKE_FUNC = """#!/bin/sh
exec {python} -m tools.standins.functions_host "$@"
"""


def install_fake_func(bin_dir: Path, python: str) -> Path:
    bin_dir.mkdir(parents=True, exist_ok=True)
    path = bin_dir / "func"
    path.write_text(FAKE_FUNC.format(python=shlex.quote(python)))
    path.chmod(0o755)
    return path
