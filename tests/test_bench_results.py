"""A run of some benchmark parts (``python -m bench --only ...``) rewrites just those parts of
bench/RESULTS.md: their tables and target lines, in place or added, the rest untouched."""

from __future__ import annotations

from bench.__main__ import merge
from bench.common import Table

BEFORE = """# Benchmark results

## Targets

- thumbs: time: met
- memory: peak 9 MiB: MISSED
- memory: off 10 MiB

## Results

### 1. Thumbnails

| a |
|--:|
| 1 |

### 6. Decode budget, old title

| old |
|----:|
| 7 |

Old note.

## The local event source

Kept.
"""


def table(title: str, cell: str) -> Table:
    result = Table(title, ["x"])
    result.add(cell)
    result.notes.append("New note.")
    return result


def test_replaces_the_parts_table_and_target_lines_and_keeps_the_rest() -> None:
    after = merge(BEFORE, [table("6. Decode budget", "42")], ["- memory: peak 5 MiB: met"])
    assert "- thumbs: time: met" in after
    assert "- memory: peak 5 MiB: met" in after
    assert "9 MiB" not in after and "off 10 MiB" not in after
    assert "| 42 |" in after and "New note." in after
    assert "old title" not in after and "Old note." not in after and "| 7 |" not in after
    assert "### 1. Thumbnails" in after and "| 1 |" in after
    assert after.index("### 6. Decode budget") < after.index("## The local event source")
    assert after.endswith("Kept.\n")


def test_adds_a_part_that_was_not_there_before_the_event_source_section() -> None:
    after = merge(BEFORE, [table("7. Something new", "3")], ["- new: met"])
    assert after.index("### 6. Decode budget") < after.index("### 7. Something new")
    assert after.index("### 7. Something new") < after.index("## The local event source")
    targets = after[after.index("## Targets") : after.index("## Results")]
    assert targets.strip().splitlines()[-1] == "- new: met"
    assert "- memory: peak 9 MiB: MISSED" in targets


def test_every_part_has_a_table_number_of_its_own() -> None:
    """merge() finds a part's table by its number: two parts with one number would overwrite
    each other's table (the animation table once replaced the decode budget's)."""
    import re
    from pathlib import Path

    bench = Path(__file__).resolve().parent.parent / "bench"
    numbers = [
        match
        for path in sorted(bench.glob("*.py"))
        for match in re.findall(r'^\s+f?"(\d+b?)\. [A-Z]', path.read_text(), re.MULTILINE)
    ]
    assert len(numbers) >= 9, numbers
    assert len(numbers) == len(set(numbers)), sorted(numbers)
    results = (bench / "RESULTS.md").read_text()
    written = re.findall(r"^### (\d+b?)\. ", results, re.MULTILINE)
    assert len(written) == len(set(written)), written
