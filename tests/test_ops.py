"""The operators' commands against the real Azurite: backfill and dead-letter replay.

The commands run as operators run them (``main(argv)`` in-process, and ``python -m tools.ops``
in a subprocess), with a routes file that is ``infra/event-subscriptions.json`` with only the
container names swapped for this test's own.
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import BlobServiceClient, ContentSettings
from PIL import Image

from handlers import batch_endpoint, batch_index, pipeline
from handlers.batch_ledger import ledger_name
from handlers.context import AppContext
from handlers.events import AccountEndpoint, BlobCreated, parse_event
from handlers.outcomes import Outcome
from handlers.thumbnails import SOURCE_ETAG
from tests.support.faults import batch_environment
from tools import azurite
from tools import events as build
from tools.ops import main, state
from tools.ops.progress import Progress
from tools.routes import ROUTES_FILE
from tools.standins import JobsEndpoint, ManagedIdentityEndpoint

ROOT = Path(__file__).resolve().parent.parent


# --- inputs -------------------------------------------------------------------------------


def image(fmt: str, mode: str = "RGB") -> bytes:
    picture = Image.new(mode, (80, 60), color=(200, 40, 90, 128)[: len(mode)] if mode != "P" else 3)
    buffer = io.BytesIO()
    picture.save(buffer, fmt)
    return buffer.getvalue()


# Every image the thumbnails route offers: several formats, an upper-case extension, a name
# with a folder, a space and a non-ASCII character.
IMAGES: dict[str, tuple[bytes, str]] = {
    "photos/a.jpg": (image("JPEG"), "image/jpeg"),
    "photos/b.png": (image("PNG", "RGBA"), "image/png"),
    "c.gif": (image("GIF", "P"), "image/gif"),
    "d.webp": (image("WEBP"), "image/webp"),
    "e.BMP": (image("BMP"), "image/bmp"),
    "deep/with space é.tiff": (image("TIFF"), "image/tiff"),
}
ALREADY_THUMBNAILED = "done.jpg"
NOT_AN_IMAGE = "fake.jpg"  # offered by the route (its name ends .jpg), refused by the handler
CORRUPT_JPEG = b"\xff\xd8\xff\xe0 hello"  # a JPEG's first bytes, then nothing an image holds
NOT_OFFERED = {"notes.txt": b"plain text", "report.pdf": b"%PDF-1.4", "photos/raw.cr2": b"raw"}

# The batch route watches incoming/ case-insensitively (Event Grid's default), so Incoming/
# is offered too; other/ is outside its folder.
BATCH_OFFERED = ("incoming/one.csv", "incoming/sub/two.parquet", "Incoming/three.csv")
BATCH_NOT_OFFERED = ("other/four.csv", "incomingx/five.csv")


@dataclass
class Result:
    code: int
    out: str
    err: str

    def counts(self) -> dict[str, int]:
        """The four numbers of the summary."""
        found = {}
        for label in (
            "processed",
            "skipped as already done",
            "permanent failures",
            "transient failures",
        ):
            match = re.search(rf"^\s*{label}: (\d+)", self.out, re.M)
            assert match is not None, f"no '{label}' in the summary:\n{self.out}"
            found[label] = int(match[1])
        return found


def counts(processed: int, done: int, permanent: int, transient: int) -> dict[str, int]:
    return {
        "processed": processed,
        "skipped as already done": done,
        "permanent failures": permanent,
        "transient failures": transient,
    }


# --- fixtures -----------------------------------------------------------------------------


@pytest.fixture
def routes_file(tmp_path: Path, containers: dict[str, str]) -> Path:
    """The real routes with this test's containers in place of images and batch-input."""
    document = json.loads(ROUTES_FILE.read_text(encoding="utf-8"))
    swaps = {"images": containers["images"], "batch-input": containers["incoming"]}
    for subscription in document["subscriptions"]:
        flt = subscription["filter"]
        before = flt["subjectBeginsWith"]
        for old, new in swaps.items():
            flt["subjectBeginsWith"] = flt["subjectBeginsWith"].replace(
                f"/containers/{old}/", f"/containers/{new}/"
            )
        assert flt["subjectBeginsWith"] != before
    path = tmp_path / "routes.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


Ops = Callable[..., Result]


@pytest.fixture
def ops(app_env: dict[str, str], routes_file: Path, state_dir: Path) -> Ops:
    """Run ``python -m tools.ops`` in-process with this test's routes and state directory."""

    def run(*argv: str, handle: Callable[..., Outcome] = pipeline.handle) -> Result:
        command, *rest = argv
        extra = ["--routes", str(routes_file)]
        if command == "backfill":
            extra += ["--state-dir", str(state_dir)]
        out, err = io.StringIO(), io.StringIO()
        code = main([command, *extra, *rest], handle=handle, stdout=out, stderr=err)
        return Result(code, out.getvalue(), err.getvalue())

    return run


