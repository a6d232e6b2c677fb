"""Every shell block of README.md, the other top-level pages, docs/ and the GitHub templates
runs as written against a live ``make run``, so a snippet cannot rot; the few that cannot run
here say so with a mark on the line right before their fence:

``<!-- needs-azure -->``
    needs a subscription and a signed-in ``az``/``azd``: skipped. The block must call one.
``<!-- not-run: <reason> -->``
    runs until it is stopped, or is this suite itself: skipped. Each one is listed, with why,
    in NOT_RUN_BLOCKS below, so a new one cannot slip in.
``<!-- loop-output -->``
    on a plain (language-less) block: what the running ``make run`` prints after the blocks
    before it. Not skipped but checked: each of its lines must show up in the loop's output.

A ``console`` block's ``$ `` lines are the commands and its other lines their output, which
must appear (timestamps, ids and ports aside). Every other shell block must exit 0.

Each page's blocks run in order, each in a fresh ``bash`` (``set -eo pipefail``) in the
project folder, in the environment of a new second shell: PATH, a scratch HOME, and
OPS_ENV_FILE naming the ops.env of this test's own ``make run``. That loop runs as the pages
say (``make run ARGS="--batch-endpoint local"``, samples included), on free ports and with its
own state folder so that it never meets a developer's ``make run`` on port 10000; OPS_ENV_FILE
is how the ops commands and the snippets find its ops.env, as a user's find ``.local/ops.env``.
"""

from __future__ import annotations

import os
import queue
import re
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from handlers.settings import SETTINGS
from tests.support.polling import poll
from tests.test_local_loop import Loop
from tools import azurite

ROOT = Path(__file__).resolve().parent.parent
SHELLS = {"bash", "sh", "shell", "console"}
NEEDS_AZURE = "needs-azure"
NOT_RUN = "not-run"
LOOP_OUTPUT = "loop-output"

# (page, first command of the block) -> why the test cannot run it. Keep this short.
NOT_RUN_BLOCKS = {
    ("README.md", "make run"): "make run runs until Ctrl-C (the test starts its own, below), "
    "and make test is the suite this test is part of",
    ("CONTRIBUTING.md", "make run"): "the same two commands as README.md's quick start",
    ("docs/local-loop.md", "cp local.settings.json.sample local.settings.json"): "func start "
    "needs Azure Functions Core Tools, which cannot be installed here, and runs until stopped",
}
# How the loop is started: what the pages say (in-process even where `func` is on PATH, so the
# run does not depend on the machine), plus, in _make_run, what keeps it apart from a
# developer's.
LOOP_ARGS = ("--batch-endpoint", "local", "--delivery", "inprocess")
BLOCK_SECONDS = 90
_FENCE = re.compile(r"^```(\S*)\s*$")
_MARK = re.compile(r"^<!--\s*(.*?)\s*-->$")
_AZURE = re.compile(r"(^|[\s;&|(])(az|azd)\s")


@dataclass(frozen=True)
class Block:
    page: str  # relative to the project folder
    line: int  # of the opening fence
    language: str
    text: str
    mark: str | None  # the comment right before the fence, e.g. "not-run: why"

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"

    @property
    def kind(self) -> str | None:
        return None if self.mark is None else self.mark.split(":", 1)[0].strip()

    @property
    def first_command(self) -> str:
        """The block's first line without its comment."""
        line = next((line for line in self.text.splitlines() if line.strip()), "")
        return line.split(" #", 1)[0].strip()

    @property
    def runs(self) -> bool:
        return self.language in SHELLS and self.kind is None


def blocks_of(text: str, page: str) -> list[Block]:
    """The fenced blocks of a Markdown text, each with the mark on the line before it."""
    found: list[Block] = []
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        opening = _FENCE.match(lines[index])
        if opening is None:
            index += 1
            continue
        end = index + 1
        while end < len(lines) and lines[end].rstrip() != "```":
            end += 1
        before = next((line.strip() for line in reversed(lines[:index]) if line.strip()), "")
        mark = _MARK.match(before)
        found.append(
            Block(
                page,
                index + 1,
                opening[1],
                "\n".join(lines[index + 1 : end]) + "\n",
                mark[1] if mark else None,
            )
        )
        index = end + 1
    return found


