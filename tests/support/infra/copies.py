"""Broken copies of ``infra/``: each cross-check is shown to catch what it claims to by running
it on a copy with one deliberate mistake."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.support.infra.bicep import INFRA


def copy_infra(tmp_path: Path) -> Path:
    target = tmp_path / "infra"
    shutil.copytree(INFRA, target)
    return target


def edit(path: Path, old: str, new: str) -> None:
    """Replace the first ``old`` in ``path``; fails if it is not there (the template moved on)."""
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