def put(service: BlobServiceClient, container: str, name: str, data: bytes, kind: str) -> str:
    result = service.get_blob_client(container, name).upload_blob(
        data, overwrite=True, content_settings=ContentSettings(content_type=kind)
    )
    return str(result["etag"]).strip('"')


def outputs(service: BlobServiceClient, container: str) -> dict[str, tuple[str, Any]]:
    """Every blob of ``container`` with its eTag and last-modified time ({} if none)."""
    try:
        return {
            blob.name: (blob.etag, blob.last_modified)
            for blob in service.get_container_client(container).list_blobs()
        }
    except ResourceNotFoundError:
        return {}


def fill_images(service: BlobServiceClient, containers: dict[str, str]) -> dict[str, str]:
    """Upload the mixed images container; return the eTag of every offered blob."""
    etags = {}
    for name, (data, kind) in IMAGES.items():
        etags[name] = put(service, containers["images"], name, data, kind)
    etags[NOT_AN_IMAGE] = put(
        service, containers["images"], NOT_AN_IMAGE, CORRUPT_JPEG, "image/jpeg"
    )
    for name, data in NOT_OFFERED.items():
        put(service, containers["images"], name, data, "application/octet-stream")
    return etags


def thumbnail_beforehand(
    upload_event: Callable[..., dict[str, Any]], containers: dict[str, str]
) -> dict[str, Any]:
    """Make one thumbnail the way the function does, before any backfill; return its event."""
    event = upload_event(
        containers["images"], ALREADY_THUMBNAILED, image("JPEG"), content_type="image/jpeg"
    )
    outcome = pipeline.handle("create_thumbnail", event, AppContext.from_env(os.environ))
    assert outcome.status == "written"
    return event


def fill_batch(service: BlobServiceClient, containers: dict[str, str]) -> None:
    for name in (*BATCH_OFFERED, *BATCH_NOT_OFFERED):
        put(service, containers["incoming"], name, b"age,sex\n63,1\n", "text/csv")


def ledger_names(
    service: BlobServiceClient, azurite_service: azurite.Azurite, container: str, names: Any
) -> dict[str, str]:
    """The ledger blob name of the current version of each of ``names``."""
    account = AccountEndpoint(azurite.ACCOUNT, azurite_service.blob_url)
    found = {}
    for name in names:
        props = service.get_blob_client(container, name).get_blob_properties()
        event = build.blob_created(
            account=azurite.ACCOUNT,
            service_url=azurite_service.blob_url,
            container=container,
            blob_name=name,
            etag=str(props.etag),
        )
        parsed = parse_event(event, account)
        assert isinstance(parsed, BlobCreated)
        found[name] = ledger_name(parsed)
    return found


class Recording:
    """A ``handle`` that records each (function, blob) and then does the real work; after
    ``interrupt_after`` calls every further call raises KeyboardInterrupt instead, as Ctrl-C
    would arrive in the middle of a run."""

    def __init__(self, interrupt_after: int | None = None) -> None:
        self.interrupt_after = interrupt_after
        self.calls: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def __call__(self, function: str, raw: object, ctx: AppContext | None = None) -> Outcome:
        assert isinstance(raw, dict)
        blob = raw["subject"].split("/blobs/", 1)[1]
        with self._lock:
            if self.interrupt_after is not None and len(self.calls) >= self.interrupt_after:
                raise KeyboardInterrupt
            self.calls.append((function, blob))
        return pipeline.handle(function, raw, ctx)

    @property
    def blobs(self) -> list[str]:
        return [blob for _, blob in self.calls]


# --- backfill -----------------------------------------------------------------------------


