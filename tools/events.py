"""Build BlobCreated events shaped like Azure's, in either delivery schema."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

BLOB_CREATED = "Microsoft.Storage.BlobCreated"
EVENT_GRID_SCHEMA = "EventGridSchema"
CLOUD_EVENT_SCHEMA = "CloudEventSchemaV1_0"
LOCAL_SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"


def topic(account: str, resource_group: str = "local") -> str:
    return (
        f"/subscriptions/{LOCAL_SUBSCRIPTION}/resourceGroups/{resource_group}"
        f"/providers/Microsoft.Storage/storageAccounts/{account}"
    )


def subject(container: str, blob_name: str) -> str:
    return f"/blobServices/default/containers/{container}/blobs/{blob_name}"


def blob_url(service_url: str, container: str, blob_name: str) -> str:
    """The blob's URL as Azure puts it in events: the name percent-encoded, '/' kept."""
    return f"{service_url.rstrip('/')}/{container}/{quote(blob_name, safe='/~')}"


def blob_created(
    *,
    account: str,
    service_url: str,
    container: str,
    blob_name: str,
    etag: str,
    api: str = "PutBlob",
    content_type: str = "application/octet-stream",
    content_length: int = 0,
    blob_type: str = "BlockBlob",
    request_id: str | None = None,
    client_request_id: str | None = None,
    sequencer: str | None = None,
    schema: str = EVENT_GRID_SCHEMA,
    event_id: str | None = None,
    event_time: datetime | None = None,
) -> dict[str, Any]:
    """One BlobCreated event as Event Grid would deliver it."""
    quoted = etag if etag.startswith('"') else f'"{etag}"'
    data = {
        "api": api,
        "clientRequestId": client_request_id or str(uuid.uuid4()),
        "requestId": request_id or str(uuid.uuid4()),
        "eTag": quoted,
        "contentType": content_type,
        "contentLength": content_length,
        "blobType": blob_type,
        "url": blob_url(service_url, container, blob_name),
        "sequencer": sequencer or f"{int(datetime.now(UTC).timestamp() * 1e6):032x}",
        "storageDiagnostics": {"batchId": str(uuid.uuid4())},
    }
    when = (event_time or datetime.now(UTC)).isoformat().replace("+00:00", "Z")
    ident = event_id or str(uuid.uuid4())
    if schema == CLOUD_EVENT_SCHEMA:
        return {
            "specversion": "1.0",
            "id": ident,
            "source": topic(account),
            "type": BLOB_CREATED,
            "subject": subject(container, blob_name),
            "time": when,
            "datacontenttype": "application/json",
            "data": data,
        }
    if schema != EVENT_GRID_SCHEMA:
        raise ValueError(f"unknown event schema {schema!r}")
    return {
        "id": ident,
        "topic": topic(account),
        "subject": subject(container, blob_name),
        "eventType": BLOB_CREATED,
        "eventTime": when,
        "data": data,
        "dataVersion": "",
        "metadataVersion": "1",
    }
