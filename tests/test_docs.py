"""The README stays a short template page, and the docs it links to stay whole and linked."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
BEFORE_SPLIT = ROOT / "tests" / "data" / "readme-before-split.md"
README_SECTIONS = ["Features", "Getting Started", "Guidance", "Resources", "Security"]
_LINK = re.compile(r"(?<!\!)\[[^\]]*\]\(([^)\s]+)\)")
_FENCE = re.compile(r"^(```|~~~)")


def _pages() -> list[Path]:
    # README and its neighbours (SECURITY, CONTRIBUTING, ...), the docs, the GitHub templates.
    return [
        ROOT / "README.md",
        *sorted(p for p in ROOT.glob("*.md") if p.name != "README.md"),
        *sorted(DOCS.rglob("*.md")),
        *sorted((ROOT / ".github").rglob("*.md")),
    ]


def _outside_fences(text: str) -> list[str]:
    lines, fenced = [], False
    for line in text.splitlines():
        if _FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            lines.append(line)
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation but - and _ dropped, spaces to -."""
    text = re.sub(r"`|\*\*|\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(text: str) -> set[str]:
    found: set[str] = set()
    seen: dict[str, int] = {}
    for line in _outside_fences(text):
        match = re.match(r"^#{1,6} (.+)$", line)
        if match:
            base = slug(match[1])
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
    return found


def broken_links(page: Path) -> list[str]:
    problems = []
    for line in _outside_fences(page.read_text(encoding="utf-8")):
        for target in _LINK.findall(line):
            if re.match(r"^[a-z]+:", target):
                continue  # https:, mailto: ...: not ours to check offline
            path_part, _, anchor = target.partition("#")
            linked = (page.parent / path_part).resolve() if path_part else page
            where = f"{page.relative_to(ROOT)}: {target}"
            if not linked.exists():
                problems.append(f"{where}: no such file")
            elif (
                anchor
                and linked.suffix == ".md"
                and anchor not in anchors(linked.read_text(encoding="utf-8"))
            ):
                problems.append(f"{where}: no such anchor")
    return problems


def test_readme_is_short_and_has_the_template_sections_in_order() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 250
    sections = [line[3:] for line in _outside_fences(text) if line.startswith("## ")]
    assert sections == README_SECTIONS
    assert "```mermaid\nflowchart" in text
    intro = text.split("\n## ", 1)[0]
    for part in ("create_thumbnail", "dispatch_batch_job", "track_batch_jobs", "topic"):
        assert part in intro.split("```mermaid", 1)[1], f"the diagram does not show {part}"


def test_quick_start_has_exactly_the_two_commands() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    quick = text.split("### Quick start", 1)[1].split("\n### ", 1)[0]
    block = re.findall(r"```sh\n(.*?)```", quick, flags=re.S)
    assert len(block) == 1
    commands = [line.split("#")[0].strip() for line in block[0].splitlines()]
    assert commands == ["make run", "make test"]


def test_every_relative_link_and_anchor_resolves() -> None:
    problems = [problem for page in _pages() for problem in broken_links(page)]
    assert problems == []


def test_the_link_check_notices_a_broken_file_and_anchor(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "# Top `code` heading\n\n## Again\n\n## Again\n\n"
        "[ok](#top-code-heading) [ok](#again-1) [bad](#nope) [bad](missing.md)\n"
        "```\n[inside a fence](ignored.md)\n```\n",
        encoding="utf-8",
    )
    found = [problem.split(": ", 1)[1] for problem in _broken(page, tmp_path)]
    assert found == ["#nope: no such anchor", "missing.md: no such file"]


def _broken(page: Path, root: Path) -> list[str]:
    global ROOT
    saved, ROOT = ROOT, root
    try:
        return broken_links(page)
    finally:
        ROOT = saved


def test_every_docs_page_is_in_the_index() -> None:
    index = (DOCS / "README.md").read_text(encoding="utf-8")
    for page in sorted(DOCS.glob("*.md")):
        if page.name != "README.md":
            assert f"]({page.name})" in index, f"{page.name} is not listed in docs/README.md"


def _kept_lines(text: str) -> list[str]:
    """Lines of the README before the split that must still stand somewhere, verbatim:
    every table row, every line inside a code block and every prose line (headings moved
    one level up, so they are not compared)."""
    kept = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#") and not _FENCE.match(stripped):
            kept.append(line)
    return kept


# Lines of the old README deliberately not kept verbatim: sentences whose links were pointed at
# docs/, and the license line (now in Resources).
# Lines about what the app no longer has, by design: each name must still be found in the
# docs, saying what replaced it.
_REMOVED = {
    "| `BATCH_INPUT_TYPE` |": "`BATCH_INPUT_TYPE` is retired",  # issue 17: BATCH_JOB_SCOPE
    "| `batchInputType` |": "`batchInputType` is retired",
}

_BENCHMARK_ROWS = (
    "| Thumbnail, ",
    "| 100 MP JPEG | accepted under the default limit; ",
    "| 500 HD uploads through the local loop | ",
    "| 1000 batch dispatches, 8 threads | ",
    "| One `track_batch_jobs` pass over 1,000 open jobs",
)

_REWRITTEN = (
    "MIT",
    "| `THUMBNAIL_FORMAT` | `auto` | `auto`: JPEG (quality 85), or PNG when",
    "- **Out**: `THUMBNAIL_FORMAT` (see Settings)",
    "| `thumbnailFormat` | `auto` | Format of the thumbnails",
    "figures, the machine and how to reproduce them.",
    "`bench/bench_passthrough.py` (see above).",
    "- **alert rules** and an action group (below,",
    "  accounts and their `privatelink` DNS zones (below,",
    "| `make run` | the local loop (see above) |",
    "| Private networking and alerts do what README says |",
    "  same services (`blob`, `table`); the postdeploy hooks and the README's",
    "| `batch-jobs-failed` | Application Insights `traces`",
    "`make bench` (not part of `make test`; 6 to 10 minutes) runs five",
    "baselines in the same run, and rewrites [`bench/RESULTS.md`]",
    # Issue 16: not-final outcomes, dry-run wording, the state folder, non-images ignored.
    "`<function> event=<id> blob=<container>/<name> outcome=<status> <detail>`",
    "| `ignored` ",
    "| `dry-run` | `BATCH_ENDPOINT_URI` is unset",
    "| `failed` (logged at ERROR with the reason) | a **permanent** failure",
    "| `--dry-run` | print what would be offered",
    "- Location: `--state-dir`, default",
    "- Cleared: when a run has listed everything",
    "  an interruption, after a stop on a wrong setting,",
    "    permanent create_thumbnail images/a.jpg:",
    "*Processed* counts every final decision of a handler",
    "handler's `dry-run`",
    "refused (not an image, too large,",
    "| `--dry-run` | print each blob that would be replayed",
    "  when an app setting is wrong (the replay stops there)",
    "| 2 | usage or configuration: bad arguments,",
    # Issue 19: nclx colour is now converted (docs/thumbnails.md, "HEIF/AVIF colour from nclx").
    "  (...)` once. Not handled: HEIF/AVIF colour",
    "  profile) is ",
    # Issue 17: the SDK's camelCase body with our job name, folder scope in place of
    # BATCH_INPUT_TYPE, unknown outcomes settled by name, endpoint 404 vs job 404, and the
    # batchJobScope placeholder the az commands now pass (docs/batch-jobs.md, deploy.md).
    "  `azureml-model-deployment: <BATCH_DEPLOYMENT>` when set,",
    '  `{"properties": {"InputData": ',
    "  (`UriFolder` sends the blob's folder).",
    "  second one, so the version is recorded as `unknown`, logged",
    "  delete after checking the endpoint's jobs, and never posted again on its own. That",
    "- **Faults**: a 404 for a job",
    "  `unknown`, as a redelivery would.",
    '  -p environmentName="$ENV" -p networkIsolation=false -p alertEmail=',
    # Issue 18: names from infra/abbreviations.json and azd's resourceToken.
    "| `dataStorageAccountName`, `hostStorageAccountName`, `functionAppName`,",
    # Issue 18: the row also names the dev container image and the workflows as not run here.
    "| **Not run here** | Azure Functions Core Tools",
    # Issue 16: every shell block runs in tests/test_doc_snippets.py. The snippets take the
    # connection from .local/ops.env (not a fixed port), poll for the thumbnail, show the
    # loop's real output (its summary lines, the sample's job) and never a bare `python`.
    "Try it while it runs",
    "svc = BlobServiceClient.from_connection_string(",
    'svc.get_blob_client("images", "my photo.jpg")',
    'print(svc.get_blob_client("thumbnails"',
    "`fail` ends Failed.",
    "The loop shows each dispatch",
    "11:20:",
    "and the ops command lists them",
    "$ DATA_STORAGE=UseDevelopmentStorage=true",
    "2026-11-22T11:20:41",
    "2 jobs: Completed 1, Failed 1",
    "machine too. Run",
    "| `dead-lettered` | system topic",
    "| `dropped` | `DroppedEventCount`",
    "python -m tools.ops ",
    "Against **Azurite** (what",
    "export DATA_STORAGE=",
    ".venv/bin/python -m tools.ops backfill --container images --dry-run",
    "1 transient failure",  # the summary counts in the singular, as `ops jobs` does
    # Issue 16: instanceMemoryMB also sets the decode budget and the per-instance concurrency.
    "| `instanceMemoryMB` | `2048` | Instance memory",
    # Issue 16: the decode budget's two failures in the outcome table.
    "| `retry` (logged at WARNING, then raised) | a **transient** failure",
    # Issue 19: animated GIFs (and WebPs) now stay animated (docs/thumbnails.md, "Animated GIF
    # and WebP").
    "- **In**: JPEG, PNG, GIF (first frame), WebP,",
    # Issue 19: THUMBNAIL_SIZES (renditions) replaces THUMBNAIL_SIZE in Bicep; the setting
    # stays as its one-value form.
    "| `THUMBNAIL_SIZE` |",
    "| `thumbnailSize",
    "- Longest side at most `THUMBNAIL_SIZE",
    "  Changing `THUMBNAIL_FORMAT` or",
    "  is redone when its source changes.",
    # Benchmark figures: each full `make bench` rewrites them (docs/benchmarks.md quotes the
    # latest run); the rows themselves stay, with new numbers.
    *_BENCHMARK_ROWS,
)


def test_nothing_the_readme_said_before_the_split_is_lost() -> None:
    before = BEFORE_SPLIT.read_text(encoding="utf-8").splitlines()
    now = "\n".join(page.read_text(encoding="utf-8") for page in _pages()).splitlines()
    present = set(now)
    missing = [
        line
        for line in _kept_lines("\n".join(before))
        if line not in present and not line.startswith((*_REWRITTEN, *_REMOVED))
    ]
    assert missing == []
    for removed, said in _REMOVED.items():
        assert any(removed in line for line in before), removed
        assert any(said in line for line in now), said
    # Each rewritten line still has its page: the start of each stands in the docs.
    for rewritten in _REWRITTEN:
        words = rewritten.split("(")[0].split()[:4]
        assert any(" ".join(words) in line for line in now), rewritten


def test_the_benchmark_rows_stay_with_new_figures() -> None:
    """The benchmark rows exempted above are rewritten, not dropped: each still stands in
    docs/benchmarks.md."""
    rows = (DOCS / "benchmarks.md").read_text(encoding="utf-8").splitlines()
    for prefix in _BENCHMARK_ROWS:
        assert any(row.startswith(prefix) for row in rows), prefix