@pytest.mark.azurite
@pytest.mark.http
def test_backfill_in_folder_scope_offers_folders_with_a_marker_and_no_job(
    ops: Ops,
    blob_service: BlobServiceClient,
    containers: dict[str, str],
    identity: ManagedIdentityEndpoint,
    jobs: JobsEndpoint,
) -> None:
    incoming = containers["incoming"]
    for folder in ("incoming/ready", "incoming/half", "incoming/done"):
        for n in range(4):
            put(blob_service, incoming, f"{folder}/part-{n}.csv", b"a\n1\n", "text/csv")
    for folder in ("incoming/ready", "incoming/done"):
        put(blob_service, incoming, f"{folder}/_SUCCESS", b"", "application/octet-stream")
    batch_environment(identity, jobs)
    os.environ.update(
        {
            "BATCH_JOB_SCOPE": "folder",
            "BATCH_OUTPUT_URI": "azureml://datastores/workspaceblobstore/paths/out/{path}/{job}",
        }
    )
    # One folder's job already exists: its marker's version has a record.
    ctx = AppContext.from_env(os.environ)
    done = ops("backfill", "--container", incoming, "--prefix", "incoming/done/")
    assert done.code == 0, done.out + done.err
    assert len(jobs.jobs) == 1

    dry = ops("backfill", "--container", incoming, "--target", "dispatch_batch_job", "--dry-run")
    assert dry.code == 0, dry.out + dry.err
    assert f"dispatch_batch_job {incoming}/incoming/ready/_SUCCESS" in dry.out
    assert "part-" not in dry.out  # files are not offered: the route takes markers only
    real = ops("backfill", "--container", incoming, "--target", "dispatch_batch_job")
    assert real.code == 0, real.out + real.err
    assert real.counts() == counts(1, 1, 0, 0)
    assert jobs.job_uris() == {
        f"{ctx.blob_service.url.rstrip('/')}/{incoming}/incoming/{name}/": 1
        for name in ("ready", "done")
    }
    listing = ops("jobs")
    assert listing.code == 0, listing.err
    header, *rows, summary = listing.out.splitlines()
    assert header.split() == ["dispatched", "status", "job", "blob", "output"]
    for row in rows:
        job, blob, output = row.split()[-3:]
        folder = blob.removesuffix("/_SUCCESS").rsplit("/", 1)[-1]
        assert (
            output == f"azureml://datastores/workspaceblobstore/paths/out/incoming/{folder}/{job}"
        )
    assert summary == "2 jobs: dispatched (not yet tracked) 2"


@pytest.mark.azurite
@pytest.mark.http
def test_backfill_does_what_the_routes_say_and_a_second_run_writes_nothing(
    ops: Ops,
    blob_service: BlobServiceClient,
    azurite_service: azurite.Azurite,
    containers: dict[str, str],
    upload_event: Callable[..., dict[str, Any]],
    identity: ManagedIdentityEndpoint,
    jobs: JobsEndpoint,
) -> None:
    images, incoming = containers["images"], containers["incoming"]
    etags = fill_images(blob_service, containers)
    thumbnail_beforehand(upload_event, containers)
    fill_batch(blob_service, containers)
    batch_environment(identity, jobs)
    before = outputs(blob_service, containers["thumbnails"])

    first = ops("backfill", "--container", images, "--concurrency", "4")
    assert first.code == 0, first.out + first.err
    assert first.counts() == counts(len(IMAGES), 1, 1, 0)
    assert f"written {len(IMAGES)}" in first.out
    assert f"permanent create_thumbnail {images}/{NOT_AN_IMAGE}" in first.out

    thumbs = outputs(blob_service, containers["thumbnails"])
    expected = {f"{images}/{name}" for name in [*IMAGES, ALREADY_THUMBNAILED]}
    assert set(thumbs) == expected
    for name in IMAGES:
        props = blob_service.get_blob_client(
            containers["thumbnails"], f"{images}/{name}"
        ).get_blob_properties()
        assert props.metadata[SOURCE_ETAG] == etags[name]
    already = f"{images}/{ALREADY_THUMBNAILED}"
    assert thumbs[already] == before[already]  # reported as done, not rewritten

    batch = ops("backfill", "--container", incoming, "--target", "dispatch_batch_job")
    assert batch.code == 0, batch.out + batch.err
    assert batch.counts() == counts(len(BATCH_OFFERED), 0, 0, 0)
    posted = [r.json()["properties"]["inputData"] for r in jobs.requests if r.method == "POST"]
    urls = {next(iter(value.values()))["uri"] for value in posted}
    assert urls == {f"{azurite_service.blob_url}/{incoming}/{name}" for name in BATCH_OFFERED}
    ledger = outputs(blob_service, containers["ledger"])
    recorded = ledger_names(blob_service, azurite_service, incoming, BATCH_OFFERED)
    # One record per version, the open-jobs marker of its job for track_batch_jobs, and what
    # the dispatches learnt of the endpoint (handlers/batch_endpoint.py).
    records = set(recorded.values())
    markers = {batch_index.marker_name(name) for name in records}
    assert set(ledger) == records | markers | {batch_endpoint.FACTS}

    # The same commands again: every output blob is byte-for-byte untouched.
    again = ops("backfill", "--container", images)
    assert again.code == 0, again.out + again.err
    assert again.counts() == counts(0, len(IMAGES) + 1, 1, 0)
    batch_again = ops("backfill", "--container", incoming)
    assert batch_again.code == 0
    assert batch_again.counts() == counts(0, len(BATCH_OFFERED), 0, 0)
    assert outputs(blob_service, containers["thumbnails"]) == thumbs
    assert outputs(blob_service, containers["ledger"]) == ledger
    assert len([r for r in jobs.requests if r.method == "POST"]) == len(BATCH_OFFERED)

    # A dry run now finds every batch version in the ledger, through the handlers' own check.
    batch_dry = ops("backfill", "--container", incoming, "--dry-run")
    assert batch_dry.code == 0, batch_dry.err
    done_lines = {line for line in batch_dry.out.splitlines() if line.startswith("already")}
    assert done_lines == {
        f"already done (ledger {containers['ledger']}/{record}: dispatched): "
        f"dispatch_batch_job {incoming}/{name}"
        for name, record in recorded.items()
    }
    assert f"would process 0, already done {len(BATCH_OFFERED)}, would fail 0" in batch_dry.out


