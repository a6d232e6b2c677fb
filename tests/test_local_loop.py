"""``make run`` (python -m tools.local_loop) as a user runs it: a subprocess on free ports that
turns uploads into thumbnails, and leaves no process behind when it is stopped."""

from __future__ import annotations

import io
import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from azure.storage.blob import BlobServiceClient
from PIL import Image

from handlers.settings import SETTINGS
from tests.support.polling import poll
from tests.support.processes import (
    alive,
    child_pids,
    install_fake_func,
    process_group_members,
)
from tools import azurite
from tools.local_loop import function_environment
from tools.ops import main as ops_main

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Loop:
    process: subprocess.Popen[str]
    blob_port: int
    output: list[str]
    lines: queue.Queue[str | None]

    def wait_for(self, marker: str, seconds: float) -> str:
        deadline = time.monotonic() + seconds
        while True:
            left = deadline - time.monotonic()
            try:
                line = self.lines.get(timeout=max(left, 0.01))
            except queue.Empty:
                line = ""
            if line is None:
                raise AssertionError(
                    f"local loop exited ({self.process.poll()}) before {marker!r}:\n"
                    + "".join(self.output[-40:])
                )
            if marker in line:
                return line
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"no {marker!r} within {seconds} s:\n" + "".join(self.output[-40:])
                )

    def thumbnail_of_an_upload(self, name: str, seconds: float) -> None:
        """Upload a JPEG as images/<name> through the loop's blob port; wait for its
        thumbnail."""
        service = BlobServiceClient.from_connection_string(
            azurite.connection_string(self.blob_port)
        )
        service.get_blob_client("images", name).upload_blob(jpeg())
        thumbnail = service.get_blob_client("thumbnails", f"images/{name}")
        poll(thumbnail.exists, seconds, f"the thumbnail of {name}:\n" + "".join(self.output))

    def stop(self, sig: signal.Signals) -> int:
        self.process.send_signal(sig)
        return self.process.wait(timeout=30)


def start_loop(
    state: Path,
    *extra: str,
    blob_port: int | None = None,
    delivery: str = "inprocess",
    path: str | None = None,
) -> Loop:
    blob_port = blob_port or azurite.free_port()
    env = {name: value for name, value in os.environ.items() if name not in SETTINGS}
    env["PYTHONUNBUFFERED"] = "1"
    if path is not None:
        env["PATH"] = path
    if delivery == "inprocess" and "--functions-port" not in extra:
        # In-process runs serve func start's webhook; a free port keeps tests off 7071.
        extra = ("--functions-port", str(azurite.free_port()), *extra)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tools.local_loop",
            "--blob-port",
            str(blob_port),
            "--azurite-port",
            str(azurite.free_port()),
            "--state-dir",
            str(state),
            "--settings",
            str(state / "local.settings.json"),
            "--delivery",
            delivery,
            "--sample-timeout",
            "30",
            *extra,
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, to look for leftovers
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
    return Loop(process, blob_port, output, lines)


@pytest.fixture
def loops() -> Iterator[list[Loop]]:
    """Every loop a test starts is killed (with its group) if the test did not stop it."""
    started: list[Loop] = []
    yield started
    for loop in started:
        if loop.process.poll() is None:
            os.killpg(loop.process.pid, signal.SIGKILL)
            loop.process.wait(timeout=10)


def jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (800, 600), (10, 160, 60)).save(buffer, "JPEG")
    return buffer.getvalue()


def assert_nothing_left(loop: Loop, children: set[int]) -> None:
    assert children, "the loop should have started Azurite"
    left = {pid for pid in children if alive(pid)}
    assert not left, f"processes left behind: {left}"
    assert not process_group_members(loop.process.pid)


@pytest.mark.azurite
@pytest.mark.slow
def test_make_run_turns_an_upload_into_a_thumbnail_and_stops_cleanly(
    tmp_path: Path, loops: list[Loop]
) -> None:
    loop = start_loop(tmp_path / "state")
    loops.append(loop)
    loop.wait_for("local loop ready", 90)
    text = "".join(loop.output)
    assert "created" in text and "local.settings.json" in text
    assert "thumbnail -> http://127.0.0.1:" in text  # the samples' results were printed
    assert "dry-run" in text
    children = child_pids(loop.process.pid)

    loop.thumbnail_of_an_upload("mine/photo.jpg", 30.0)
    line = loop.wait_for("blob=images/mine/photo.jpg attempt=1/10 outcome=Succeeded", 5)
    assert "subscription=thumbnails" in line

    assert loop.stop(signal.SIGINT) == 0
    assert_nothing_left(loop, children)
    assert "stopped" in loop.output[-1]


