"""Which resource types, at which API versions, the Bicep files of ``infra/`` declare."""

from __future__ import annotations

import re
from pathlib import Path

# `resource <symbol> '<Namespace/type>@<version>' [existing] = ...`, one per line in our style.
_DECLARATION = re.compile(r"^\s*resource\s+\w+\s+'(?P<type>[^'@]+)@(?P<version>[^']+)'", re.M)


def used_types(infra: Path) -> set[tuple[str, str]]:
    """(type, API version) of every resource declaration under ``infra``.

    A nested child declaration names its type relative to its parent ('config'); the snapshot
    is keyed by full type names, so such a declaration is refused rather than left out.
    """
    found = set()
    for path in sorted(infra.rglob("*.bicep")):
        for match in _DECLARATION.finditer(path.read_text(encoding="utf-8")):
            if "/" not in match["type"]:
                raise ValueError(
                    f"{path}: nested resource '{match['type']}': declare it at the top "
                    "level with its full type and `parent:`"
                )
            found.add((match["type"], match["version"]))
    if not found:
        raise ValueError(f"no resource declarations under {infra}")
    return found