@pytest.mark.azurite
def test_dry_run_lists_exactly_what_would_happen_and_writes_nothing(
    ops: Ops,
    blob_service: BlobServiceClient,
    containers: dict[str, str],
    upload_event: Callable[..., dict[str, Any]],
    state_dir: Path,
) -> None:
    images, incoming = containers["images"], containers["incoming"]
    fill_images(blob_service, containers)
    made_from = thumbnail_beforehand(upload_event, containers)["data"]["eTag"]
    fill_batch(blob_service, containers)
    before = outputs(blob_service, containers["thumbnails"])

    listed = ops("backfill", "--container", images, "--dry-run")
    assert listed.code == 0, listed.err
    lines = {line for line in listed.out.splitlines() if "create_thumbnail" in line}
    assert lines == {
        *(
            f"would process (content not checked): create_thumbnail {images}/{name}"
            for name in IMAGES
        ),
        f"would process (content not checked): create_thumbnail {images}/{NOT_AN_IMAGE}",
        f"already done (thumbnail {containers['thumbnails']}/{images}/{ALREADY_THUMBNAILED}): "
        f"create_thumbnail {images}/{ALREADY_THUMBNAILED}",
    }
    # The corrupt one fails only when decoded: the dry run says it did not look.
    assert (
        "would process 7, already done 1, would fail 0 + not checked, would stay to do 0; "
        "nothing was written" in listed.out
    )
    assert "not checked: the content of 7 blobs" in listed.out

    photos = ops("backfill", "--container", images, "--prefix", "photos/", "--dry-run")
    assert [line for line in photos.out.splitlines() if "create_thumbnail" in line] == [
        f"would process (content not checked): create_thumbnail {images}/photos/a.jpg",
        f"would process (content not checked): create_thumbnail {images}/photos/b.png",
    ]

    batch = ops("backfill", "--container", incoming, "--dry-run")
    assert batch.code == 0
    offered = sorted(
        line.rsplit(" ", 1)[1]
        for line in batch.out.splitlines()
        if line.startswith("would") and "dispatch_batch_job" in line
    )
    assert offered == sorted(f"{incoming}/{name}" for name in BATCH_OFFERED)

    assert outputs(blob_service, containers["thumbnails"]) == before
    assert outputs(blob_service, containers["ledger"]) == {}
    assert not state_dir.exists() or list(state_dir.iterdir()) == []

    # A newer version of a thumbnailed image: the thumbnail would be made again.
    put(blob_service, images, ALREADY_THUMBNAILED, image("PNG"), "image/jpeg")
    changed = ops("backfill", "--container", images, "--prefix", ALREADY_THUMBNAILED, "--dry-run")
    assert (
        "would process (content not checked; replaces thumbnail made from "
        f"{made_from.strip(chr(34))}): "
        f"create_thumbnail {images}/{ALREADY_THUMBNAILED}"
    ) in changed.out

    # Without BATCH_ENDPOINT_URI the batch handler itself only logs the job it would post:
    # not a final outcome (issue 16), so a real backfill keeps them to do, exits 2 and
    # records no ledger.
    handler_dry = ops("backfill", "--container", incoming)
    assert handler_dry.code == 2
    assert handler_dry.counts() == counts(0, 0, 0, 0)
    assert f"not final (depend on a setting): {len(BATCH_OFFERED)}" in handler_dry.out
    assert outputs(blob_service, containers["ledger"]) == {}


