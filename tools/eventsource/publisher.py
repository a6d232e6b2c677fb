"""Turn a successful blob write into BlobCreated events, one per matching subscription.

The event carries what the real request and response said (api, eTag, requestId,
clientRequestId, blob type, content type and length); where the request alone cannot tell
(Put Block List, copies) the blob's properties are read from Azurite, and only used when they
still describe the version this write created.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from azure.core.exceptions import AzureError
from azure.storage.blob import BlobServiceClient

from tools import azurite
from tools import events as builders
from tools.eventsource.proxy import BlobWrite
from tools.eventsource.queue import DeliveryQueue
from tools.routes import Routes

logger = logging.getLogger(__name__)

DEFAULT_CONTENT_TYPE = "application/octet-stream"
# A copy Azurite reports as pending is watched this long for its completion.
COPY_WATCH_SECONDS = 600.0


@dataclass(frozen=True)
class _Properties:
    etag: str
    content_type: str
    content_length: int
    blob_type: str
    copy_status: str | None


class _Sequencer:
    """Sequencers that sort as strings in write order, across restarts too (time based)."""

    def __init__(self) -> None:
        self._last = 0
        self._lock = threading.Lock()

    def next(self) -> str:
        with self._lock:
            self._last = max(self._last + 1, time.time_ns())
            return f"{self._last:048x}"


class Publisher:
    """Builds the events for each write and queues one delivery per matching subscription."""

    def __init__(
        self,
        routes: Routes,
        queue: DeliveryQueue,
        public_url: Callable[[str], str],
        upstream_port: int,
    ) -> None:
        self.routes = routes
        self.queue = queue
        self._public_url = public_url
        self._upstream = BlobServiceClient.from_connection_string(
            azurite.connection_string(upstream_port), retry_total=1
        )
        self._sequencer = _Sequencer()

    def on_write(self, write: BlobWrite) -> None:
        copy_status = write.response_headers.get("x-ms-copy-status")
        if write.api in ("CopyBlob", "PutBlobFromUrl") and (copy_status or "").lower() == "pending":
            threading.Thread(target=self._after_copy, args=(write,), daemon=True).start()
            return
        self.publish(write, self._properties(write))

    def publish(
        self, write: BlobWrite, properties: _Properties | None, *, completed_copy: bool = False
    ) -> list[str]:
        """Queue the event for every matching subscription; returns their names."""
        fields = self._fields(write, properties, completed_copy)
        event_id = str(uuid.uuid4())
        now = datetime.now(UTC)
        grid_event = builders.blob_created(**fields, event_id=event_id, event_time=now)
        matched = self.routes.matching(grid_event)
        for route in matched:
            event = (
                grid_event
                if route.schema == builders.EVENT_GRID_SCHEMA
                else builders.blob_created(
                    **fields, schema=route.schema, event_id=event_id, event_time=now
                )
            )
            self.queue.enqueue(route, event, blob=f"{write.container}/{write.blob_name}")
        logger.debug(
            "event %s %s %s/%s -> %s",
            event_id,
            write.api,
            write.container,
            write.blob_name,
            ", ".join(route.name for route in matched) or "no subscription",
        )
        return [route.name for route in matched]

    def _fields(
        self, write: BlobWrite, properties: _Properties | None, completed_copy: bool
    ) -> dict[str, Any]:
        request, response = write.request_headers, write.response_headers
        etag = response.get("ETag", "")
        if properties is not None and completed_copy:
            etag = properties.etag  # the version the finished copy left
        if properties is not None and properties.etag.strip('"') == etag.strip('"'):
            content_type = properties.content_type
            content_length = properties.content_length
            blob_type = properties.blob_type
        else:
            if write.api != "PutBlob":
                logger.warning(
                    "%s/%s changed before its properties were read; the event's contentType "
                    "and contentLength come from the request",
                    write.container,
                    write.blob_name,
                )
            blob_type = request.get("x-ms-blob-type", "BlockBlob")
            content_type = (
                request.get("x-ms-blob-content-type")
                or request.get("Content-Type")
                or DEFAULT_CONTENT_TYPE
            )
            if blob_type == "PageBlob":
                content_length = int(request.get("x-ms-blob-content-length", "0"))
            elif blob_type == "AppendBlob" or write.api != "PutBlob":
                content_length = 0
            else:
                content_length = write.body_bytes
        return {
            "account": write.account,
            "service_url": self._public_url(write.account),
            "container": write.container,
            "blob_name": write.blob_name,
            "etag": etag,
            "api": write.api,
            "content_type": content_type,
            "content_length": content_length,
            "blob_type": blob_type,
            "request_id": response.get("x-ms-request-id"),
            "client_request_id": request.get("x-ms-client-request-id")
            or response.get("x-ms-client-request-id"),
            "sequencer": self._sequencer.next(),
        }

    def _properties(self, write: BlobWrite) -> _Properties | None:
        """The blob's properties from Azurite, except for a plain Put Blob (the request has
        them) or an account whose key this tool does not know."""
        if write.api == "PutBlob" or write.account != azurite.ACCOUNT:
            return None
        try:
            found = self._upstream.get_blob_client(
                write.container, write.blob_name
            ).get_blob_properties()
        except AzureError as exc:
            logger.warning(
                "could not read %s/%s's properties: %s", write.container, write.blob_name, exc
            )
            return None
        return _Properties(
            etag=str(found.etag),
            content_type=found.content_settings.content_type or DEFAULT_CONTENT_TYPE,
            content_length=int(found.size),
            blob_type=str(getattr(found.blob_type, "value", found.blob_type)),
            copy_status=found.copy.status,
        )

    def _after_copy(self, write: BlobWrite) -> None:
        """Azure announces a copy when it completes; watch a pending one until then."""
        deadline = time.monotonic() + COPY_WATCH_SECONDS
        delay = 0.2
        while time.monotonic() < deadline:
            properties = self._properties(write)
            status = properties.copy_status if properties is not None else None
            if status == "success":
                self.publish(write, properties, completed_copy=True)
                return
            if status in ("failed", "aborted"):
                logger.info("copy to %s/%s %s: no event", write.container, write.blob_name, status)
                return
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
        logger.warning("copy to %s/%s did not complete in time", write.container, write.blob_name)