@pytest.mark.azurite
@pytest.mark.slow
def test_sigterm_stops_it_and_azurite_keeps_its_data_for_the_next_run(
    tmp_path: Path, loops: list[Loop]
) -> None:
    state = tmp_path / "state"
    first = start_loop(state, "--no-samples")
    loops.append(first)
    first.wait_for("local loop ready", 60)
    children = child_pids(first.process.pid)
    service = BlobServiceClient.from_connection_string(azurite.connection_string(first.blob_port))
    service.get_blob_client("batch-input", "kept.txt").upload_blob(b"kept")
    assert first.stop(signal.SIGTERM) == 0
    assert_nothing_left(first, children)

    second = start_loop(state, "--no-samples", blob_port=first.blob_port)
    loops.append(second)
    second.wait_for("local loop ready", 60)
    assert service.get_blob_client("batch-input", "kept.txt").download_blob().readall() == b"kept"
    assert second.stop(signal.SIGTERM) == 0


@pytest.mark.azurite
@pytest.mark.http
@pytest.mark.slow
def test_with_func_on_path_it_runs_func_start_and_stops_its_whole_group(
    tmp_path: Path, loops: list[Loop]
) -> None:
    """A stand-in `func` (tools/standins/functions_host.py) that comes up a second late: the
    samples uploaded meanwhile wait for it, and stopping the loop stops the host's child."""
    bin_dir = tmp_path / "bin"
    install_fake_func(bin_dir, sys.executable)
    functions_port = azurite.free_port()
    loop = start_loop(
        tmp_path / "state",
        "--functions-port",
        str(functions_port),
        delivery="auto",
        path=f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
    )
    loops.append(loop)
    loop.wait_for("local loop ready", 90)
    text = "".join(loop.output)
    assert "started `func start` on port" in text
    assert f"webhook http://127.0.0.1:{functions_port}/runtime/webhooks/EventGrid" in text
    assert re.search(
        r"images/samples/landscape.jpg \(eTag 0x\w+\): delivered; thumbnail -> http://", text
    )
    children = child_pids(loop.process.pid)
    assert len(children) >= 3  # Azurite, the host, the host's worker

    loop.thumbnail_of_an_upload("via-func.jpg", 30.0)

    assert loop.stop(signal.SIGINT) == 0
    assert_nothing_left(loop, children)


@pytest.mark.azurite
@pytest.mark.http
@pytest.mark.slow
def test_a_sigkilled_loop_takes_azurite_and_the_host_down_with_it(
    tmp_path: Path, loops: list[Loop]
) -> None:
    """SIGKILL cannot be caught, so the loop cannot stop its children itself: its watchdog
    sees the pipe from the loop close and stops Azurite, `func start` and the host's worker."""
    bin_dir = tmp_path / "bin"
    install_fake_func(bin_dir, sys.executable)
    loop = start_loop(
        tmp_path / "state",
        "--no-samples",
        "--functions-port",
        str(azurite.free_port()),
        delivery="func",
        path=f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
    )
    loops.append(loop)
    loop.wait_for("local loop ready", 90)
    # The watchdog, Azurite, the host and the host's worker (the host starts it soon after).
    children = poll(
        lambda: found if len(found := child_pids(loop.process.pid)) >= 4 else None,
        30,
        "the loop's four children",
    )

    os.kill(loop.process.pid, signal.SIGKILL)
    assert loop.process.wait(timeout=10) == -signal.SIGKILL
    poll(
        lambda: not {pid for pid in children if alive(pid)},
        30,
        f"the children of the killed loop to go: {children}",
    )


def test_a_taken_blob_port_is_a_clear_error(tmp_path: Path, loops: list[Loop]) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        loop = start_loop(tmp_path, blob_port=port)
        loops.append(loop)
        assert loop.process.wait(timeout=30) == 2
    text = "".join(loop.output)
    assert f"error: port {port} on 127.0.0.1 is already in use" in text
    assert "Azurite" not in text.split("error:", 1)[0]  # failed before starting anything


def test_the_host_environment_follows_core_tools_rules() -> None:
    values = {
        "DATA_STORAGE": "UseDevelopmentStorage=true",
        "AzureWebJobsStorage": "UseDevelopmentStorage=true",
        "THUMBNAIL_SIZE": "128",
    }
    env = function_environment(values, {"THUMBNAIL_SIZE": "64"}, 10000)
    assert env["THUMBNAIL_SIZE"] == "64"  # the environment wins over local.settings.json
    assert env["DATA_STORAGE"] == "UseDevelopmentStorage=true"

    moved = function_environment(values, {}, 12345)
    for name in ("DATA_STORAGE", "AzureWebJobsStorage"):
        assert "BlobEndpoint=http://127.0.0.1:12345/devstoreaccount1;" in moved[name]