@pytest.mark.azurite
@pytest.mark.parametrize("concurrency", [1, 3])
def test_an_interrupted_backfill_resumes_where_it_stopped(
    ops: Ops,
    blob_service: BlobServiceClient,
    containers: dict[str, str],
    state_dir: Path,
    concurrency: int,
) -> None:
    images = containers["images"]
    names = [f"batch/{index:02d}.png" for index in range(10)]
    for name in names:
        put(blob_service, images, name, image("PNG"), "image/png")
    # Small listing pages, so the checkpoint has to move across pages.
    argv = ("backfill", "--container", images, "--page-size", "3")
    argv += ("--concurrency", str(concurrency))

    interrupted = Recording(interrupt_after=4)
    first = ops(*argv, handle=interrupted)
    assert first.code == 130, first.out + first.err
    assert "interrupted: progress saved" in first.out
    assert first.counts() == counts(4, 0, 0, 0)
    assert len(list(state_dir.glob("backfill-*.json"))) == 1
    done_first = {f"{images}/{name}" for name in interrupted.blobs}
    thumbs = outputs(blob_service, containers["thumbnails"])
    assert set(thumbs) == done_first

    # Interrupted once more, then left to finish.
    again = Recording(interrupt_after=3)
    second = ops(*argv, handle=again)
    assert second.code == 130, second.out + second.err
    assert second.counts() == counts(3, 0, 0, 0)
    resumed = Recording()
    third = ops(*argv, handle=resumed)
    assert third.code == 0, third.out + third.err
    assert third.counts() == counts(3, 0, 0, 0)
    # Nothing handled twice, nothing left out.
    assert sorted([*interrupted.blobs, *again.blobs, *resumed.blobs]) == names
    after = outputs(blob_service, containers["thumbnails"])
    assert set(after) == {f"{images}/{name}" for name in names}
    assert {name: after[name] for name in done_first} == thumbs
    assert list(state_dir.glob("backfill-*.json")) == []  # cleared once complete


class HoldPage:
    """A ``handle`` whose calls for the ``held`` blobs wait until ``others`` other blobs are
    done and then raise KeyboardInterrupt, as does every call after them: the finished work
    then lies on later listing pages while the first page is unfinished."""

    def __init__(self, held: set[str], others: int) -> None:
        self.held = held
        self.others = others
        self.done: list[str] = []
        self.interrupted = False
        self._changed = threading.Condition()

    def __call__(self, function: str, raw: object, ctx: AppContext | None = None) -> Outcome:
        assert isinstance(raw, dict)
        blob = raw["subject"].split("/blobs/", 1)[1]
        with self._changed:
            if blob in self.held:
                assert self._changed.wait_for(lambda: len(self.done) >= self.others, timeout=20)
                self.interrupted = True
            if self.interrupted:
                raise KeyboardInterrupt
        outcome = pipeline.handle(function, raw, ctx)
        with self._changed:
            self.done.append(blob)
            self._changed.notify_all()
        return outcome


@pytest.mark.azurite
def test_a_resumed_run_keeps_what_later_pages_finished(
    ops: Ops, blob_service: BlobServiceClient, containers: dict[str, str]
) -> None:
    images = containers["images"]
    names = [f"n{index:02d}.png" for index in range(12)]
    for name in names:
        put(blob_service, images, name, image("PNG"), "image/png")
    argv = ("backfill", "--container", images, "--page-size", "3")

    # Page 1 (n00-n02) hangs while the fourth worker finishes blobs of pages 2 and 3.
    hold = HoldPage(set(names[:3]), others=4)
    first = ops(*argv, "--concurrency", "4", handle=hold)
    assert first.code == 130, first.out + first.err
    finished = set(hold.done)
    assert len(finished) >= 4 and not finished & set(names[:3])
    # Interrupted again while only page 1 has been listed.
    second = ops(*argv, "--concurrency", "1", handle=Recording(interrupt_after=0))
    assert second.code == 130
    resumed = Recording()
    third = ops(*argv, handle=resumed)
    assert third.code == 0, third.out + third.err
    assert sorted(resumed.blobs) == sorted(set(names) - finished)
    assert third.counts() == counts(len(names) - len(finished), 0, 0, 0)


@pytest.mark.azurite
@pytest.mark.http
@pytest.mark.slow
def test_transient_failures_exit_1_and_the_next_run_retries_just_those(
    ops: Ops,
    blob_service: BlobServiceClient,
    containers: dict[str, str],
    identity: ManagedIdentityEndpoint,
    jobs: JobsEndpoint,
    state_dir: Path,
) -> None:
    incoming = containers["incoming"]
    fill_batch(blob_service, containers)
    # Nothing listens on this port: every job request fails to connect (transient).
    batch_environment(identity, f"http://127.0.0.1:{azurite.free_port()}/jobs")
    failing = ops("backfill", "--container", incoming, "--concurrency", "3")
    assert failing.code == 1, failing.out + failing.err
    assert failing.counts() == counts(0, 0, 0, len(BATCH_OFFERED))
    assert "DispatchUnavailableError" in failing.out
    (checkpoint,) = state_dir.glob("backfill-*.json")
    saved = json.loads(checkpoint.read_text())
    assert sorted(saved["retry"]) == sorted(BATCH_OFFERED) and saved["listingComplete"]

    batch_environment(identity, jobs)
    retry = Recording()
    fixed = ops("backfill", "--container", incoming, handle=retry)
    assert fixed.code == 0, fixed.out + fixed.err
    assert sorted(retry.blobs) == sorted(BATCH_OFFERED)
    assert fixed.counts() == counts(len(BATCH_OFFERED), 0, 0, 0)
    assert len(jobs.jobs) == len(BATCH_OFFERED)
    assert not checkpoint.exists()


