"""At-least-once delivery at scale: every event arrives three times, some copies at the same
moment, and each blob version still gets exactly one thumbnail write and one batch job."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest
from azure.storage.blob import BlobServiceClient

from handlers import batch_index
from handlers.thumbnails import SOURCE_ETAG
from tests.support import faults
from tests.support import images as gen
from tests.support.host import outcome_of
from tests.support.uploads import upload_events
from tools import azurite
from tools import events as build
from tools.standins import JobsEndpoint

pytestmark = [pytest.mark.azurite, pytest.mark.http, pytest.mark.slow]

BLOBS = 200
COPIES = 3
WORKERS = 16
SEED = 20260501


def small_image(number: int) -> tuple[str, bytes, str]:
    """A distinct small image per blob, JPEG or PNG (RGBA PNGs keep their alpha)."""
    image = gen.halves((64 + number % 37, 48 + number % 23))
    if number % 4 == 0:
        image.putpixel((0, 0), (number % 256, 0, 0))
        return f"upload/{number:03d} photo.png", gen.encode(image, "PNG"), "image/png"
    if number % 4 == 1:
        rgba = gen.transparent_rgba((40 + number % 17, 40))
        return f"upload/{number:03d}-logo.png", gen.encode(rgba, "PNG"), "image/png"
    return f"upload/day {number % 7}/{number:03d}.jpg", gen.encode(image, "JPEG"), "image/jpeg"


def upload_all(
    service: BlobServiceClient, base_url: str, container: str
) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """Upload the blobs; return (name, Event Grid event, CloudEvent) for each, as Azure
    would send them to the thumbnail and batch subscriptions."""
    uploaded = []
    for number in range(BLOBS):
        name, data, content_type = small_image(number)
        schemas = (build.EVENT_GRID_SCHEMA, build.CLOUD_EVENT_SCHEMA)
        events = upload_events(
            service, base_url, container, name, data, content_type=content_type, schemas=schemas
        )
        uploaded.append((name, events[0], events[1]))
    return uploaded


@pytest.mark.usefixtures("app_env")
def test_every_event_three_times_gives_one_thumbnail_and_one_job_per_version(
    containers: dict[str, str],
    azurite_service: azurite.Azurite,
    blob_service: BlobServiceClient,
    dispatching: JobsEndpoint,
) -> None:
    jobs = dispatching
    images = containers["images"]
    uploaded = upload_all(blob_service, azurite_service.blob_url, images)
    deliveries: list[faults.Invocation] = []
    for _, thumbnail_event, batch_event in uploaded:
        deliveries.append(("create_thumbnail", thumbnail_event))
        deliveries.append(("dispatch_batch_job", batch_event))
    order = faults.with_duplicates(deliveries, COPIES, SEED)
    assert len(order) == BLOBS * 2 * COPIES

    report = faults.RedeliveryReport()
    failed = faults.run_round(order, outcome_of, WORKERS, report)
    # A duplicate that waited longer than claim_wait_seconds for the claim holder raises
    # DispatchInProgressError on purpose; Event Grid delivers it again.
    faults.redeliver_until_done(failed, outcome_of, WORKERS, report, max_rounds=5)
    assert set(report.raised_types()) <= {"DispatchInProgressError"}, report.raised_types()

    expected = {f"{images}/{name}" for name, _, _ in uploaded}
    thumbnails = faults.outcomes_by_blob(report, "create_thumbnail")
    assert thumbnails.keys() == expected
    for blob, counts in thumbnails.items():
        assert counts == Counter({"written": 1, "duplicate": COPIES - 1}), (blob, counts)

    dispatches = faults.outcomes_by_blob(report, "dispatch_batch_job")
    assert dispatches.keys() == expected
    for blob, counts in dispatches.items():
        # A copy that raised was delivered again: it returned one final outcome.
        assert counts == Counter({"dispatched": 1, "duplicate": COPIES - 1}), (blob, counts)

    # What storage holds: one thumbnail per blob, made from the version the event named.
    versions = {f"{images}/{name}": event["data"]["eTag"].strip('"') for name, event, _ in uploaded}
    stored = {
        blob.name: blob.metadata
        for blob in blob_service.get_container_client(containers["thumbnails"]).list_blobs(
            include=["metadata"]
        )
    }
    assert stored.keys() == expected
    for name, metadata in stored.items():
        assert metadata[SOURCE_ETAG] == versions[name], name

    # What the batch endpoint saw: one POST and one job per blob version, nothing more.
    urls = {event["data"]["url"] for _, _, event in uploaded}
    assert len(jobs.posts()) == BLOBS
    assert jobs.job_uris() == Counter(dict.fromkeys(urls, 1))
    ledger = blob_service.get_container_client(containers["ledger"])
    names = [blob.name for blob in ledger.list_blobs()]
    records = [
        json.loads(ledger.download_blob(name).readall())
        for name in names
        if not batch_index.is_reserved(name)
    ]
    assert len(records) == BLOBS
    # ... and one open-jobs marker per job, for track_batch_jobs.
    assert len([name for name in names if name.startswith(batch_index.OPEN_PREFIX)]) == BLOBS
    assert {record["status"] for record in records} == {"dispatched"}
    assert {record["jobName"] for record in records} == set(jobs.jobs)
