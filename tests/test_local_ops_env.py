"""``make run`` writes what a second shell needs into .local/ops.env, and the ops commands
read it: a clean shell reaches the local batch endpoint and its identity stand-in."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from azure.storage.blob import BlobServiceClient

from tests.support.polling import poll
from tests.test_local_loop import Loop, loops, start_loop  # noqa: F401 - loops is a fixture
from tools import azurite, local_env

ROOT = Path(__file__).resolve().parent.parent


def ops(*args: str, env_file: Path, home: Path) -> subprocess.CompletedProcess[str]:
    """``python -m tools.ops`` in a shell that has none of the loop's settings."""
    env = {"PATH": os.environ["PATH"], "HOME": str(home), local_env.FILE_SETTING: str(env_file)}
    return subprocess.run(
        [sys.executable, "-m", "tools.ops", *args],
        cwd=ROOT,
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.azurite
@pytest.mark.http
@pytest.mark.slow
def test_a_clean_second_shell_refreshes_and_resubmits_through_the_file(
    tmp_path: Path,
    loops: list[Loop],  # noqa: F811
) -> None:
    state = tmp_path / "state"
    home = tmp_path / "home"
    home.mkdir()
    # The loop's own tracker runs once a minute: well within that, only the ops commands
    # move the jobs on.
    loop = start_loop(
        state,
        "--no-samples",
        *("--batch-endpoint", "local", "--job-seconds", "1", "--track-seconds", "60"),
    )
    loops.append(loop)
    banner = loop.wait_for("local loop ready", 60)
    env_file = state / "ops.env"
    assert str(env_file) in banner
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    written = local_env.read(env_file)
    assert {"DATA_STORAGE", "BATCH_ENDPOINT_URI", "IDENTITY_ENDPOINT", "IDENTITY_HEADER"} <= set(
        written
    )

    service = BlobServiceClient.from_connection_string(azurite.connection_string(loop.blob_port))
    for name in ("incoming/scores.csv", "incoming/fail-me.csv"):
        service.get_blob_client("batch-input", name).upload_blob(b"a\n1\n")
        loop.wait_for(f"blob=batch-input/{name} outcome=dispatched", 30)

    def refreshed() -> subprocess.CompletedProcess[str] | None:
        done = ops("jobs", "--refresh", env_file=env_file, home=home)
        assert done.returncode == 0, done.stderr
        return done if done.stdout.splitlines()[-1] == "2 jobs: Completed 1, Failed 1" else None

    listing = poll(refreshed, 30, "ops jobs --refresh to see both jobs end")
    assert "settings from" in listing.stderr and str(env_file) in listing.stderr
    assert "Traceback" not in listing.stderr

    resubmitted = ops("jobs", "--resubmit-failed", env_file=env_file, home=home)
    assert resubmitted.returncode == 0, resubmitted.stderr
    assert "resubmitted batch-input/incoming/fail-me.csv" in resubmitted.stdout
    assert resubmitted.stdout.splitlines()[-1] == "summary: resubmitted 1"

    assert loop.stop(signal.SIGINT) == 0
    assert not env_file.exists()  # removed on exit


@pytest.mark.azurite
@pytest.mark.slow
def test_the_environment_wins_and_a_killed_loop_leaves_no_file(
    tmp_path: Path,
    loops: list[Loop],  # noqa: F811
) -> None:
    state = tmp_path / "state"
    loop = start_loop(state, "--no-samples")
    loops.append(loop)
    loop.wait_for("local loop ready", 60)
    env_file = state / "ops.env"
    assert "BATCH_ENDPOINT_URI" not in local_env.read(env_file)  # dry-run loop

    # A variable the shell sets wins over the file's.
    done = subprocess.run(
        [sys.executable, "-m", "tools.ops", "jobs"],
        cwd=ROOT,
        check=False,
        env={
            "PATH": os.environ["PATH"],
            "HOME": str(tmp_path),
            local_env.FILE_SETTING: str(env_file),
            "DATA_STORAGE": azurite.connection_string(azurite.free_port()),  # nobody there
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert "error: storage" in done.stderr

    os.kill(loop.process.pid, signal.SIGKILL)
    loop.process.wait(timeout=10)
    poll(lambda: not env_file.exists(), 30, "the watchdog to remove ops.env")


def test_the_default_file_is_in_the_checkout_and_ignored_by_git() -> None:
    os.environ.pop(local_env.FILE_SETTING, None)
    assert local_env.path() == ROOT / ".local" / "ops.env"
    ignored = subprocess.run(["git", "check-ignore", "-q", ".local/ops.env"], cwd=ROOT, check=False)
    assert ignored.returncode == 0
    os.environ[local_env.FILE_SETTING] = ""
    assert local_env.path() is None  # empty: read no file


def test_values_with_shell_characters_round_trip(tmp_path: Path) -> None:
    values = {"DATA_STORAGE": "A=1;B='x y';C=$HOME", "BATCH_ENDPOINT_URI": "http://h/jobs"}
    target = tmp_path / "ops.env"
    local_env.write(target, values, "a test")
    assert local_env.read(target) == values
    text = subprocess.run(
        ["bash", "-c", f'set -a; . "{target}"; printf %s "$DATA_STORAGE"'],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert text == values["DATA_STORAGE"]  # `set -a; . .local/ops.env` works too