@pytest.mark.azurite
@pytest.mark.http
@pytest.mark.slow
def test_one_blob_and_one_failure_are_counted_in_the_singular(
    ops: Ops,
    blob_service: BlobServiceClient,
    containers: dict[str, str],
    identity: ManagedIdentityEndpoint,
) -> None:
    put(blob_service, containers["incoming"], BATCH_OFFERED[0], b"age,sex\n63,1\n", "text/csv")
    batch_environment(identity, f"http://127.0.0.1:{azurite.free_port()}/jobs")  # nobody there
    dry = ops("backfill", "--container", containers["incoming"], "--dry-run")
    assert dry.code == 0, dry.out + dry.err
    assert "dry run summary (1 blob listed): would process 1," in dry.out, dry.out
    failing = ops("backfill", "--container", containers["incoming"])
    assert failing.code == 1, failing.out + failing.err
    assert "backfill summary (1 blob listed):\n" in failing.out, failing.out
    assert "\n1 transient failure: run the same command again" in failing.out, failing.out


@pytest.mark.azurite
def test_usage_errors_exit_2(ops: Ops, containers: dict[str, str]) -> None:
    nobody = ops("backfill", "--container", "nobody-watches-this")
    assert nobody.code == 2 and "no subscription" in nobody.err
    output = ops("backfill", "--container", containers["thumbnails"])
    assert output.code == 2
    unknown = ops("replay-deadletters", "--subscription", "no-such")
    assert unknown.code == 2 and "no subscription named" in unknown.err
    bad_time = ops("replay-deadletters", "--since", "yesterday")
    assert bad_time.code == 2 and "--since" in bad_time.err
    os.environ.pop("DATA_STORAGE")
    unset = ops("backfill", "--container", containers["images"])
    assert unset.code == 2 and "DATA_STORAGE" in unset.err


# --- dead-letter replay -------------------------------------------------------------------


DEADLETTER_FIELDS = {
    "deadLetterReason": "MaxDeliveryAttemptsExceeded",
    "deliveryAttempts": 10,
    "lastDeliveryOutcome": "TimedOut",
    "lastHttpStatusCode": 408,
    "publishTime": "2025-03-01T09:12:00.1234567Z",
    "lastDeliveryAttemptTime": "2025-03-01T09:40:00.7654321Z",
}


def dead_letter(
    service: BlobServiceClient, container: str, path: str, events: list[dict[str, Any]] | bytes
) -> str:
    """Write a dead-letter blob as Event Grid does; return its name."""
    name = f"{path}/{uuid.uuid4()}.json"
    data = (
        events
        if isinstance(events, bytes)
        else json.dumps([{**event, **DEADLETTER_FIELDS} for event in events]).encode()
    )
    client = service.get_container_client(container)
    if not client.exists():
        client.create_container()
    client.upload_blob(name, data)
    return name


