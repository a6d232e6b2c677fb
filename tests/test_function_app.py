"""What the Functions host sees: the indexed functions, their bindings, both schemas."""

from __future__ import annotations

import inspect
import json
import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest
from azure.functions.eventgrid import EventGridEventInConverter
from azure.functions.meta import Datum
from azure.functions.timer import TimerRequestConverter

import function_app
from handlers.outcomes import Outcome
from tests.support import images as gen
from tests.support.host import functions, invoke, outcome_of
from tools import events as build

ROOT = Path(__file__).resolve().parent.parent


EVENT_GRID_FUNCTIONS = ("create_thumbnail", "dispatch_batch_job")


def test_two_event_grid_functions_and_one_timer_are_indexed() -> None:
    found = functions()
    assert sorted(found) == ["create_thumbnail", "dispatch_batch_job", "track_batch_jobs"]
    for name, fn in found.items():
        spec = json.loads(fn.get_function_json())
        assert spec["scriptFile"] == "function_app.py"
        assert fn.get_user_function().__name__ == name
        if name in EVENT_GRID_FUNCTIONS:
            assert spec["bindings"] == [
                {"direction": "IN", "type": "eventGridTrigger", "name": "event"}
            ]
    timer = json.loads(found["track_batch_jobs"].get_function_json())
    assert timer["bindings"] == [
        {
            "direction": "IN",
            "type": "timerTrigger",
            "name": "timer",
            "schedule": "%BATCH_TRACK_SCHEDULE%",
            "runOnStartup": False,
        }
    ]


def test_trigger_annotations_pass_the_workers_type_check() -> None:
    """The worker refuses a trigger whose annotation its converter does not accept."""
    for name in EVENT_GRID_FUNCTIONS:
        user_function = functions()[name].get_user_function()
        annotation = inspect.signature(user_function).parameters["event"].annotation
        assert EventGridEventInConverter.check_input_type_annotation(annotation)
    timer = functions()["track_batch_jobs"].get_user_function()
    annotation = inspect.signature(timer).parameters["timer"].annotation
    assert TimerRequestConverter.check_input_type_annotation(annotation)


@pytest.mark.parametrize("schema", [build.EVENT_GRID_SCHEMA, build.CLOUD_EVENT_SCHEMA])
def test_event_to_dict_restores_the_delivered_json(schema: str) -> None:
    payload = build.blob_created(
        account="acct",
        service_url="https://acct.blob.core.windows.net",
        container="images",
        blob_name="a b/c.jpg",
        etag="0x1",
        schema=schema,
    )
    decoded = EventGridEventInConverter.decode(
        Datum(json.dumps(payload), "json"), trigger_metadata={}
    )
    expected_type = func.CloudEvent if schema == build.CLOUD_EVENT_SCHEMA else func.EventGridEvent
    assert isinstance(decoded, expected_type)
    restored = function_app.event_to_dict(decoded)
    for key in ("id", "subject", "data"):
        assert restored[key] == payload[key]
    type_key = "type" if schema == build.CLOUD_EVENT_SCHEMA else "eventType"
    assert restored[type_key] == payload[type_key]


def test_function_app_only_wires() -> None:
    """handlers/ never imports azure.functions: the work is testable without a host."""
    pattern = re.compile(
        r"^\s*(import azure\.functions|from azure\.functions|from azure import functions)", re.M
    )
    for path in (ROOT / "handlers").glob("*.py"):
        assert not pattern.search(path.read_text()), path.name
    assert pattern.search((ROOT / "function_app.py").read_text())


def test_host_json() -> None:
    host = json.loads((ROOT / "host.json").read_text())
    assert host["version"] == "2.0"
    assert host["extensionBundle"] == {
        "id": "Microsoft.Azure.Functions.ExtensionBundle",
        "version": "[4.*, 5.0.0)",
    }
    assert host["functionTimeout"] == "00:05:00"
    assert host["logging"]["logLevel"]["Function"] == "Information"


