"""The local event source turns blob-creating writes into BlobCreated events shaped like
Azure's, routed like Event Grid."""

from __future__ import annotations

import os
import re

import pytest
from azure.storage.blob import ContentSettings

from tests.support.event_source import RecordedSource, client
from tests.support.names import unique
from tools import azurite

pytestmark = pytest.mark.azurite


# --- routed like Event Grid ----------------------------------------------------------------


def test_batch_route_gets_cloud_events(
    containers: dict[str, str], recorded: RecordedSource
) -> None:
    service = recorded.service
    service.get_blob_client(containers["incoming"], "incoming/rows.csv").upload_blob(b"a,b\n")
    service.get_blob_client(containers["incoming"], "elsewhere/rows.csv").upload_blob(b"a,b\n")

    (event,) = recorded.delivered()
    assert recorded.target.deliveries[0][0] == "dispatch_batch_job"
    assert event["specversion"] == "1.0"
    assert event["type"] == "Microsoft.Storage.BlobCreated"
    assert event["subject"] == (
        f"/blobServices/default/containers/{containers['incoming']}/blobs/incoming/rows.csv"
    )
    assert event["source"].endswith(f"/storageAccounts/{azurite.ACCOUNT}")


# --- which writes make events, and what they say --------------------------------------------


def test_put_blob_event_is_shaped_like_azures(
    containers: dict[str, str], recorded: RecordedSource
) -> None:
    source = recorded.source
    blob = recorded.service.get_blob_client(containers["images"], "a/b c.png")
    data = b"\x89PNG not really" * 100
    sent: dict[str, str] = {}
    result = blob.upload_blob(
        data,
        content_settings=ContentSettings(content_type="image/png"),
        raw_request_hook=lambda request: sent.update(request.http_request.headers),
        raw_response_hook=lambda response: sent.update(
            request_id=response.http_response.headers["x-ms-request-id"]
        ),
    )

    (event,) = recorded.delivered()
    assert recorded.target.deliveries[0][0] == "create_thumbnail"
    assert set(event) == {
        "id",
        "topic",
        "subject",
        "eventType",
        "eventTime",
        "data",
        "dataVersion",
        "metadataVersion",
    }
    assert event["eventType"] == "Microsoft.Storage.BlobCreated"
    assert (
        event["subject"]
        == f"/blobServices/default/containers/{containers['images']}/blobs/a/b c.png"
    )
    data_fields = event["data"]
    assert data_fields["api"] == "PutBlob"
    assert data_fields["eTag"] == result["etag"]
    assert data_fields["contentType"] == "image/png"
    assert data_fields["contentLength"] == len(data)
    assert data_fields["blobType"] == "BlockBlob"
    assert data_fields["url"] == f"{source.blob_url}/{containers['images']}/a/b%20c.png"
    assert data_fields["clientRequestId"] == sent["x-ms-client-request-id"]
    assert data_fields["requestId"] == sent["request_id"]
    assert re.fullmatch(r"[0-9a-f]{48}", data_fields["sequencer"])


def test_chunked_upload_makes_exactly_one_event(
    containers: dict[str, str], recorded: RecordedSource
) -> None:
    source = recorded.source
    service = client(source, max_single_put_size=256 * 1024, max_block_size=256 * 1024)
    data = os.urandom(5 * 256 * 1024 + 123)
    result = service.get_blob_client(containers["images"], "big/scan.tif").upload_blob(
        data, content_settings=ContentSettings(content_type="image/tiff"), max_concurrency=2
    )

    (event,) = recorded.delivered()
    assert event["data"]["api"] == "PutBlockList"
    assert event["data"]["contentLength"] == len(data)  # read back from Azurite
    assert event["data"]["contentType"] == "image/tiff"
    assert event["data"]["eTag"] == result["etag"]


