"""Job names we choose, and what they buy: an ``unknown`` dispatch (the POST's answer was
lost) settled by a GET of the name on the next tracking run, both ways; and an endpoint that
ignores our names, where the old rule (a person decides) stays."""

from __future__ import annotations

import logging
import os

import pytest

from handlers import batch_endpoint
from handlers.batch_jobs import job_name_for
from handlers.context import reset_context
from tests.support.batch import Batch
from tests.support.host import invoke_timer, outcome_of
from tools.standins import Scripted

pytestmark = [pytest.mark.azurite, pytest.mark.http]


def lose_the_answer(batch: Batch, *, created: bool) -> None:
    """The next POST's answer comes too late for the client: the endpoint has created the
    job (``created``) or not."""
    os.environ["BATCH_TIMEOUT_SECONDS"] = "0.5"
    reset_context()
    batch.jobs.script.append(Scripted(200, {}, delay=1.5, then_normal=created))


def test_names_are_stable_per_version_and_valid_for_azure_ml() -> None:
    name = job_name_for(
        "batch-input", "in/Heart Disease #3.CSV", "0x8DC", "in/Heart Disease #3.CSV"
    )
    assert name == job_name_for(
        "batch-input", "in/Heart Disease #3.CSV", "0x8DC", "x/heart disease #3.csv"
    )
    assert name.startswith("job-heart-disease-3-csv-")
    assert name != job_name_for("batch-input", "in/Heart Disease #3.CSV", "0x8DD", "in/a")
    again = job_name_for("batch-input", "in/Heart Disease #3.CSV", "0x8DC", "in/a", attempt=2)
    assert again.endswith("-r2")
    long_name = job_name_for("c", "x" * 900, "v", "x" * 900)
    for each in (name, again, long_name, job_name_for("c", "_SUCCESS", "v", "")):
        assert len(each) <= 70
        assert each[0].isalpha() and all(ch.isalnum() or ch in "-_" for ch in each)


def test_an_unknown_dispatch_whose_job_exists_is_settled_by_name(
    batch: Batch, caplog: pytest.LogCaptureFixture
) -> None:
    batch.dispatch("incoming/first.csv")  # the endpoint keeps our names: noted
    lose_the_answer(batch, created=True)
    event = batch.upload("incoming/late.csv")
    assert outcome_of("dispatch_batch_job", event).status == "failed"
    record = batch.record(event)
    assert record["status"] == "unknown"
    caplog.set_level(logging.INFO)

    invoke_timer("track_batch_jobs")
    record = batch.record(event)
    assert record["status"] == "dispatched"
    assert record["jobName"] == record["jobRequested"]
    assert record["jobStatus"] == "Queued" and "resolvedAt" in record
    assert len(batch.jobs.posts()) == 2  # the first file's and the late one's: none again
    assert len(batch.jobs.jobs) == 2
    lines = [r.getMessage() for r in caplog.records if "outcome=resolved" in r.getMessage()]
    assert lines and record["jobName"] in lines[0]
    # From now on it is followed like any other job.
    batch.jobs.set_status(record["jobName"], "Completed")
    invoke_timer("track_batch_jobs")
    assert batch.record(event)["jobStatus"] == "Completed"


def test_an_unknown_dispatch_whose_job_was_never_created_is_posted_again_once(
    batch: Batch, caplog: pytest.LogCaptureFixture
) -> None:
    batch.dispatch("incoming/first.csv")
    lose_the_answer(batch, created=False)
    event = batch.upload("incoming/lost.csv")
    assert outcome_of("dispatch_batch_job", event).status == "failed"
    unknown = batch.record(event)
    assert unknown["status"] == "unknown" and len(batch.jobs.jobs) == 1

    invoke_timer("track_batch_jobs")
    record = batch.record(event)
    assert record["status"] == "dispatched"
    assert record["jobName"] == unknown["jobRequested"]  # the same name: a late first POST
    assert record["requestId"] != unknown["requestId"]  # cannot make a second job
    (entry,) = record["history"]
    assert entry["jobRequested"] == unknown["jobRequested"] and "notFoundAt" in entry
    posts = [r for r in batch.jobs.posts() if "lost" in r.json()["properties"]["name"]]
    assert len(posts) == 2 and len(batch.jobs.jobs) == 2
    assert any("outcome=redispatched" in r.getMessage() for r in caplog.records)
    invoke_timer("track_batch_jobs")  # settled: nothing is posted again
    assert len(batch.jobs.posts()) == 3


def test_a_late_first_post_cannot_make_a_second_job(batch: Batch) -> None:
    """The name is the guard: the endpoint refuses a second job of the same name."""
    batch.dispatch("incoming/first.csv")
    lose_the_answer(batch, created=False)
    event = batch.upload("incoming/twice.csv")
    outcome_of("dispatch_batch_job", event)
    name = batch.record(event)["jobRequested"]
    batch.jobs.add_job(name)  # the first POST landed after all, after the tracker's GET
    batch.jobs.job_script[name] = [Scripted(404, {"error": {"code": "UserError"}})]
    invoke_timer("track_batch_jobs")
    assert len(batch.jobs.jobs) == 2  # the first file's and this one: no duplicate
    record = batch.record(event)
    assert (record["status"], record["jobName"]) == ("dispatched", name)  # the 409 told us


def test_an_endpoint_that_ignores_our_names_keeps_unknowns_for_a_person(
    batch: Batch, caplog: pytest.LogCaptureFixture
) -> None:
    batch.jobs.honour_names = False
    first = batch.upload("incoming/first.csv")
    outcome_of("dispatch_batch_job", first)
    record = batch.record(first)
    assert record["jobName"] != record["jobRequested"]
    assert record["jobName"] in batch.jobs.jobs
    assert any("not " + record["jobRequested"] in r.getMessage() for r in caplog.records)
    facts = batch_endpoint.recall(batch.ledger_client())
    assert facts is not None and not facts.keeps_names(batch.jobs.scoring_uri)
    lose_the_answer(batch, created=True)
    event = batch.upload("incoming/late.csv")
    outcome_of("dispatch_batch_job", event)
    requests_before = len(batch.jobs.requests)
    invoke_timer("track_batch_jobs")
    assert batch.record(event)["status"] == "unknown"
    asked = [r.path for r in batch.jobs.requests[requests_before:] if r.method == "GET"]
    assert f"/jobs/{batch.record(event)['jobRequested']}" not in asked
