"""``python -m tools.ops jobs``: the listing, its filters, --refresh, and --resubmit-failed
exactly once per record even with two operators at once (Azurite, jobs stand-in)."""

from __future__ import annotations

import io
import threading
from dataclasses import dataclass

import pytest

from handlers import batch_index
from tests.support.batch import Batch
from tests.support.host import invoke_timer
from tools.ops import main
from tools.standins import Scripted

pytestmark = [pytest.mark.azurite, pytest.mark.http]


@dataclass
class Result:
    code: int
    out: str
    err: str

    def lines_with(self, text: str) -> list[str]:
        return [line for line in self.out.splitlines() if text in line]

    def lines_starting(self, text: str) -> list[str]:
        return [line for line in self.out.splitlines() if line.startswith(text)]


def ops(*argv: str) -> Result:
    out, err = io.StringIO(), io.StringIO()
    code = main(["jobs", *argv], stdout=out, stderr=err)
    return Result(code, out.getvalue(), err.getvalue())


def test_listing_filters_and_refresh(batch: Batch) -> None:
    where = batch.incoming
    done, failed, running = (
        batch.dispatch_job(f"incoming/{n}.csv") for n in ("done", "failed", "running")
    )
    batch.jobs.set_status(done, "Completed")
    batch.jobs.set_status(failed, "Failed")
    batch.jobs.set_status(running, "Running")

    before = ops()
    assert before.code == 0, before.err
    assert len(before.lines_with("  dispatched (not yet tracked)  job-")) == 3
    assert before.out.splitlines()[-1] == "3 jobs: dispatched (not yet tracked) 3"

    refreshed = ops("--refresh")
    assert refreshed.code == 0, refreshed.err
    assert "asked 3" in refreshed.err
    for job, status, name in ((done, "Completed", "done"), (failed, "Failed", "failed")):
        (line,) = refreshed.lines_with(job)
        assert status in line and line.endswith(f" {where}/incoming/{name}.csv")
    (line,) = refreshed.lines_with(running)
    assert "Running" in line

    only_failed = ops("--status", "failed")
    assert [line.split()[2] for line in only_failed.out.splitlines()[1:-1]] == [failed]
    assert only_failed.out.splitlines()[-1] == "1 job: Failed 1"
    still_open = ops("--open")
    assert [line.split()[2] for line in still_open.out.splitlines()[1:-1]] == [running]
    two = ops("--status", "Completed", "--status", "RUNNING")
    assert {line.split()[2] for line in two.out.splitlines()[1:-1]} == {done, running}
    later = ops("--since", "2999-01-01")
    assert later.code == 0 and later.out.splitlines()[-1] == "0 jobs"
    assert len(ops("--since", "2000-01-01T00:00Z").out.splitlines()) == 1 + 3 + 1


def test_resubmit_failed_starts_one_new_job_per_record_with_two_operators(batch: Batch) -> None:
    ended = {"failed": "Failed", "canceled": "Canceled", "deleted": None, "fine": "Completed"}
    old = {name: batch.dispatch_job(f"incoming/{name}.csv") for name in ended}
    for name, status in ended.items():
        if status is None:
            batch.jobs.jobs.pop(old[name])  # NotFound
        else:
            batch.jobs.set_status(old[name], status)
    invoke_timer("track_batch_jobs")
    posts_before = len(batch.jobs.posts())

    dry = ops("--resubmit-failed", "--dry-run")
    assert dry.code == 0, dry.err
    assert len(dry.lines_starting("would resubmit ")) == 3 and not dry.lines_with("fine.csv")
    assert len(batch.jobs.posts()) == posts_before

    barrier = threading.Barrier(2)
    results: list[Result] = []

    def operator() -> None:
        barrier.wait()
        results.append(ops("--resubmit-failed"))

    threads = [threading.Thread(target=operator) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert [result.code for result in results] == [0, 0], [r.out + r.err for r in results]
    resubmitted = [line for result in results for line in result.lines_starting("resubmitted ")]
    assert len(resubmitted) == 3, [r.out for r in results]
    assert len(batch.jobs.posts()) == posts_before + 3  # one new job per record, not two

    for name, status in ended.items():
        now = batch.record_of(f"incoming/{name}.csv")
        assert now["status"] == "dispatched"
        if name == "fine":
            assert now["jobName"] == old[name] and "history" not in now
            continue
        assert now["jobName"] != old[name] and now["jobName"] in batch.jobs.jobs
        assert "jobStatus" not in now  # the new job has not been tracked yet
        (previous,) = now["history"]
        assert previous["jobName"] == old[name]
        assert previous["jobStatus"] == (status or "NotFound")
        marker = batch_index.marker_name(batch.record_name(f"incoming/{name}.csv"))
        assert batch.ledger_client().get_blob_client(marker).exists()

    invoke_timer("track_batch_jobs")  # the new jobs are followed like any other
    assert batch.record_of("incoming/failed.csv")["jobStatus"] == "Queued"
    again = ops("--resubmit-failed")
    assert again.code == 0 and again.out.strip() == "summary: nothing to do"


def test_a_resubmission_that_cannot_be_posted_leaves_the_record_as_it_was(batch: Batch) -> None:
    job = batch.dispatch_job("incoming/flaky.csv")
    batch.jobs.set_status(job, "Failed")
    invoke_timer("track_batch_jobs")
    before = batch.record_of("incoming/flaky.csv")
    batch.jobs.script.extend([Scripted(503, None, {"Retry-After": "0"})] * 3)
    result = ops("--resubmit-failed")
    assert result.code == 1, result.out + result.err
    assert result.lines_starting("retry ")
    assert batch.record_of("incoming/flaky.csv") == before
    assert ops("--resubmit-failed").code == 0  # the next try works
    assert batch.record_of("incoming/flaky.csv")["history"][0]["jobName"] == job


def test_usage_errors(app_env: dict[str, str]) -> None:
    assert ops("--refresh").code == 2  # dry-run settings: no endpoint to ask
    assert ops("--resubmit-failed").code == 2
    assert ops("--dry-run").code == 2
    assert ops("--since", "yesterday").code == 2
    listing = ops()
    assert listing.code == 0 and listing.out.strip() == "0 jobs"


def test_refresh_with_a_refused_identity_is_a_usage_error(batch: Batch) -> None:
    batch.dispatch_job("incoming/one.csv")
    batch.jobs.accepted_token = "someone else's"
    result = ops("--refresh")
    assert result.code == 2 and "401" in result.err
