"""Issue 16: the ops commands never count work as done that a setting kept from being done,
dry runs answer from the real run's decisions, state stays in the project, and refusals of
non-images leave one INFO line."""

# The ops fixtures come from tests/test_ops.py; pytest finds them by their imported names,
# which the test parameters then shadow on purpose.
# ruff: noqa: F811

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from azure.storage.blob import BlobServiceClient

from handlers.context import reset_context
from tests.support.faults import batch_environment
from tests.support.host import invoke
from tests.test_ops import (  # noqa: F401  (fixtures among them)
    BATCH_OFFERED,
    ROOT,
    Ops,
    counts,
    dead_letter,
    fill_batch,
    image,
    ops,
    outputs,
    put,
    routes_file,
    state_dir,
)
from tools import events as build
from tools.ops import state
from tools.standins import JobsEndpoint, ManagedIdentityEndpoint


def _unset_batch_endpoint() -> None:
    os.environ.pop("BATCH_ENDPOINT_URI", None)
    reset_context()


# --- item 1: a replay whose dispatch would only be a dry run ------------------------------


@pytest.mark.azurite
def test_a_letter_whose_replay_would_be_a_dry_run_stays_in_place_and_the_exit_is_non_zero(
    ops: Ops,
    blob_service: BlobServiceClient,
    containers: dict[str, str],
    upload_event: Callable[..., dict[str, Any]],
) -> None:
    dead = containers["deadletter"]
    csv = upload_event(
        containers["incoming"], "incoming/x.csv", b"a,b\n", build.CLOUD_EVENT_SCHEMA, "text/csv"
    )
    photo = upload_event(containers["images"], "a.jpg", image("JPEG"), content_type="image/jpeg")
    batch = dead_letter(blob_service, dead, "BATCH/2025/3/2/15", [csv])
    thumbs = dead_letter(blob_service, dead, "THUMBNAILS/2025/3/2/15", [photo])
    before = outputs(blob_service, dead)

    # The dry run foretells it from the same decision.
    dry = ops("replay-deadletters", "--dry-run")
    assert dry.code == 0, dry.out + dry.err
    assert f"would leave in place {dead}/{batch}: dispatch_batch_job BATCH_ENDPOINT_URI" in dry.out
    assert f"would replay {dead}/{thumbs}" in dry.out
    assert "would replay 1 dead-letter blob, would leave in place 1, malformed 0" in dry.out

    result = ops("replay-deadletters")  # app_env leaves BATCH_ENDPOINT_URI unset
    assert result.code == 2, result.out + result.err
    after = outputs(blob_service, dead)
    assert after[batch] == before[batch]  # untouched, not archived
    assert f"archive/{batch}" not in after
    assert set(after) == {batch, f"archive/{thumbs}"}  # the thumbnail letter did go through
    (why,) = [line for line in result.out.splitlines() if line.startswith(f"left in place: {dead}")]
    assert why.startswith(f"left in place: {dead}/{batch}: ")
    assert "BATCH_ENDPOINT_URI" in why and "dry-run" in why
    assert "archived 1, left in place 1, malformed 0" in result.out
    assert result.counts() == counts(1, 0, 0, 0)
    assert "not final (depend on a setting): 1" in result.out


# --- item 2: dry runs from the real run's decisions ---------------------------------------


@pytest.mark.azurite
@pytest.mark.http
def test_without_the_endpoint_the_ledger_still_says_what_is_done(
    ops: Ops,
    blob_service: BlobServiceClient,
    containers: dict[str, str],
    identity: ManagedIdentityEndpoint,
    jobs: JobsEndpoint,
) -> None:
    incoming = containers["incoming"]
    fill_batch(blob_service, containers)
    batch_environment(identity, jobs)
    first = ops("backfill", "--container", incoming)
    assert first.code == 0, first.out + first.err
    assert first.counts() == counts(len(BATCH_OFFERED), 0, 0, 0)

    _unset_batch_endpoint()
    dry = ops("backfill", "--container", incoming, "--dry-run")
    assert dry.code == 0, dry.out + dry.err
    assert f"would process 0, already done {len(BATCH_OFFERED)}," in dry.out
    real = ops("backfill", "--container", incoming)
    assert real.code == 0, real.out + real.err
    assert real.counts() == counts(0, len(BATCH_OFFERED), 0, 0)
    assert len([r for r in jobs.requests if r.method == "POST"]) == len(BATCH_OFFERED)