@pytest.mark.azurite
@pytest.mark.http
@pytest.mark.slow
def test_replay_handles_and_archives_and_leaves_what_still_fails(
    ops: Ops,
    blob_service: BlobServiceClient,
    containers: dict[str, str],
    upload_event: Callable[..., dict[str, Any]],
    identity: ManagedIdentityEndpoint,
    jobs: JobsEndpoint,
) -> None:
    images, dead = containers["images"], containers["deadletter"]
    duplicate = thumbnail_beforehand(upload_event, containers)
    a = upload_event(images, "a.jpg", image("JPEG"), content_type="image/jpeg")
    b = upload_event(images, "b.png", image("PNG", "RGBA"), content_type="image/png")
    fake = upload_event(images, NOT_AN_IMAGE, CORRUPT_JPEG, content_type="image/jpeg")
    never = upload_event(images, "archived-long-ago.png", image("PNG"), content_type="image/png")
    csv = upload_event(
        containers["incoming"], "incoming/x.csv", b"a,b\n", build.CLOUD_EVENT_SCHEMA, "text/csv"
    )

    two = dead_letter(blob_service, dead, "THUMBNAILS/2025/3/1/9", [a, b])
    mixed = dead_letter(blob_service, dead, "THUMBNAILS/2025/3/2/14", [duplicate, fake])
    batch = dead_letter(blob_service, dead, "BATCH/2025/3/2/15", [csv])
    broken = dead_letter(blob_service, dead, "THUMBNAILS/2025/3/2/16", b"[{not json")
    old = dead_letter(blob_service, dead, "archive/THUMBNAILS/2025/1/1/0", [never])
    thumbs_before = outputs(blob_service, containers["thumbnails"])
    dead_before = outputs(blob_service, dead)

    batch_environment(identity, f"http://127.0.0.1:{azurite.free_port()}/jobs")
    first = ops("replay-deadletters")
    assert first.code == 1, first.out + first.err
    assert "archived 2, left in place 1, malformed 1" in first.out
    assert first.counts() == counts(2, 1, 1, 1)
    after = outputs(blob_service, dead)
    assert set(after) == {
        batch,
        broken,
        old,
        f"archive/{two}",
        f"archive/{mixed}",
    }
    for name in (batch, broken, old):  # left exactly as they were
        assert after[name] == dead_before[name]
    for name in (two, mixed):
        archived = blob_service.get_blob_client(dead, f"archive/{name}")
        assert json.loads(archived.download_blob().readall())[0]["deadLetterReason"]
    thumbs = outputs(blob_service, containers["thumbnails"])
    assert set(thumbs) - set(thumbs_before) == {f"{images}/a.jpg", f"{images}/b.png"}
    assert (
        thumbs[f"{images}/{ALREADY_THUMBNAILED}"]
        == thumbs_before[f"{images}/{ALREADY_THUMBNAILED}"]
    )

    # The endpoint is back: the batch dead letter goes through; the malformed one stays.
    batch_environment(identity, jobs)
    second = ops("replay-deadletters")
    assert second.code == 3, second.out + second.err
    assert "archived 1, left in place 0, malformed 1" in second.out
    assert second.counts() == counts(1, 0, 0, 0)
    (job,) = jobs.jobs.values()
    (value,) = job["properties"]["inputData"].values()
    assert value["uri"] == csv["data"]["url"]
    assert set(outputs(blob_service, dead)) == {
        broken,
        old,
        f"archive/{two}",
        f"archive/{mixed}",
        f"archive/{batch}",
    }
    assert outputs(blob_service, containers["thumbnails"]) == thumbs


@pytest.mark.azurite
def test_replay_dry_run_and_filters_write_nothing(
    ops: Ops,
    blob_service: BlobServiceClient,
    containers: dict[str, str],
    upload_event: Callable[..., dict[str, Any]],
) -> None:
    images, dead = containers["images"], containers["deadletter"]
    a = upload_event(images, "a.jpg", image("JPEG"), content_type="image/jpeg")
    csv = upload_event(
        containers["incoming"], "incoming/x.csv", b"a,b\n", build.CLOUD_EVENT_SCHEMA, "text/csv"
    )
    early = dead_letter(blob_service, dead, "THUMBNAILS/2025/3/1/9", [a])
    late = dead_letter(blob_service, dead, "THUMBNAILS/2025/3/2/14", [a])
    batch = dead_letter(blob_service, dead, "BATCH/2025/3/2/15", [csv])
    before = outputs(blob_service, dead)
    # An endpoint is configured (a dry run posts nothing): without one the batch letter
    # would stay in place (tests/test_ops_outcomes.py).
    os.environ["BATCH_ENDPOINT_URI"] = f"http://127.0.0.1:{azurite.free_port()}/jobs"

    def would(result: Result) -> set[str]:
        assert result.code == 0, result.out + result.err
        return {
            line.split(": ")[0].split(f"{dead}/", 1)[1]
            for line in result.out.splitlines()
            if line.startswith("would replay")
        }

    assert would(ops("replay-deadletters", "--dry-run")) == {early, late, batch}
    assert would(ops("replay-deadletters", "--dry-run", "--subscription", "thumbnails")) == {
        early,
        late,
    }
    # The 14:00 hour reaches past 14:30; the 9:00 hour of the day before does not.
    since = ops("replay-deadletters", "--dry-run", "--since", "2025-03-02T14:30:00Z")
    assert would(since) == {late, batch}
    assert would(ops("replay-deadletters", "--dry-run", "--since", "2025-03-02")) == {late, batch}
    assert outputs(blob_service, dead) == before
    assert outputs(blob_service, containers["thumbnails"]) == {}


# --- as a user runs it --------------------------------------------------------------------


@pytest.fixture
def command_line(routes_file: Path, state_dir: Path) -> Callable[..., list[str]]:
    """``python -m tools.ops <args>`` on this test's routes and state directory."""

    def line(*args: str) -> list[str]:
        return [
            *(sys.executable, "-m", "tools.ops", *args),
            *("--routes", str(routes_file), "--state-dir", str(state_dir)),
        ]

    return line


