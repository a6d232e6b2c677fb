"""Maintainer command: regenerate ``tests/data/bicep-types/`` from a bicep-types-az checkout, or
list the newest stable API version of each resource type ``infra/`` uses.

    python -m tools.bicep_types regenerate ../bicep-types-az
    python -m tools.bicep_types latest ../bicep-types-az
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections import defaultdict
from pathlib import Path

from tools.bicep_types.prune import prune
from tools.bicep_types.source import SourceError, TypesFile, TypesRepository, locate, newest_stable
from tools.bicep_types.usage import used_types

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"
SNAPSHOT = REPO / "tests" / "data" / "bicep-types"
SOURCE_FILE = "SOURCE.json"
UPSTREAM = "github:Azure/bicep-types-az"


def regenerate(repo: TypesRepository, infra: Path, out: Path) -> dict[str, str]:
    """Write the pruned types.json files and SOURCE.json under ``out`` (replacing it); returns
    the resource types written, each with its file."""
    by_file: dict[TypesFile, list[str]] = defaultdict(list)
    for resource_type, version in sorted(used_types(infra)):
        by_file[locate(repo, resource_type, version)].append(f"{resource_type}@{version}")
    if out.exists():
        shutil.rmtree(out)
    resources: dict[str, str] = {}
    for file, names in sorted(by_file.items(), key=lambda item: item[0].path):
        relative = file.path.removeprefix("generated/")
        target = out / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(prune(repo.read(file), names), indent=1) + "\n")
        resources.update(dict.fromkeys(names, relative))
    source: dict[str, object] = {
        "repository": UPSTREAM,
        "commit": repo.commit,
        "committed": repo.committed,
        "license": "MIT (Copyright (c) Microsoft Corporation), as the upstream repository",
        "regenerate": "python -m tools.bicep_types regenerate <checkout of the repository>",
        "resources": dict(sorted(resources.items(), key=lambda item: item[0].lower())),
    }
    (out / SOURCE_FILE).write_text(json.dumps(source, indent=2) + "\n")
    return resources


def latest(repo: TypesRepository, infra: Path) -> list[tuple[str, str, str]]:
    """(type, version used, newest stable version or '-') for every type infra/ uses."""
    rows = []
    for resource_type in sorted({t for t, _ in used_types(infra)}, key=str.lower):
        used = sorted(v for t, v in used_types(infra) if t == resource_type)
        rows.append((resource_type, ", ".join(used), newest_stable(repo, resource_type) or "-"))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.bicep_types", description=__doc__)
    parser.add_argument("command", choices=["regenerate", "latest"])
    parser.add_argument("checkout", type=Path, help="clone or bare mirror of bicep-types-az")
    parser.add_argument("--revision", default="HEAD", help="commit to read (default HEAD)")
    parser.add_argument("--infra", type=Path, default=INFRA, help="folder of the templates")
    parser.add_argument("--out", type=Path, default=SNAPSHOT, help="snapshot folder to rewrite")
    args = parser.parse_args(argv)
    try:
        repo = TypesRepository(args.checkout, args.revision)
        if args.command == "regenerate":
            written = regenerate(repo, args.infra, args.out)
            print(f"{args.out}: {len(written)} resource types from {repo.commit}")
        else:
            for resource_type, used, newest in latest(repo, args.infra):
                mark = "" if newest in used.split(", ") else "  <- newer stable version"
                print(f"{resource_type:60} {used:24} {newest}{mark}")
    except (SourceError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