@pytest.mark.azurite
@pytest.mark.http
@pytest.mark.slow
def test_batch_endpoint_local_shows_each_job_to_its_end(
    tmp_path: Path, loops: list[Loop], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The session of docs/local-loop.md: upload into batch-input/incoming/, the dispatch line,
    the job's status lines, then ``python -m tools.ops jobs``."""
    loop = start_loop(
        tmp_path / "state",
        "--no-samples",
        "--batch-endpoint",
        "local",
        "--job-seconds",
        "3",
        "--track-seconds",
        "0.4",
    )
    loops.append(loop)
    loop.wait_for("local loop ready", 60)
    assert "started the local batch endpoint http://127.0.0.1:" in "".join(loop.output)
    connection = azurite.connection_string(loop.blob_port)
    service = BlobServiceClient.from_connection_string(connection)
    service.get_blob_client("batch-input", "incoming/scores.csv").upload_blob(b"a\n1\n")
    service.get_blob_client("batch-input", "incoming/fail-me.csv").upload_blob(b"a\n1\n")

    def told(blob: str, outcome: str) -> bool:
        return any(f"blob=batch-input/{blob} " in line and outcome in line for line in loop.output)

    for blob in ("incoming/scores.csv", "incoming/fail-me.csv"):
        poll(lambda: told(blob, "outcome=dispatched"), 20, f"{blob} dispatched")
        poll(lambda: told(blob, "outcome=job-queued"), 20, f"{blob} queued")
        poll(lambda: told(blob, "outcome=job-running"), 20, f"{blob} running")
    poll(lambda: told("incoming/scores.csv", "outcome=job-completed"), 20, "scores completed")
    poll(lambda: told("incoming/fail-me.csv", "outcome=job-failed"), 20, "fail-me failed")

    monkeypatch.setenv("DATA_STORAGE", connection)
    out, err = io.StringIO(), io.StringIO()
    assert ops_main(["jobs"], stdout=out, stderr=err) == 0, err.getvalue()
    listing = out.getvalue().splitlines()
    assert listing[-1] == "2 jobs: Completed 1, Failed 1"
    assert loop.stop(signal.SIGINT) == 0


@pytest.mark.azurite
@pytest.mark.http
@pytest.mark.slow
def test_batch_endpoint_local_in_folder_scope_shows_a_folder_drop(
    tmp_path: Path, loops: list[Loop], monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/batch-jobs.md, "Folder drops": the loop uploads ten files, then the marker; one
    dispatch line for the folder, its status lines, and ``ops jobs`` with the output URI."""
    state = tmp_path / "state"
    state.mkdir()
    document = json.loads((ROOT / "local.settings.json.sample").read_text(encoding="utf-8"))
    output = "azureml://datastores/workspaceblobstore/paths/scores/{path}/{job}"
    document["Values"] |= {"BATCH_JOB_SCOPE": "folder", "BATCH_OUTPUT_URI": output}
    (state / "local.settings.json").write_text(json.dumps(document), encoding="utf-8")
    loop = start_loop(
        state, "--batch-endpoint", "local", "--job-seconds", "3", "--track-seconds", "0.4"
    )
    loops.append(loop)
    loop.wait_for("local loop ready", 90)
    marker = "batch-input/incoming/sample-drop/_SUCCESS"

    def lines_with(text: str) -> list[str]:
        return [line for line in loop.output if text in line]

    poll(lambda: lines_with("outcome=job-completed"), 30, "the folder's job completed")
    dispatched = lines_with("dispatch_batch_job event=")
    assert len(dispatched) == 1 and f"blob={marker} " in dispatched[0]
    assert "outcome=dispatched" in dispatched[0]
    assert "/incoming/sample-drop/ output azureml://" in dispatched[0]
    for status in ("queued", "running", "completed"):
        assert any(f"blob={marker} " in line for line in lines_with(f"outcome=job-{status}"))
    assert not lines_with("part-0")  # the ten files reached no function

    monkeypatch.setenv("DATA_STORAGE", azurite.connection_string(loop.blob_port))
    out, err = io.StringIO(), io.StringIO()
    assert ops_main(["jobs"], stdout=out, stderr=err) == 0, err.getvalue()
    header, row, summary = out.getvalue().splitlines()
    assert header.split()[-1] == "output"
    job, blob, uri = row.split()[-3:]
    assert blob == marker
    assert uri == f"azureml://datastores/workspaceblobstore/paths/scores/incoming/sample-drop/{job}"
    assert summary == "1 job: Completed 1"
    assert loop.stop(signal.SIGINT) == 0