def run_command(command: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command,
        check=False,
        cwd=ROOT,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.azurite
@pytest.mark.usefixtures("app_env")
def test_the_module_runs_as_a_command(
    blob_service: BlobServiceClient,
    containers: dict[str, str],
    command_line: Callable[..., list[str]],
) -> None:
    images = containers["images"]
    put(blob_service, images, "one.png", image("PNG"), "image/png")
    put(blob_service, images, "two.txt", b"text", "text/plain")
    result = run_command(command_line("backfill", "--container", images))
    assert result.returncode == 0, result.stdout + result.stderr
    assert Result(0, result.stdout, "").counts() == counts(1, 0, 0, 0)
    assert "backfill summary (2 blobs listed)" in result.stdout
    assert "\r" not in result.stderr  # not a terminal: no redrawn progress line
    assert set(outputs(blob_service, containers["thumbnails"])) == {f"{images}/one.png"}

    usage = run_command([sys.executable, "-m", "tools.ops", "replay-deadletters", "--since", "x"])
    assert usage.returncode == 2 and "--since" in usage.stderr


@pytest.mark.azurite
@pytest.mark.slow
@pytest.mark.usefixtures("app_env")
def test_ctrl_c_stops_the_command_and_the_next_run_resumes(
    blob_service: BlobServiceClient,
    containers: dict[str, str],
    command_line: Callable[..., list[str]],
    state_dir: Path,
) -> None:
    """A real SIGINT to a real process, sent as soon as its first checkpoint is on disk."""
    images = containers["images"]
    total = 60
    data = image("JPEG")
    for index in range(total):
        put(blob_service, images, f"p{index:03d}.jpg", data, "image/jpeg")
    backfill = ("backfill", "--container", images, "--concurrency", "1", "--page-size", "10")
    command = command_line(*backfill)
    process = subprocess.Popen(
        command, cwd=ROOT, env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 30
        while not list(state_dir.glob("backfill-*.json")):
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "no checkpoint within 30 s"
            time.sleep(0.01)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    first = Result(process.returncode, out.decode(), err.decode())
    assert first.code == 130, first.out + first.err
    written_first = first.counts()["processed"]
    assert 0 < written_first < total
    assert len(outputs(blob_service, containers["thumbnails"])) == written_first

    second = run_command(command)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "resuming from" in second.stderr
    assert Result(0, second.stdout, "").counts() == counts(total - written_first, 0, 0, 0)
    assert len(outputs(blob_service, containers["thumbnails"])) == total


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_redraws_one_line_on_a_terminal_and_prints_lines_otherwise() -> None:
    terminal = _Terminal()
    progress = Progress(terminal, "backfill", interval=0)
    progress.update("listed 1")
    progress.update("listed 2")
    progress.write_line("WARNING something happened")
    progress.close()
    text = terminal.getvalue()
    assert text.count("\rbackfill: listed 2") == 2  # drawn, then redrawn under the log line
    assert "\r\x1b[KWARNING something happened\n" in text
    assert text.endswith("\r\x1b[K")

    plain = io.StringIO()
    progress = Progress(plain, "backfill", interval=0)
    progress.update("listed 1")
    progress.write_line("a log line")
    progress.close()
    assert plain.getvalue() == "backfill: listed 1\na log line\n"


def test_each_set_of_arguments_keeps_its_own_checkpoint_file(tmp_path: Path) -> None:
    first_key, second_key = {"prefix": "a/"}, {"prefix": "b/"}
    # Each run leaves a checkpoint (it did not finish), so its numbered file stays taken.
    with state.held(tmp_path, "backfill-c", first_key) as first:
        state.save(first, state.Checkpoint(key=first_key))
    with state.held(tmp_path, "backfill-c", second_key) as second:
        state.save(second, state.Checkpoint(key=second_key))
    # A container whose name extends this one's is told apart, not mistaken for a number.
    with state.held(tmp_path, "backfill-c-1", first_key) as other_container:
        state.save(other_container, state.Checkpoint(key=first_key))
    assert len({first, second, other_container}) == 3
    with state.held(tmp_path, "backfill-c", first_key) as again:
        assert again == first
    assert state.find(tmp_path, "backfill-c", second_key) == second
    assert state.find(tmp_path, "backfill-c", {"prefix": "c/"}) is None

    with state.held(tmp_path, "backfill-c", first_key):
        with (
            pytest.raises(RuntimeError, match="same arguments holds"),
            state.held(tmp_path, "backfill-c", first_key),
        ):
            pass
        with state.held(tmp_path, "backfill-c", second_key):
            pass  # other arguments are not held up
