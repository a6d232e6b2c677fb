"""The maintainer command that regenerates tests/data/bicep-types, run on a small repository laid
out like github:Azure/bicep-types-az (generated/<rp>/<namespace>/<version>/types.json)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tools.bicep_types.__main__ import main
from tools.bicep_types.prune import prune
from tools.bicep_types.source import SourceError, TypesRepository

pytestmark = pytest.mark.infra


def ref(index: int) -> dict[str, str]:
    return {"$ref": f"#/{index}"}


BARS_2024 = [
    {"$type": "StringType"},
    {"$type": "StringLiteralType", "value": "unused"},
    {
        "$type": "ObjectType",
        "name": "Microsoft.Foo/bars",
        "properties": {
            "name": {"type": ref(0), "flags": 9},
            "properties": {"type": ref(4), "flags": 0},
        },
    },
    {"$type": "ObjectType", "name": "Other", "properties": {"x": {"type": ref(1), "flags": 0}}},
    {"$type": "UnionType", "elements": [ref(5), ref(0)]},
    {"$type": "StringLiteralType", "value": "On"},
    {"$type": "ResourceType", "name": "Microsoft.Foo/bars@2024-01-01", "body": ref(2)},
    {"$type": "ResourceType", "name": "Microsoft.Foo/others@2024-01-01", "body": ref(3)},
]


def resource_types(name: str) -> list[dict[str, Any]]:
    return [
        {"$type": "ObjectType", "name": name.partition("@")[0], "properties": {}},
        {"$type": "ResourceType", "name": name, "body": ref(0)},
    ]


def git(folder: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(folder), "-c", "user.name=t", "-c", "user.email=t@t", *args],
        check=True,
        capture_output=True,
        text=True,
    )
    return done.stdout.strip()


@pytest.fixture
def upstream(tmp_path: Path) -> Path:
    repo = tmp_path / "bicep-types-az"
    files = {
        "foo/microsoft.foo/2024-01-01": BARS_2024,
        "foo/microsoft.foo/2025-01-01-preview": resource_types(
            "Microsoft.Foo/bars@2025-01-01-preview"
        ),
        # Same namespace in a second provider folder, as microsoft.insights is spread out.
        "foo_1/microsoft.foo/2024-06-01": resource_types("Microsoft.Foo/bars@2024-06-01"),
        "foo_1/microsoft.foo/2024-09-01": resource_types("Microsoft.Foo/others@2024-09-01"),
    }
    for folder, nodes in files.items():
        target = repo / "generated" / folder / "types.json"
        target.parent.mkdir(parents=True)
        target.write_text(json.dumps(nodes))
    git(tmp_path, "init", "-q", str(repo))
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "types")
    return repo


@pytest.fixture
def infra(tmp_path: Path) -> Path:
    folder = tmp_path / "infra"
    (folder / "modules").mkdir(parents=True)
    (folder / "main.bicep").write_text(
        "resource b 'Microsoft.Foo/bars@2024-01-01' = {\n  name: 'b'\n}\n"
    )
    return folder


def test_prune_keeps_what_the_resource_reaches_and_renumbers() -> None:
    pruned = prune(BARS_2024, ["microsoft.foo/BARS@2024-01-01"])
    assert [n["$type"] for n in pruned] == [
        "StringType",
        "ObjectType",
        "UnionType",
        "StringLiteralType",
        "ResourceType",
    ]
    body, union = pruned[1], pruned[2]
    assert body["properties"]["properties"]["type"] == ref(2)
    assert union["elements"] == [ref(3), ref(0)]
    assert pruned[4]["body"] == ref(1)


def test_prune_refuses_a_type_the_file_lacks() -> None:
    with pytest.raises(SourceError, match=r"Microsoft\.Foo/bazs@2024-01-01"):
        prune(BARS_2024, ["Microsoft.Foo/bazs@2024-01-01"])


def test_regenerate_writes_the_pruned_types_and_the_source_commit(
    upstream: Path, infra: Path, tmp_path: Path
) -> None:
    out = tmp_path / "snapshot"
    (out / "stale").mkdir(parents=True)
    assert main(["regenerate", str(upstream), "--infra", str(infra), "--out", str(out)]) == 0
    source = json.loads((out / "SOURCE.json").read_text())
    assert source["commit"] == git(upstream, "rev-parse", "HEAD")
    assert source["resources"] == {
        "Microsoft.Foo/bars@2024-01-01": "foo/microsoft.foo/2024-01-01/types.json"
    }
    nodes = json.loads((out / "foo/microsoft.foo/2024-01-01/types.json").read_text())
    assert nodes == prune(BARS_2024, ["Microsoft.Foo/bars@2024-01-01"])
    assert sorted(p.name for p in out.iterdir()) == ["SOURCE.json", "foo"]


def test_regenerate_reads_a_bare_mirror(upstream: Path, infra: Path, tmp_path: Path) -> None:
    mirror = tmp_path / "mirror.git"
    git(tmp_path, "clone", "-q", "--bare", str(upstream), str(mirror))
    repo = TypesRepository(mirror)
    assert repo.commit == git(upstream, "rev-parse", "HEAD")
    out = tmp_path / "snapshot"
    assert main(["regenerate", str(mirror), "--infra", str(infra), "--out", str(out)]) == 0
    assert (out / "foo/microsoft.foo/2024-01-01/types.json").is_file()


def test_regenerate_fails_on_a_version_upstream_does_not_define(
    upstream: Path, infra: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (infra / "modules" / "x.bicep").write_text(
        "resource o 'Microsoft.Foo/others@2024-06-01' = {\n  name: 'o'\n}\n"
    )
    out = tmp_path / "snapshot"
    assert main(["regenerate", str(upstream), "--infra", str(infra), "--out", str(out)]) == 1
    assert "Microsoft.Foo/others@2024-06-01 is not defined" in capsys.readouterr().err
    assert not out.exists()


def test_latest_names_the_newest_stable_version_in_any_provider_folder(
    upstream: Path, infra: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["latest", str(upstream), "--infra", str(infra)]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    # 2025-01-01-preview is newer but a preview; 2024-06-01 sits in another folder.
    assert line.split()[:3] == ["Microsoft.Foo/bars", "2024-01-01", "2024-06-01"]
    assert line.endswith("<- newer stable version")


def test_a_nested_resource_declaration_is_refused(
    upstream: Path, infra: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (infra / "main.bicep").write_text(
        "resource b 'Microsoft.Foo/bars@2024-01-01' = {\n  name: 'b'\n"
        "  resource c 'children@2024-01-01' = {\n    name: 'c'\n  }\n}\n"
    )
    assert main(["latest", str(upstream), "--infra", str(infra)]) == 1
    assert "nested resource 'children'" in capsys.readouterr().err


def test_a_folder_that_is_not_a_repository_is_refused(
    tmp_path: Path, infra: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["latest", str(tmp_path / "nowhere"), "--infra", str(infra)]) == 1
    assert "error: git rev-parse" in capsys.readouterr().err