@pytest.mark.azurite
@pytest.mark.http
def test_a_backfill_that_could_only_dry_run_keeps_its_blobs_to_do(
    ops: Ops,
    blob_service: BlobServiceClient,
    containers: dict[str, str],
    state_dir: Path,
    identity: ManagedIdentityEndpoint,
    jobs: JobsEndpoint,
) -> None:
    incoming = containers["incoming"]
    fill_batch(blob_service, containers)

    dry = ops("backfill", "--container", incoming, "--dry-run")
    assert dry.code == 0, dry.out + dry.err
    stays = [line for line in dry.out.splitlines() if line.startswith("would stay to do")]
    assert len(stays) == len(BATCH_OFFERED) and all("BATCH_ENDPOINT_URI" in s for s in stays)
    assert f"would stay to do {len(BATCH_OFFERED)}" in dry.out

    unset = ops("backfill", "--container", incoming)
    assert unset.code == 2, unset.out + unset.err
    assert unset.counts() == counts(0, 0, 0, 0)
    assert f"not final (depend on a setting): {len(BATCH_OFFERED)}" in unset.out
    assert "BATCH_ENDPOINT_URI" in unset.out
    assert list(state_dir.glob("backfill-*.json"))  # the checkpoint keeps them

    batch_environment(identity, jobs)
    resumed = ops("backfill", "--container", incoming)
    assert resumed.code == 0, resumed.out + resumed.err
    assert resumed.counts() == counts(len(BATCH_OFFERED), 0, 0, 0)
    assert len(jobs.jobs) == len(BATCH_OFFERED)


@pytest.mark.azurite
def test_a_dry_run_says_what_it_did_not_check(
    ops: Ops, blob_service: BlobServiceClient, containers: dict[str, str]
) -> None:
    images = containers["images"]
    put(blob_service, images, "good.png", image("PNG"), "image/png")
    put(blob_service, images, "corrupt.jpg", b"\xff\xd8\xff\xe0 truncated", "image/jpeg")
    put(blob_service, images, "empty.png", b"", "image/png")

    dry = ops("backfill", "--container", images, "--dry-run")
    assert dry.code == 0, dry.out + dry.err
    assert "would fail 0" not in dry.out
    assert f"would fail (the blob is empty (0 bytes)): create_thumbnail {images}/empty.png" in (
        dry.out
    )
    assert f"would process (content not checked): create_thumbnail {images}/corrupt.jpg" in dry.out
    assert "would process 2, already done 0, would fail 1 + not checked" in dry.out

    real = ops("backfill", "--container", images)
    assert real.counts() == counts(1, 0, 2, 0)  # the dry run warned of both


# --- item 6: state in the project, no locks left -----------------------------------------


def test_state_defaults_to_the_checkouts_local_folder() -> None:
    assert (ROOT / ".git").exists()  # these tests run from a checkout
    assert state.default_state_dir() == ROOT / ".local" / "state"


def test_a_finished_run_leaves_no_lock_files(tmp_path: Path) -> None:
    key = {"prefix": "a/"}
    with state.held(tmp_path, "backfill-c", key) as path:
        state.save(path, state.Checkpoint(key=key))
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name, path.name + ".lock"]
    with state.held(tmp_path, "backfill-c", key) as again:
        assert again == path  # an unfinished run is found again by its key
        state.clear(again)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.azurite
def test_a_complete_backfill_leaves_its_state_folder_empty(
    ops: Ops, blob_service: BlobServiceClient, containers: dict[str, str], state_dir: Path
) -> None:
    put(blob_service, containers["images"], "one.png", image("PNG"), "image/png")
    result = ops("backfill", "--container", containers["images"])
    assert result.code == 0, result.out + result.err
    assert list(state_dir.iterdir()) == []


# --- item 7: a non-image through the function leaves one INFO line ------------------------


@pytest.mark.azurite
def test_a_non_image_reaching_create_thumbnail_logs_one_ignored_line_at_info(
    app_env: dict[str, str],
    containers: dict[str, str],
    upload_event: Callable[..., dict[str, Any]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # What the host lets through: host.json keeps Function logs at Information.
    caplog.set_level(logging.INFO)
    notes = upload_event(
        containers["images"], "notes.txt", b"plain text", content_type="text/plain"
    )
    invoke("create_thumbnail", notes)  # the decorated function, as the host calls it
    lines = [(r.levelno, r.getMessage()) for r in caplog.records if r.name.startswith("handlers")]
    assert len(lines) == 1, lines
    level, message = lines[0]
    assert level == logging.INFO
    assert f"blob={containers['images']}/notes.txt outcome=ignored reason=not an image" in message
