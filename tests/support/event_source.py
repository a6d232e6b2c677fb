"""Helpers for the event source suites: routes on a test's own containers, a recording
delivery target, and short ways to drive a running event source."""

from __future__ import annotations

import copy
import io
import json
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from azure.storage.blob import BlobServiceClient
from PIL import Image

from handlers.context import reset_context
from tests.support.polling import poll
from tools.eventsource import EventSource, RetryTiming
from tools.eventsource.targets import Result, result_for_status
from tools.routes import ROUTES_FILE, Routes, parse_routes


def routes_for(
    containers: Mapping[str, str], extra_apis: tuple[str, ...] = (), **retry: int
) -> Routes:
    """The project's routes, moved onto this test's containers; ``retry`` overrides every
    subscription's retryPolicy (maxDeliveryAttempts=..., eventTimeToLiveInMinutes=...) and
    ``extra_apis`` widens their data.api filters."""
    document = json.loads(ROUTES_FILE.read_text(encoding="utf-8"))
    document = copy.deepcopy(document)
    moved = {"images": containers["images"], "batch-input": containers["incoming"]}
    document["containers"]["images"] = containers["images"]
    document["containers"]["batchInput"] = containers["incoming"]
    document["containers"]["thumbnails"] = containers["thumbnails"]
    document["containers"]["dispatchLedger"] = containers["ledger"]
    document["containers"]["deadLetter"] = containers["deadletter"]
    for entry in document["subscriptions"]:
        prefix = entry["filter"]["subjectBeginsWith"]
        for old, new in moved.items():
            prefix = prefix.replace(f"/containers/{old}/", f"/containers/{new}/")
        entry["filter"]["subjectBeginsWith"] = prefix
        entry.setdefault("retryPolicy", {}).update(retry)
        for item in entry["filter"].get("advancedFilters", []):
            if item["key"] == "data.api":
                item["values"] = [*item["values"], *extra_apis]
    return parse_routes(document)


@dataclass
class RecordingTarget:
    """A delivery target that records each event and answers with ``statuses`` in turn
    (the last one repeats)."""

    statuses: list[int] = field(default_factory=lambda: [200])
    up: bool = True
    description: str = "recording target"
    deliveries: list[tuple[str, dict[str, Any], float]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def available(self) -> bool:
        return self.up

    def deliver(self, function: str, event: Mapping[str, Any]) -> Result:
        with self.lock:
            self.deliveries.append((function, dict(event), time.monotonic()))
            status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
        return result_for_status(status)

    def events(self) -> list[dict[str, Any]]:
        with self.lock:
            return [event for _, event, _ in self.deliveries]


FAST = RetryTiming(time_scale=0.01, max_delay=1.0)


def jpeg(size: tuple[int, int] = (320, 200)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 40, 40)).save(buffer, "JPEG")
    return buffer.getvalue()


SourceFactory = Callable[..., EventSource]


def point_functions_at(source: EventSource) -> None:
    """The functions read the blobs through the event source, as under `make run`."""
    os.environ["DATA_STORAGE"] = source.connection_string
    reset_context()


def client(source: EventSource, **options: Any) -> BlobServiceClient:
    return BlobServiceClient.from_connection_string(source.connection_string, **options)


def delivered_events(target: RecordingTarget, source: EventSource) -> list[dict[str, Any]]:
    """Every event for writes made so far, once none is left to deliver.

    The pass-through records an event before it relays Azurite's answer, so when an upload
    has returned its events are queued; an empty queue means all of them reached the target.
    """
    poll(lambda: not source.queue.pending(), 10, "the queue to drain")
    return target.events()


def thumbnail_of(service: BlobServiceClient, containers: dict[str, str], name: str) -> bytes:
    blob = service.get_blob_client(containers["thumbnails"], f"{containers['images']}/{name}")
    return poll(
        lambda: blob.download_blob().readall() if blob.exists() else None, 10, f"thumbnail {name}"
    )


@dataclass
class RecordedSource:
    """An event source whose deliveries a RecordingTarget records, and a client through it."""

    target: RecordingTarget
    source: EventSource

    @property
    def service(self) -> BlobServiceClient:
        return client(self.source)

    def delivered(self) -> list[dict[str, Any]]:
        return delivered_events(self.target, self.source)