def pages() -> list[Path]:
    """README.md, its neighbours (CONTRIBUTING.md ...), the docs, the GitHub templates: the
    pages tests/test_docs.py checks."""
    return [
        ROOT / "README.md",
        *sorted(page for page in ROOT.glob("*.md") if page.name != "README.md"),
        *sorted((ROOT / "docs").rglob("*.md")),
        *sorted((ROOT / ".github").rglob("*.md")),
    ]


def all_blocks() -> list[Block]:
    return [
        block
        for page in pages()
        for block in blocks_of(page.read_text(encoding="utf-8"), str(page.relative_to(ROOT)))
    ]


def _mask(line: str) -> list[str]:
    """The words of a line with what differs from run to run made alike: times, ids, ports,
    counts in key=value pairs, column padding."""
    line = re.sub(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(\+00:00|Z)?", "<time>", line)
    line = re.sub(r"\b\d{2}:\d{2}:\d{2}\b", "<time>", line)
    line = re.sub(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "<id>", line)
    line = re.sub(r"\bevent=\S+", "event=<id>", line)
    # Job names end in a hash of the blob version (handlers.batch_jobs.job_name_for).
    line = re.sub(r"\b(job-[a-z0-9_-]*?)[0-9a-f]{20}\b", r"\1<hash>", line)
    line = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:<port>", line)
    return line.split()


def _log_words(line: str) -> list[str]:
    # A log line's counts (listed=2 asked=2 ...) follow the tracker's timing, not the docs.
    return _mask(re.sub(r"=\d+\b", "=<n>", line))


def _in_order(wanted: list[str], words: list[str]) -> bool:
    rest = iter(words)
    return all(word in rest for word in wanted)


def missing_log_lines(shown: str, output: list[str]) -> list[str]:
    """Lines of a loop-output block that no line of the loop's output matches: the same
    words in the same order (a line may carry more, e.g. an extra count of a summary)."""
    printed = [_log_words(line) for line in output]
    return [
        line
        for line in shown.splitlines()
        if line.strip() and not any(_in_order(_log_words(line), words) for words in printed)
    ]


def missing_output_lines(shown: list[str], output: str) -> list[str]:
    """Lines of a console block's output that its commands did not print (masked alike)."""
    printed = [_mask(line) for line in output.splitlines()]
    return [line for line in shown if line.strip() and _mask(line) not in printed]


def console_parts(block: Block) -> tuple[str, list[str]]:
    commands = [line[2:] for line in block.text.splitlines() if line.startswith("$ ")]
    shown = [line for line in block.text.splitlines() if not line.startswith("$ ")]
    return "\n".join(commands) + "\n", shown


# --- the marks ------------------------------------------------------------------------------


def test_the_extraction_finds_blocks_and_their_marks() -> None:
    text = (
        "intro\n\n```sh\necho one\n```\n\n<!-- needs-azure -->\n```bash\naz login\n```\n"
        "<!-- not-run: forever -->\n\n```console\n$ make run\nready\n```\n"
        "<!-- loop-output -->\n```\n12:00:00 INFO x: y\n```\n```python\nprint()\n```\n"
    )
    found = blocks_of(text, "page.md")
    assert [(b.line, b.language, b.kind, b.runs) for b in found] == [
        (3, "sh", None, True),
        (8, "bash", NEEDS_AZURE, False),
        (13, "console", NOT_RUN, False),
        (18, "", LOOP_OUTPUT, False),
        (21, "python", None, False),
    ]
    assert found[0].text == "echo one\n"
    assert console_parts(found[2]) == ("make run\n", ["ready"])


def test_the_comparisons_tell_a_wrong_line_from_a_varying_one() -> None:
    printed = [
        "20:53:08 INFO    handlers.batch_tracking: track_batch_jobs run: listed=2 asked=2 "
        "changed=1 unchanged=1",
        "20:53:07 INFO    handlers.pipeline: dispatch_batch_job event=e4cb4bc9-1d23 "
        "blob=b/x.csv outcome=dispatched job batchjob-2442431f-a815-4967-a81c-58406361a70f",
    ]
    shown = (
        "11:20:41 INFO    handlers.batch_tracking: track_batch_jobs run: listed=1 asked=1 "
        "unchanged=1\n"
        "11:20:41 INFO    handlers.pipeline: dispatch_batch_job event=68d89bca-... blob=b/x.csv "
        "outcome=dispatched job batchjob-75711ecd-c440-4000-946f-9ba8947bdf24\n"
        "11:20:41 INFO    handlers.pipeline: dispatch_batch_job event=1 blob=b/y.csv "
        "outcome=dispatched\n"
    )
    assert missing_log_lines(shown, printed) == [shown.splitlines()[2]]
    listing = "dispatched   status\n2026-12-04T20:52:50.547+00:00  Completed  batchjob-x\n"
    assert missing_output_lines(["dispatched status", "2 jobs: Completed 1"], listing) == [
        "2 jobs: Completed 1"
    ]
    assert missing_output_lines(["2025-01-01T00:00:00.000+00:00 Failed batchjob-x"], listing)
    assert not missing_output_lines(
        ["2025-01-01T00:00:00.000+00:00   Completed   batchjob-x"], listing
    )


def test_every_mark_is_one_of_the_few_and_where_it_belongs() -> None:
    problems = []
    for block in all_blocks():
        if block.kind is None:
            continue
        if block.kind in (NEEDS_AZURE, NOT_RUN) and block.language not in SHELLS:
            problems.append(f"{block.where}: {block.kind} on a {block.language!r} block")
        elif block.kind == LOOP_OUTPUT and block.language:
            problems.append(f"{block.where}: loop-output on a {block.language!r} block")
        elif block.kind not in (NEEDS_AZURE, NOT_RUN, LOOP_OUTPUT):
            problems.append(f"{block.where}: unknown mark {block.mark!r}")
        elif block.kind == NEEDS_AZURE and not _AZURE.search(block.text):
            problems.append(f"{block.where}: needs-azure, but it calls neither az nor azd")
        elif block.kind == NOT_RUN and not (block.mark or "").partition(":")[2].strip():
            problems.append(f"{block.where}: not-run without a reason")
    assert problems == []


def test_no_command_hides_in_a_block_the_test_does_not_run() -> None:
    # Another shell's language (zsh, powershell ...) or a "$ " transcript in a plain block
    # would escape the live run; such a block must be one of the shells above, or marked.
    others = {"", "mermaid", "json", "python", "bicep", "text", "yaml"}
    problems = [
        f"{block.where}: a {block.language!r} block"
        for block in all_blocks()
        if block.language not in SHELLS | others
    ]
    problems += [
        f"{block.where}: a plain block with a '$ ' command: make it a console block"
        for block in all_blocks()
        if block.language in others
        and any(line.startswith("$ ") for line in block.text.splitlines())
    ]
    assert problems == []


def test_the_blocks_not_run_are_exactly_the_listed_few() -> None:
    marked = {(b.page, b.first_command) for b in all_blocks() if b.kind == NOT_RUN}
    assert marked == set(NOT_RUN_BLOCKS)


def test_every_page_with_a_command_has_its_blocks_run() -> None:
    # The live test below must have something to run, or it would pass by running nothing.
    runnable = {b.page for b in all_blocks() if b.runs}
    assert {"docs/local-loop.md", "docs/operations.md"} <= runnable


# --- the live run ---------------------------------------------------------------------------


def _pages_with_runnable_blocks() -> list[str]:
    return sorted({block.page for block in all_blocks() if block.runs})


@dataclass
class MakeRun:
    loop: Loop
    state: Path

    @property
    def ops_env(self) -> Path:
        return self.state / "ops.env"


def _make_run(state: Path) -> MakeRun:
    blob_port = azurite.free_port()
    args = [
        *LOOP_ARGS,
        *("--blob-port", str(blob_port)),
        *("--azurite-port", str(azurite.free_port())),
        *("--state-dir", str(state)),
        *("--settings", str(state / "local.settings.json")),
    ]
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in SETTINGS and name not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")
    }
    env["PYTHONUNBUFFERED"] = "1"
    process = subprocess.Popen(
        ["make", "--no-print-directory", "run", f"ARGS={shlex.join(args)}"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # make and the loop in one group, stopped together
    )
    output: list[str] = []
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            output.append(line)
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    return MakeRun(Loop(process, blob_port, output, lines), state)


@pytest.fixture
def make_run(tmp_path: Path) -> Iterator[MakeRun]:
    run = _make_run(tmp_path / "state")
    try:
        yield run
    finally:
        process = run.loop.process
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGINT)  # as Ctrl-C in its terminal would
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)