def test_overwrite_makes_a_new_event(containers: dict[str, str], recorded: RecordedSource) -> None:
    blob = recorded.service.get_blob_client(containers["images"], "again.jpg")
    first = blob.upload_blob(b"one")
    second = blob.upload_blob(b"two!", overwrite=True)

    events = recorded.delivered()
    assert [event["data"]["eTag"] for event in events] == [first["etag"], second["etag"]]
    assert events[0]["id"] != events[1]["id"]
    assert events[0]["data"]["sequencer"] < events[1]["data"]["sequencer"]
    assert events[1]["data"]["contentLength"] == 4


def test_a_copy_makes_an_event_with_the_copys_properties(
    containers: dict[str, str], recorded: RecordedSource
) -> None:
    service = recorded.service
    original = service.get_blob_client(containers["incoming"], "source.jpg")
    original.upload_blob(b"x" * 1000, content_settings=ContentSettings(content_type="image/jpeg"))
    copied = service.get_blob_client(containers["images"], "copied.jpg")
    copied.start_copy_from_url(original.url)

    (event,) = recorded.delivered()
    data = event["data"]
    assert data["api"] == "CopyBlob"
    assert data["contentLength"] == 1000  # read back from Azurite
    assert data["contentType"] == "image/jpeg"
    assert data["eTag"] == copied.get_blob_properties().etag
    assert event["subject"].endswith("/blobs/copied.jpg")


@pytest.mark.parametrize(
    ("method", "target", "headers", "expected"),
    [
        ("PUT", "/acc/c/a/b.jpg", {"x-ms-blob-type": "BlockBlob"}, "PutBlob"),
        ("PUT", "/acc/c/b.jpg", {"x-ms-blob-type": "PageBlob"}, "PutBlob"),
        ("PUT", "/acc/c/b.jpg?comp=blocklist", {}, "PutBlockList"),
        ("PUT", "/acc/c/b.jpg", {"x-ms-copy-source": "http://x/y"}, "CopyBlob"),
        (
            "PUT",
            "/acc/c/b.jpg",
            {"x-ms-copy-source": "http://x/y", "x-ms-requires-sync": "true"},
            "CopyBlob",
        ),
        (
            "PUT",
            "/acc/c/b.jpg",
            {"x-ms-copy-source": "http://x/y", "x-ms-blob-type": "BlockBlob"},
            "PutBlobFromUrl",  # Azurite 3.37 does not implement it; classified all the same
        ),
        ("PUT", "/acc/c/b.jpg?comp=block&blockid=QQ==", {}, None),
        ("PUT", "/acc/c/b.jpg?comp=metadata", {}, None),
        ("PUT", "/acc/c?restype=container", {}, None),
        ("GET", "/acc/c/b.jpg", {}, None),
        ("DELETE", "/acc/c/b.jpg", {}, None),
    ],
)
def test_which_requests_create_blobs(
    method: str, target: str, headers: dict[str, str], expected: str | None
) -> None:
    from email.message import Message

    from tools.eventsource.proxy import classify

    message = Message()
    for key, value in headers.items():
        message[key] = value
    found = classify(method, target, message)
    assert (found[0] if found else None) == expected
    if found:
        assert found[1:3] == ("acc", "c")


def test_blobs_outside_every_route_make_no_event(
    containers: dict[str, str], recorded: RecordedSource
) -> None:
    service = recorded.service
    elsewhere = unique("elsewhere")
    service.create_container(elsewhere)
    service.get_blob_client(elsewhere, "photo.jpg").upload_blob(b"not routed")
    service.get_blob_client(containers["images"], "notes.txt").upload_blob(b"not an image")
    service.get_blob_client(containers["incoming"], "outgoing/rows.csv").upload_blob(b"a")
    service.create_container(containers["thumbnails"])
    service.get_blob_client(containers["thumbnails"], "x.jpg").upload_blob(b"output")

    assert recorded.delivered() == []
    assert recorded.source.queue.pending() == []
