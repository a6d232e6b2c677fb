"""track_batch_jobs against Azurite, the local jobs endpoint and the managed identity.

Jobs are started the way the app starts them (dispatch_batch_job through the worker's
converter); the timer is invoked with the func.TimerRequest the worker's converter makes.
Storage requests are counted by a pass-through in front of Azurite, endpoint requests by
the stand-in itself.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from handlers import batch_index
from handlers.batch_ledger import ledger_prefix
from handlers.batch_tracking import TrackLimits, track
from handlers.context import AppContext, reset_context
from handlers.errors import ConfigurationError
from handlers.settings import Settings
from tests.support.batch import Batch
from tests.support.faults import batch_environment
from tests.support.host import invoke_timer, timer_payload
from tests.support.polling import poll
from tools import azurite, seed
from tools.counting_proxy import CountingProxy, Seen, counting_proxy
from tools.standins import JobsEndpoint, ManagedIdentityEndpoint, Scripted

pytestmark = [pytest.mark.azurite, pytest.mark.http]

NO_WAIT = {"Retry-After": "0"}


@pytest.fixture
def proxy(azurite_service: azurite.Azurite) -> Iterator[CountingProxy]:
    with counting_proxy(azurite_service) as counting:
        yield counting


def use_storage(connection_string: str) -> None:
    """Point the app at storage: Azurite itself, or the counting pass-through (whose events
    would name another account, so uploads and dispatches go to Azurite itself)."""
    os.environ["DATA_STORAGE"] = connection_string
    reset_context()


@pytest.fixture
def through_proxy(batch_env: dict[str, str], proxy: CountingProxy) -> CountingProxy:
    """The app's storage requests go through the counting pass-through."""
    use_storage(proxy.connection_string)
    return proxy


