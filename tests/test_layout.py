"""The shape of the tree: dependencies point from tests to the code, never back."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SKIPPED = {".venv", ".venv-checkov", "node_modules", ".git", ".local", "tests"}


def python_files_outside_tests() -> list[Path]:
    found = []
    for top in sorted(ROOT.iterdir()):
        if top.name in SKIPPED or top.name.startswith("."):
            continue
        if top.is_dir():
            found += sorted(top.rglob("*.py"))
        elif top.suffix == ".py":
            found.append(top)
    return found


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    modules: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules.add(node.module)
    return modules


def test_the_walk_sees_the_app_the_tools_and_the_benchmarks() -> None:
    walked = {str(path.relative_to(ROOT)) for path in python_files_outside_tests()}
    assert {"function_app.py", "handlers/pipeline.py", "tools/local_loop.py"} <= walked
    assert "bench/dispatch.py" in walked
    assert not any(name.startswith("tests/") for name in walked)


def test_no_module_outside_tests_imports_tests() -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(
            module for module in imported_modules(path) if module.split(".")[0] == "tests"
        )
        for path in python_files_outside_tests()
    }
    assert {name: found for name, found in offenders.items() if found} == {}


def test_the_import_scan_sees_every_form_of_import(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import tests.support.host\n"
        "from tests import conftest\n"
        "def late():\n"
        "    from tests.support.names import unique\n"
    )
    assert imported_modules(sample) == {"tests.support.host", "tests", "tests.support.names"}


def test_no_file_in_handlers_or_tools_is_over_400_lines() -> None:
    """One purpose per file; a long one is two concerns waiting to be split."""
    lengths = {
        str(path.relative_to(ROOT)): len(path.read_text(encoding="utf-8").splitlines())
        for folder in ("handlers", "tools")
        for path in (ROOT / folder).rglob("*.py")
    }
    assert len(lengths) > 20
    assert {name: count for name, count in lengths.items() if count > 400} == {}


def test_tools_derive_no_digests_of_their_own() -> None:
    """Names the handlers derive (the ledger's) come from the handlers, not a second copy."""
    users = sorted(
        str(path.relative_to(ROOT))
        for path in (ROOT / "tools").rglob("*.py")
        if "hashlib" in imported_modules(path)
    )
    assert users == []