def _second_shell(run: MakeRun, home: Path) -> dict[str, str]:
    return {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "OPS_ENV_FILE": str(run.ops_env),
    }


def _run_block(block: Block, run: MakeRun, home: Path) -> str | None:
    """Run one block; None when it did what the page says, else what went wrong."""
    script, shown = console_parts(block) if block.language == "console" else (block.text, [])
    try:
        done = subprocess.run(
            ["bash", "-c", "set -eo pipefail\n" + script],
            check=False,
            cwd=ROOT,
            env=_second_shell(run, home),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=BLOCK_SECONDS,
        )
    except subprocess.TimeoutExpired:
        return f"{block.where}: still running after {BLOCK_SECONDS} s"
    # The test's loop writes its ops.env elsewhere than a user's; the output names it.
    output = done.stdout.replace(str(run.ops_env), ".local/ops.env")
    if done.returncode != 0:
        return f"{block.where}: exit {done.returncode}:\n{output[-3000:]}"
    missing = missing_output_lines(shown, output)
    if missing:
        return f"{block.where}: these lines did not appear: {missing}\noutput:\n{output[-3000:]}"
    return None


def _wait_for_loop_output(block: Block, run: MakeRun, seconds: float) -> str | None:
    deadline = time.monotonic() + seconds
    while True:
        missing = missing_log_lines(block.text, list(run.loop.output))
        if not missing:
            return None
        if time.monotonic() >= deadline or run.loop.process.poll() is not None:
            tail = "".join(run.loop.output[-30:])
            return f"{block.where}: the loop did not print {missing}\nits output ends:\n{tail}"
        time.sleep(0.1)


@pytest.mark.azurite
@pytest.mark.http
@pytest.mark.slow
@pytest.mark.parametrize("page", _pages_with_runnable_blocks())
def test_the_shell_blocks_of_a_page_run_against_make_run(
    page: str, make_run: MakeRun, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    make_run.loop.wait_for("local loop ready", 120)
    assert make_run.ops_env.is_file()
    failures = []
    ran = 0
    for block in (b for b in all_blocks() if b.page == page):
        if block.kind == LOOP_OUTPUT:
            problem = _wait_for_loop_output(block, make_run, 60)
        elif block.runs:
            problem = _run_block(block, make_run, home)
            ran += 1
        else:
            continue
        if problem is not None:
            failures.append(problem)
    assert ran > 0
    assert failures == [], "\n\n".join(failures)
    os.killpg(make_run.loop.process.pid, signal.SIGINT)
    make_run.loop.process.wait(timeout=30)
    poll(lambda: not make_run.ops_env.exists(), 10, "make run to remove its ops.env")
