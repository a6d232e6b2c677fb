"""Folder scope: one batch job per folder, started by its marker blob, against Azurite and the
jobs stand-in; and the request body checked against the SDK's wire form."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from handlers.batch_ledger import ledger_prefix
from handlers.context import reset_context
from handlers.errors import ConfigurationError
from handlers.pipeline import handle
from tests.support.batch import Batch
from tests.support.faults import deliver_at_once
from tests.support.host import invoke, outcome_of
from tools.routes import load_routes

pytestmark = [pytest.mark.azurite, pytest.mark.http]

SDK_FIXTURE = Path(__file__).parent / "data" / "batch-invoke-sdk.json"
OUTPUT = "azureml://datastores/workspaceblobstore/paths/scores/{path}/{job}"


@pytest.fixture
def folders(batch: Batch) -> Batch:
    """The batch fixture in folder scope, with outputs configured."""
    os.environ.update({"BATCH_JOB_SCOPE": "folder", "BATCH_OUTPUT_URI": OUTPUT})
    reset_context()
    return batch


def drop(batch: Batch, folder: str, files: int) -> list[dict[str, Any]]:
    """Upload ``files`` files into ``folder``, then its marker; the events, marker last."""
    events = [batch.upload(f"{folder}/part-{n:03}.csv") for n in range(files)]
    return [*events, batch.upload(f"{folder}/_SUCCESS")]


def test_a_folder_drop_starts_one_job_over_the_folder(folders: Batch) -> None:
    *files, marker = drop(folders, "incoming/day1", 10)
    outcomes = [outcome_of("dispatch_batch_job", event) for event in [*files, marker]]
    assert [o.status for o in outcomes] == ["ignored"] * 10 + ["dispatched"]
    assert "a file starts nothing" in outcomes[0].detail
    assert outcomes[0].setting == "BATCH_JOB_SCOPE"
    (request,) = folders.jobs.posts()
    (job,) = folders.jobs.jobs
    folder_url = marker["data"]["url"].removesuffix("_SUCCESS")
    assert folder_url.endswith("/incoming/day1/")
    assert request.json()["properties"] == {
        "inputData": {"input_data": {"jobInputType": "UriFolder", "uri": folder_url}},
        "outputData": {
            "score": {
                "jobOutputType": "UriFolder",
                "uri": f"azureml://datastores/workspaceblobstore/paths/scores/incoming/day1/{job}",
            }
        },
        "name": job,
    }
    assert job.startswith("job-day1-")
    record = folders.record(marker)
    assert record["status"] == "dispatched" and record["scope"] == "folder"
    assert record["input"] == folder_url and record["path"] == "incoming/day1/"
    assert record["output"].endswith(f"/incoming/day1/{job}")
    assert f"output {record['output']}" in outcomes[-1].detail
    # Files leave nothing in the ledger: only the marker's version has a record.
    records = [
        blob.name
        for blob in folders.ledger_client().list_blobs(name_starts_with=f"{folders.incoming}/")
    ]
    (only,) = records
    assert only.startswith(ledger_prefix(folders.incoming, "incoming/day1/_SUCCESS"))


def test_duplicate_and_concurrent_marker_deliveries_start_one_job(folders: Batch) -> None:
    *_, marker = drop(folders, "incoming/busy", 3)
    outcomes = deliver_at_once([("dispatch_batch_job", marker)] * 6, outcome_of)
    outcomes += [handle("dispatch_batch_job", {**marker, "id": f"again-{n}"}) for n in range(3)]
    assert Counter(o.status for o in outcomes) == {"dispatched": 1, "duplicate": 8}
    assert len(folders.jobs.jobs) == 1 and len(folders.jobs.posts()) == 1


def test_files_without_a_marker_start_nothing(folders: Batch) -> None:
    for n in range(5):
        invoke("dispatch_batch_job", folders.upload(f"incoming/unfinished/part-{n}.csv"))
    assert folders.jobs.requests == []
    ledger = folders.ledger_client()
    assert not ledger.exists() or not list(ledger.list_blobs(name_starts_with=folders.incoming))


def test_writing_the_marker_again_starts_a_second_job(folders: Batch) -> None:
    *_, first = drop(folders, "incoming/rerun", 2)
    invoke("dispatch_batch_job", first)
    invoke("dispatch_batch_job", first)  # a redelivery of the same version
    second = folders.upload("incoming/rerun/_SUCCESS")
    assert second["data"]["eTag"] != first["data"]["eTag"]
    invoke("dispatch_batch_job", second)
    assert len(folders.jobs.jobs) == 2
    names = {folders.record(first)["jobName"], folders.record(second)["jobName"]}
    assert names == set(folders.jobs.jobs)
    assert folders.jobs.job_uris() == Counter({second["data"]["url"].removesuffix("_SUCCESS"): 2})


def test_a_marker_in_another_name_starts_nothing(folders: Batch) -> None:
    os.environ["BATCH_FOLDER_MARKER"] = "_DONE"
    reset_context()
    outcome = handle("dispatch_batch_job", folders.upload("incoming/other/_SUCCESS"))
    assert outcome.status == "ignored" and "_DONE" in outcome.detail
    assert folders.jobs.requests == []
    done = folders.upload("incoming/other/_DONE")
    assert handle("dispatch_batch_job", done).status == "dispatched"


def test_uri_folder_in_file_scope_is_refused_before_anything_is_sent(batch: Batch) -> None:
    os.environ["BATCH_INPUT_TYPE"] = "UriFolder"
    reset_context()
    event = batch.upload("incoming/day2/a.csv")
    with pytest.raises(ConfigurationError, match="BATCH_JOB_SCOPE=folder") as raised:
        invoke("dispatch_batch_job", event)
    assert raised.value.setting == "BATCH_INPUT_TYPE"
    assert batch.jobs.requests == []
    assert batch.record(event) is None


def test_the_body_is_the_sdks_wire_form(folders: Batch) -> None:
    """Every key we send sits where azure-ai-ml 1.35.2's invoke() puts it (the fixture was
    read from its source), with the values the SDK would send there."""
    fixture = json.loads(SDK_FIXTURE.read_text(encoding="utf-8"))
    *_, marker = drop(folders, "incoming/wire", 1)
    invoke("dispatch_batch_job", marker)
    (request,) = folders.jobs.posts()
    assert _shape(request.json()) <= _shape(fixture["body"])
    for required in ("inputData", "outputData", "name"):
        assert required in request.json()["properties"]
    sent = {name.lower() for name in request.headers}
    assert {name.lower() for name in fixture["headers"]} - {"azureml-model-deployment"} <= sent
    record = folders.record(marker)
    assert request.headers["repeatability_request-id"] == record["requestId"]


def test_the_routes_carry_the_marker_filter_in_folder_scope() -> None:
    file_scope = load_routes()
    folder_scope = load_routes(folder_marker="_SUCCESS")
    assert file_scope.by_name("batch").subject_ends_with == ""
    assert folder_scope.by_name("batch").subject_ends_with == "/_SUCCESS"
    assert folder_scope.by_name("thumbnails") == file_scope.by_name("thumbnails")
    subject = "/blobServices/default/containers/batch-input/blobs/incoming/day1/"
    event = {"eventType": "Microsoft.Storage.BlobCreated", "data": {"api": "PutBlob"}}
    assert folder_scope.by_name("batch").matches({**event, "subject": subject + "_SUCCESS"})
    assert not folder_scope.by_name("batch").matches({**event, "subject": subject + "a.csv"})
    assert file_scope.by_name("batch").matches({**event, "subject": subject + "a.csv"})


def _shape(value: Any, path: str = "") -> set[str]:
    """Every key path in ``value``, with the input and output names (a caller's) as ``*``."""
    if not isinstance(value, dict):
        return {f"{path}={type(value).__name__}"}
    paths = set()
    for key, item in value.items():
        name = "*" if path.endswith((".inputData", ".outputData")) else key
        paths |= _shape(item, f"{path}.{name}")
    return paths