def test_requirements_are_pinned_and_deploy_only() -> None:
    lines = [
        line.strip()
        for line in (ROOT / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert all("==" in line for line in lines), lines
    names = {line.split("==")[0].lower() for line in lines}
    assert "azure-functions" in names
    assert not names & {"azure-functions-worker", "pytest", "mypy", "ruff", "checkov"}


def test_every_json_file_parses() -> None:
    """host.json, the settings sample, package files and infra JSON must stay valid JSON."""
    skip = {".venv", ".venv-checkov", "node_modules", ".git", ".local"}
    paths = [p for p in ROOT.rglob("*.json") if not skip & set(p.relative_to(ROOT).parts)]
    assert len(paths) >= 4
    for path in paths:
        json.loads(path.read_text(encoding="utf-8"))
    json.loads((ROOT / "local.settings.json.sample").read_text())


def test_claim_timeout_outlives_the_function_timeout() -> None:
    """A batch claim is stale only once the delivery holding it must have been stopped."""
    from datetime import timedelta

    from handlers.batch_ledger import CLAIM_TIMEOUT, ClaimWait
    from handlers.context import AppContext

    hours, minutes, seconds = json.loads((ROOT / "host.json").read_text())["functionTimeout"].split(
        ":"
    )
    timeout = timedelta(hours=int(hours), minutes=int(minutes), seconds=int(seconds))
    assert timeout < CLAIM_TIMEOUT
    # What every delivery uses unless a caller passes its own ClaimWait.
    assert ClaimWait().stale_after == CLAIM_TIMEOUT
    assert (
        AppContext.from_env({"DATA_STORAGE": "UseDevelopmentStorage=true"}).claim_wait
        == ClaimWait()
    )


@pytest.mark.azurite
def test_each_invocation_logs_one_outcome_line_in_the_documented_format(
    app_env: dict[str, str],
    containers: dict[str, str],
    upload_event: Callable[..., dict[str, Any]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The one place the log line's format is pinned (docs/architecture.md: `<function> event=<id>
    blob=<container>/<name> outcome=<status> <detail>`); the other suites read the returned
    Outcome. The trigger itself logs the same line as the handle() the tests call."""
    caplog.set_level(logging.INFO, logger="handlers.pipeline")
    images = containers["images"]
    photo = upload_event(images, "day 1/photo.jpg", gen.encode(gen.halves((64, 48)), "JPEG"))
    broken = upload_event(images, "broken.jpg", b"\xff\xd8\xff\xe0 not an image")
    notes = upload_event(images, "notes.txt", b"not an image", content_type="text/plain")

    def lines() -> list[tuple[int, str]]:
        found = [(r.levelno, r.getMessage()) for r in caplog.records]
        caplog.clear()
        return found

    def expected(
        payload: dict[str, Any], outcome: Outcome, function: str = "create_thumbnail"
    ) -> str:
        container, name = payload["subject"].split("/containers/", 1)[1].split("/blobs/", 1)
        where = f"{function} event={payload['id']} blob={container}/{name}"
        if outcome.status in ("failed", "ignored"):
            return f"{where} outcome={outcome.status} reason={outcome.detail}"
        return f"{where} outcome={outcome.status} {outcome.detail}"

    written = outcome_of("create_thumbnail", photo)
    assert written.status == "written"
    assert lines() == [(logging.INFO, expected(photo, written))]

    invoke("create_thumbnail", photo)  # the decorated function, as the host calls it
    through_trigger = lines()
    duplicate = outcome_of("create_thumbnail", photo)
    assert duplicate.status == "duplicate"
    assert through_trigger == lines() == [(logging.INFO, expected(photo, duplicate))]

    failed = outcome_of("create_thumbnail", broken)
    assert failed.status == "failed"
    assert lines() == [(logging.ERROR, expected(broken, failed))]

    invoke("create_thumbnail", notes)  # no image at all: a refusal, logged at INFO
    through_trigger = lines()
    ignored = outcome_of("create_thumbnail", notes)
    assert ignored.status == "ignored"
    assert through_trigger == lines() == [(logging.INFO, expected(notes, ignored))]

    table = upload_event(containers["incoming"], "in/day 1.csv", b"a\n1\n")
    invoke("dispatch_batch_job", table)
    through_trigger = lines()
    dry_run = outcome_of("dispatch_batch_job", table)
    assert dry_run.status == "dry-run"
    assert (
        through_trigger
        == lines()
        == [(logging.INFO, expected(table, dry_run, "dispatch_batch_job"))]
    )