def change_lines(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    return [
        (r.levelno, r.getMessage())
        for r in caplog.records
        if r.getMessage().startswith("track_batch_jobs blob=") and " outcome=job-" in r.getMessage()
    ]


def test_change_lines_are_logged_on_the_invocations_own_thread(
    batch: Batch, caplog: pytest.LogCaptureFixture
) -> None:
    """The worker ties a log line to its invocation only on the invocation's thread; a line
    from the tracker's own pool would be dropped by the host, and with it the Application
    Insights trace the batch-jobs-failed alert queries."""
    caplog.set_level(logging.INFO)
    names = [f"incoming/t{n}.csv" for n in range(6)]
    for name in names:
        batch.dispatch(name)
    for number, name in enumerate(names):
        job = batch.record_of(name)["jobName"]
        batch.jobs.set_status(job, "Failed" if number % 2 else "Running")
    caplog.clear()
    invoke_timer("track_batch_jobs")
    lines = [r for r in caplog.records if " outcome=job-" in r.getMessage()]
    assert Counter(r.getMessage().rsplit("outcome=", 1)[1] for r in lines) == {
        "job-running": 3,
        "job-failed": 3,
    }
    assert {r.thread for r in lines} == {threading.get_ident()}


def test_transitions_are_recorded_across_runs_and_final_jobs_are_never_asked_again(
    batch: Batch,
    identity: ManagedIdentityEndpoint,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    batch.dispatch("incoming/good.csv")
    batch.dispatch("incoming/bad.csv")
    good = batch.record_of("incoming/good.csv")["jobName"]
    bad = batch.record_of("incoming/bad.csv")["jobName"]
    assert len(batch.markers()) == 2  # marked open when dispatched

    where = batch.incoming

    def run(payload: dict[str, Any] | None = None) -> set[tuple[int, str]]:
        """One timer run; the change lines it logged."""
        caplog.clear()
        invoke_timer("track_batch_jobs", payload)
        return set(change_lines(caplog))

    def line(name: str, job: str, outcome: str) -> str:
        return f"track_batch_jobs blob={where}/incoming/{name} job={job} outcome={outcome}"

    assert run() == {
        (logging.INFO, line("good.csv", good, "job-queued")),
        (logging.INFO, line("bad.csv", bad, "job-queued")),
    }
    batch.jobs.set_status(good, "Running")
    assert run(timer_payload(past_due=True)) == {
        (logging.INFO, line("good.csv", good, "job-running"))
    }
    assert run() == set()  # nothing changed: nothing written, nothing logged
    batch.jobs.set_status(good, "Completed")
    batch.jobs.set_status(bad, "Failed")
    assert run() == {
        (logging.INFO, line("good.csv", good, "job-completed")),
        (logging.ERROR, line("bad.csv", bad, "job-failed")),
    }
    asked = batch.jobs.status_requests()
    assert run() == run() == set()
    assert batch.jobs.status_requests() == asked == Counter({good: 4, bad: 4})  # none after final
    assert batch.markers() == []
    for name, status in (("incoming/good.csv", "Completed"), ("incoming/bad.csv", "Failed")):
        record = batch.record_of(name)
        assert record["status"] == "dispatched"  # it describes the dispatch
        assert record["jobStatus"] == status
        assert record["finishedAt"] == record["jobStatusAt"] >= record["dispatchedAt"]
    assert len(identity.token_requests) == 1  # the dispatch's token, reused by every run


def test_no_open_jobs_costs_one_listing_and_no_endpoint_call(
    batch_env: dict[str, str],
    through_proxy: CountingProxy,
    batch: Batch,
    identity: ManagedIdentityEndpoint,
) -> None:
    invoke_timer("track_batch_jobs")  # not even a ledger container yet
    (listing,) = through_proxy.requests()
    assert listing.is_listing and listing.query["prefix"] == [batch_index.OPEN_PREFIX]

    use_storage(batch_env["DATA_STORAGE"])
    batch.dispatch("incoming/done.csv")
    (job,) = batch.jobs.jobs
    batch.jobs.set_status(job, "Completed")
    invoke_timer("track_batch_jobs")
    assert batch.markers() == []
    use_storage(through_proxy.connection_string)
    through_proxy.clear()
    identity.clear()
    batch.jobs.clear()

    invoke_timer("track_batch_jobs")  # a closed record in the ledger: still one listing
    (listing,) = through_proxy.requests()
    assert listing.is_listing
    assert batch.jobs.requests == [] and identity.requests == []


def test_dry_run_does_nothing_and_says_so_once(
    app_env: dict[str, str], proxy: CountingProxy, caplog: pytest.LogCaptureFixture
) -> None:
    os.environ["DATA_STORAGE"] = proxy.connection_string
    reset_context()
    caplog.set_level(logging.INFO)
    invoke_timer("track_batch_jobs")
    assert proxy.requests() == []
    (line,) = [r for r in caplog.records if r.name == "handlers.batch_tracking"]
    assert line.levelno == logging.INFO
    assert "outcome=dry-run" in line.getMessage()


def test_a_job_the_endpoint_no_longer_has_is_recorded_as_not_found(
    batch: Batch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    kept = batch.dispatch_job("incoming/kept.csv")
    job = batch.dispatch_job("incoming/deleted.csv")
    batch.jobs.remove_job(job)  # deleted on the service side: 404
    invoke_timer("track_batch_jobs")
    invoke_timer("track_batch_jobs")
    record = batch.record_of("incoming/deleted.csv")
    assert record["jobStatus"] == "NotFound" and "finishedAt" in record
    assert (
        logging.WARNING,
        f"track_batch_jobs blob={batch.incoming}/incoming/deleted.csv job={job} "
        "outcome=job-notfound",
    ) in change_lines(caplog)
    assert batch.jobs.status_requests()[job] == 1
    assert batch.markers() == [batch_index.marker_name(batch.record_name("incoming/kept.csv"))]
    assert batch.record_of("incoming/kept.csv")["jobName"] == kept


def test_a_wrong_endpoint_path_closes_no_job_and_says_so_once(
    batch: Batch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Every job answers 404 when BATCH_ENDPOINT_URI's path is wrong: that is one
    configuration error, not every job deleted."""
    for name in ("incoming/a.csv", "incoming/b.csv", "incoming/c.csv"):
        batch.dispatch(name)
    os.environ["BATCH_ENDPOINT_URI"] = f"{batch.jobs.url}/wrong/jobs"
    reset_context()
    invoke_timer("track_batch_jobs")
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    (line,) = errors
    assert "BATCH_ENDPOINT_URI" in line.getMessage()
    assert "path is probably wrong, so no job was closed" in line.getMessage()
    for name in ("incoming/a.csv", "incoming/b.csv", "incoming/c.csv"):
        assert "jobStatus" not in batch.record_of(name)
    assert len(batch.markers()) == 3
    # The path put right, the same jobs are followed again.
    os.environ["BATCH_ENDPOINT_URI"] = batch.jobs.scoring_uri
    reset_context()
    invoke_timer("track_batch_jobs")
    assert {batch.record_of(n)["jobStatus"] for n in ("incoming/a.csv", "incoming/b.csv")} == {
        "Queued"
    }


def test_a_lone_job_answering_404_stays_open_until_another_job_answers(
    batch: Batch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    job = batch.dispatch_job("incoming/alone.csv")
    batch.jobs.remove_job(job)
    invoke_timer("track_batch_jobs")
    assert "jobStatus" not in batch.record_of("incoming/alone.csv")
    (summary,) = [r for r in caplog.records if "track_batch_jobs run:" in r.getMessage()]
    assert "left-open=1" in summary.getMessage()
    assert "no other job is known to tell a deleted job" in summary.getMessage()
    batch.dispatch("incoming/next.csv")  # a job the endpoint has: now a 404 means deleted
    invoke_timer("track_batch_jobs")
    assert batch.record_of("incoming/alone.csv")["jobStatus"] == "NotFound"


def test_a_flapping_endpoint_leaves_jobs_open_until_it_answers(
    batch: Batch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    batch.dispatch("incoming/flaky.csv")
    (job,) = batch.jobs.jobs
    batch.jobs.set_status(job, "Running")
    batch.jobs.job_script[job] = [
        Scripted(429, None, NO_WAIT),
        Scripted(503, None, NO_WAIT),
        Scripted(500, None, NO_WAIT),  # the policy's three attempts, all refused
        Scripted(500, None, NO_WAIT),
        Scripted(200, {"properties": {}}),  # an answer without a status
        "Completed",
    ]
    invoke_timer("track_batch_jobs")
    assert "jobStatus" not in batch.record_of("incoming/flaky.csv")
    assert batch.jobs.status_requests() == {job: 3}
    invoke_timer("track_batch_jobs")  # one 500, then the answer without a status
    assert "jobStatus" not in batch.record_of("incoming/flaky.csv")
    assert len(batch.markers()) == 1
    invoke_timer("track_batch_jobs")
    assert batch.record_of("incoming/flaky.csv")["jobStatus"] == "Completed"
    assert batch.jobs.status_requests() == {job: 6}
    summaries = [r for r in caplog.records if r.getMessage().startswith("track_batch_jobs run:")]
    assert [r.levelno for r in summaries] == [logging.WARNING, logging.WARNING, logging.INFO]
    assert "answered 500 after 3 attempts" in summaries[0].getMessage()
    assert "without properties.status" in summaries[1].getMessage()


def test_refused_identity_is_one_error_per_run_and_changes_nothing(
    batch: Batch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    for number in range(12):
        batch.dispatch(f"incoming/part-{number}.csv")
    batch.jobs.accepted_token = "another identity's token"  # every GET now answers 401
    invoke_timer("track_batch_jobs")
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert "ConfigurationError" in errors[0].getMessage() and "401" in errors[0].getMessage()
    assert len(batch.markers()) == 12
    assert change_lines(caplog) == []


def test_an_unreadable_record_is_skipped_with_one_error_and_never_rewritten(
    batch: Batch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    batch.dispatch("incoming/broken.csv")
    batch.dispatch("incoming/fine.csv")
    ledger = batch.ledger_client()
    broken = batch.record_name("incoming/broken.csv")
    ledger.get_blob_client(broken).upload_blob(b"{not json", overwrite=True)
    for _ in range(2):
        caplog.clear()
        invoke_timer("track_batch_jobs")
        (error,) = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert broken in error.getMessage() and "outcome=skipped" in error.getMessage()
    assert ledger.get_blob_client(broken).download_blob().readall() == b"{not json"
    assert len(batch.markers()) == 2  # its marker stays until it is fixed
    assert batch.record_of("incoming/fine.csv")["jobStatus"] == "Queued"


def test_a_record_changed_between_read_and_write_is_read_again_not_overwritten(
    batch_env: dict[str, str], through_proxy: CountingProxy, batch: Batch
) -> None:
    """Another writer changes the record after the tracker read it and before its write
    arrives: the write (with the eTag it read) is refused, and the tracker reads the record
    again and applies its status over the other writer's change instead of losing it."""
    use_storage(batch_env["DATA_STORAGE"])
    job = batch.dispatch_job("incoming/raced.csv")
    record_name = batch.record_name("incoming/raced.csv")
    batch.jobs.set_status(job, "Running")
    use_storage(through_proxy.connection_string)
    record = batch.ledger_client().get_blob_client(record_name)
    meanwhile: list[str] = []

    def other_writer(seen: Seen) -> None:
        if seen.method == "PUT" and seen.blob(batch.ledger) == record_name and not meanwhile:
            meanwhile.append(seen.path)
            changed = json.loads(record.download_blob().readall()) | {"note": "meanwhile"}
            record.upload_blob(json.dumps(changed), overwrite=True)

    through_proxy.before_forward = other_writer
    invoke_timer("track_batch_jobs")
    through_proxy.before_forward = None
    assert meanwhile, "the tracker never wrote the record"
    now = batch.record_of("incoming/raced.csv")
    assert now["jobStatus"] == "Running"
    assert now["note"] == "meanwhile"  # the other writer's change survived
    record_writes = [
        r
        for r in through_proxy.requests()
        if r.method == "PUT" and r.blob(batch.ledger) == record_name
    ]
    assert len(record_writes) == 2  # refused once, then written over the fresh read


def test_overlapping_runs_lose_no_update_and_log_each_change_once(
    batch: Batch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Two runs at once over the same jobs, one told Running and the other Completed for
    each job (whichever asks first): every record ends Completed, never back to Running,
    and each change is logged by the one run whose write won."""
    caplog.set_level(logging.INFO)
    for number in range(16):
        batch.dispatch(f"incoming/race-{number}.csv")
    invoke_timer("track_batch_jobs")  # all Queued, markers noted
    for job in batch.jobs.jobs:
        batch.jobs.job_script[job] = ["Running", "Completed"]
    caplog.clear()
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def run() -> None:
        barrier.wait()
        try:
            invoke_timer("track_batch_jobs")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    lines = [message for _, message in change_lines(caplog)]
    for number in range(16):
        record = batch.record_of(f"incoming/race-{number}.csv")
        assert record["jobStatus"] == "Completed"
        mine = [line for line in lines if f"/incoming/race-{number}.csv " in line]
        outcomes = Counter(line.rsplit("=", 1)[1] for line in mine)
        # Each write that won is logged once. (Two runs' lines can come out in either order:
        # each logs after its own write; the record says which came last.)
        assert outcomes["job-completed"] == 1 and outcomes["job-running"] <= 1, mine
    # A marker noted by the run that lost may survive the race; the next run removes it.
    invoke_timer("track_batch_jobs")
    assert batch.markers() == []
    assert len(change_lines(caplog)) == len(lines)


@pytest.mark.slow
def test_ten_thousand_open_jobs_in_bounded_runs_without_reading_closed_records(
    through_proxy: CountingProxy,
    azurite_service: azurite.Azurite,
    batch: Batch,
    identity: ManagedIdentityEndpoint,
) -> None:
    """10,000 open jobs (100 of which finish) and 300 closed records: each run asks about at
    most a page of jobs, ten runs ask about every open job exactly once, and only the
    records of the jobs that changed are read."""
    ledger = batch.ledger
    source = batch.incoming

    def record(number: int, status: str) -> tuple[str, dict[str, Any]]:
        name = f"{ledger_prefix(source, f'incoming/{number:05d}.csv')}0x8D{number:013X}.json"
        body = {
            "status": "dispatched",
            "container": source,
            "blob": f"incoming/{number:05d}.csv",
            "jobName": f"batchjob-{number:05d}",
            "jobStatus": status,
            "dispatchedAt": "2026-11-22T10:00:00.000+00:00",
        }
        return name, body

    finishing = set(range(0, 10_000, 100))
    seeded: list[seed.Blob] = []
    open_records = {}
    for number in range(10_000):
        name, body = record(number, "Running")
        meta = batch_index.noted(body["jobName"], "Running")
        seeded.append((batch_index.marker_name(name), b"", meta))
        batch.jobs.add_job(body["jobName"], "Completed" if number in finishing else "Running")
        open_records[name] = number
        if number in finishing:
            seeded.append((name, json.dumps(body).encode(), {}))
    closed = [record(number, "Completed") for number in range(10_000, 10_300)]
    seeded += [(name, json.dumps(body).encode(), {}) for name, body in closed]
    seed.put_blobs(azurite_service.blob_url, ledger, seeded, workers=8)

    ctx = AppContext.from_env()
    through_proxy.clear()
    asked_per_run = []
    for _ in range(10):
        before = sum(batch.jobs.status_requests().values())
        report = track(ctx, TrackLimits(page=1000, workers=8, seconds=240))
        asked_per_run.append(sum(batch.jobs.status_requests().values()) - before)
        assert report.stopped is None and report.first_problem is None
    asked = batch.jobs.status_requests()
    assert max(asked_per_run) <= 1000
    assert len(asked) == 10_000 and set(asked.values()) == {1}
    reads = Counter(seen.blob(ledger) for seen in through_proxy.requests() if seen.method == "GET")
    closed_names = {name for name, _ in closed}
    assert not closed_names & set(reads)
    read_records = {name for name in reads if name and name in open_records}
    assert read_records == {name for name, n in open_records.items() if n in finishing}
    assert sum(1 for seen in through_proxy.requests() if seen.is_listing) <= 2 * 10
    assert len(identity.token_requests) == 1
    assert len(batch.markers()) == 10_000 - len(finishing)


def test_markers_of_jobs_that_never_started_are_removed_without_asking(
    batch: Batch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Rejected and unknown dispatches have no job to follow; a claim whose delivery died
    (older than the function timeout) is recorded as unknown, as a redelivery would. The
    claim here is one from before job names, which cannot be looked up by name."""
    batch.jobs.script.append(Scripted(400, {"error": {"code": "BadRequest"}}))
    batch.dispatch("incoming/rejected.csv")
    assert batch.record_of("incoming/rejected.csv")["status"] == "rejected"
    batch.dispatch("incoming/died.csv")
    ledger = batch.ledger_client()
    died = batch.record_name("incoming/died.csv")
    stale = {
        **batch.record_of("incoming/died.csv"),
        "status": "dispatching",
        "claimedAt": "2026-01-01T00:00:00.000+00:00",
    }
    del stale["jobRequested"]
    ledger.get_blob_client(died).upload_blob(json.dumps(stale), overwrite=True)
    batch_index.mark_open(ledger, died)  # as the dying delivery left it: not yet noted
    assert len(batch.markers()) == 2
    batch.jobs.clear()
    caplog.clear()

    invoke_timer("track_batch_jobs")
    assert batch.markers() == []
    assert batch.jobs.requests == []
    assert batch.record_of("incoming/died.csv")["status"] == "unknown"
    (error,) = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert "outcome=unknown" in error and died in error


def test_the_walking_stand_in_takes_each_job_to_its_end(
    batch: Batch,
    identity: ManagedIdentityEndpoint,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The local loop's endpoint: Queued, Running, then Completed (Failed for a file whose
    name says fail), over 1.5 s here."""
    walking = JobsEndpoint(identity.token, walk_seconds=1.5)
    try:
        batch_environment(identity, walking)  # in place of the batch fixture's endpoint
        caplog.set_level(logging.INFO)
        batch.dispatch("incoming/scores.csv")
        batch.dispatch("incoming/will-fail.csv")

        def both_final() -> bool:
            invoke_timer("track_batch_jobs")
            return not batch.markers()

        poll(both_final, 20, "both jobs to end")
    finally:
        walking.stop()
    seen = [line.rsplit(" ", 1)[1] for _, line in change_lines(caplog)]
    assert "outcome=job-queued" in seen and "outcome=job-running" in seen
    assert batch.record_of("incoming/scores.csv")["jobStatus"] == "Completed"
    assert batch.record_of("incoming/will-fail.csv")["jobStatus"] == "Failed"


def test_no_ledger_record_can_fall_under_the_reserved_names() -> None:
    """Records start with a container name ([a-z0-9-]); the markers and the cursor start
    with '_', which no container name can."""
    for container in ("batch-input", "a0-b", "open-jobs", "9ab"):
        assert not batch_index.is_reserved(ledger_prefix(container, "_open-jobs/x"))
    assert batch_index.is_reserved(batch_index.marker_name("batch-input/abc/0x1.json"))
    assert batch_index.is_reserved(batch_index.CURSOR)
    with pytest.raises(ConfigurationError):
        Settings.from_env(
            {
                "DATA_STORAGE": "UseDevelopmentStorage=true",
                "DISPATCH_LEDGER_CONTAINER": "_open-jobs",
            }
        )


def test_runs_are_bounded_by_a_page_and_by_time_and_go_round_every_job(batch: Batch) -> None:
    for number in range(5):
        batch.dispatch(f"incoming/page-{number}.csv")
    ctx = AppContext.from_env()

    out_of_time = track(ctx, TrackLimits(page=500, workers=2, seconds=0))
    assert out_of_time.outcomes == {"not-asked": 5} and batch.jobs.status_requests() == {}

    asked: list[Counter[str]] = []
    for _ in range(3):  # pages of 2: 2 + 2 + 1, the cursor carrying each run on
        before = batch.jobs.status_requests()
        report = track(ctx, TrackLimits(page=2, workers=2, seconds=60))
        asked.append(batch.jobs.status_requests() - before)
        assert report.listed <= 2
    assert [sum(run.values()) for run in asked] == [2, 2, 1]
    assert batch.jobs.status_requests() == Counter(dict.fromkeys(batch.jobs.jobs, 1))
    again = track(ctx, TrackLimits(page=2, workers=2, seconds=60))  # round again
    assert again.listed == 2 and again.more
