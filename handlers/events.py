"""Turn a BlobCreated event of either schema into a checked, typed value.

Accepts the Event Grid schema and CloudEvents 1.0 as plain dicts. Everything in the event
comes from outside, so every field is checked; a blob is only ever addressed through the
configured account, never by fetching the event's url.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from handlers.errors import InvalidEventError
from handlers.settings import is_loopback

logger = logging.getLogger(__name__)

BLOB_CREATED = "Microsoft.Storage.BlobCreated"
# ADLS Gen2 accounts emit CreateFile (an empty file) and then FlushWithClose for one file.
IGNORED_APIS = frozenset({"CreateFile"})

MAX_BLOB_NAME = 1024
_MAX_FIELD = 4096
_SUBJECT = re.compile(
    r"^/?blobServices/default/containers/(?P<container>[^/]+)/blobs/(?P<blob>.+)$", re.S
)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_ACCOUNT_IN_TOPIC = re.compile(r"/providers/Microsoft\.Storage/storageAccounts/([^/]+)", re.I)


@dataclass(frozen=True)
class AccountEndpoint:
    """The one storage account the app may touch, as its blob endpoint."""

    name: str
    blob_url: str  # https://<account>.blob.core.windows.net or http://127.0.0.1:10000/<account>

    def locate(self, url: str) -> tuple[str, str] | None:
        """Return (container, blob name) when ``url`` names a blob of this account."""
        ours = urlsplit(self.blob_url)
        theirs = urlsplit(url)
        if theirs.query or theirs.fragment or theirs.username or theirs.password:
            return None
        if not _same_host(ours.hostname or "", theirs.hostname or "", self.name):
            return None
        if _port(ours.scheme, ours.port) != _port(theirs.scheme, theirs.port):
            return None
        prefix = ours.path.rstrip("/") + "/"
        if not theirs.path.startswith(prefix):
            return None
        container, _, encoded_blob = theirs.path[len(prefix) :].partition("/")
        if not container or not encoded_blob:
            return None
        return unquote(container), unquote(encoded_blob, errors="strict")


@dataclass(frozen=True)
class BlobCreated:
    event_id: str
    schema: str  # "EventGridSchema" or "CloudEventSchemaV1_0"
    subject: str
    account: str
    container: str
    blob_name: str
    url: str
    etag: str
    api: str
    content_type: str | None
    content_length: int | None
    sequencer: str | None

    @property
    def version(self) -> str:
        """The blob version this event announces: its eTag without quotes."""
        return self.etag.strip('"')


@dataclass(frozen=True)
class Ignored:
    """An event this app does not act on, and why."""

    event_id: str
    reason: str


def parse_event(raw: object, account: AccountEndpoint) -> BlobCreated | Ignored:
    """Check ``raw`` and return the BlobCreated it announces, or why it is ignored.

    Raises InvalidEventError for anything malformed or outside the configured account.
    """
    if not isinstance(raw, Mapping):
        raise InvalidEventError(f"event is a {type(raw).__name__}, not a JSON object")
    event_id = _text(raw, "id")
    if "specversion" in raw:
        schema, type_field = "CloudEventSchemaV1_0", "type"
    else:
        schema, type_field = "EventGridSchema", "eventType"
    event_type = _text(raw, type_field)
    if event_type != BLOB_CREATED:
        return Ignored(event_id, f"event type {event_type} is not {BLOB_CREATED}")
    data = raw.get("data")
    if not isinstance(data, Mapping):
        raise InvalidEventError(f"event {event_id}: data is missing or not a JSON object")
    api = _text(data, "api", where="data.")
    if api in IGNORED_APIS:
        return Ignored(event_id, f"api {api} announces an empty file; FlushWithClose follows")

    subject = _text(raw, "subject")
    match = _SUBJECT.match(subject)
    if match is None:
        raise InvalidEventError(
            f"event {event_id}: subject {subject[:200]!r} is not "
            "/blobServices/default/containers/<container>/blobs/<name>"
        )
    _check_topic(raw, schema, account, event_id)

    url = _text(data, "url", where="data.")
    located = _locate(account, url)
    if located is None:
        raise InvalidEventError(
            f"event {event_id}: data.url {url[:300]!r} is not a blob of storage account "
            f"{account.name}; it was not fetched"
        )
    container, blob_name = located
    subject_blob = match["blob"]
    if container != match["container"] or blob_name not in (subject_blob, _unquote(subject_blob)):
        raise InvalidEventError(
            f"event {event_id}: subject names {match['container']}/{subject_blob[:300]!r} "
            f"but data.url names {container}/{blob_name[:300]!r}"
        )
    check_blob_name(blob_name, event_id)

    return BlobCreated(
        event_id=event_id,
        schema=schema,
        subject=subject,
        account=account.name,
        container=container,
        blob_name=blob_name,
        url=url,
        etag=_text(data, "eTag", where="data."),
        api=api,
        content_type=_optional_text(data, "contentType"),
        content_length=_optional_length(data, event_id),
        sequencer=_optional_text(data, "sequencer"),
    )


def check_blob_name(name: str, event_id: str) -> None:
    """Refuse names that cannot be addressed or logged safely."""
    if len(name) > MAX_BLOB_NAME:
        raise InvalidEventError(
            f"event {event_id}: blob name has {len(name)} characters; the limit is {MAX_BLOB_NAME}"
        )
    if _CONTROL.search(name):
        raise InvalidEventError(
            f"event {event_id}: blob name {name[:200]!r} contains control characters"
        )
    if any(segment in (".", "..") for segment in name.split("/")):
        raise InvalidEventError(
            f"event {event_id}: blob name {name[:200]!r} has a '.' or '..' segment, "
            "which URLs collapse into another name"
        )


def _locate(account: AccountEndpoint, url: str) -> tuple[str, str] | None:
    try:
        return account.locate(url)
    except (ValueError, UnicodeDecodeError):
        return None


def _unquote(text: str) -> str:
    try:
        return unquote(text, errors="strict")
    except UnicodeDecodeError:
        return text


def _check_topic(
    raw: Mapping[str, Any], schema: str, account: AccountEndpoint, event_id: str
) -> None:
    topic = raw.get("topic" if schema == "EventGridSchema" else "source")
    if not isinstance(topic, str):
        return
    found = _ACCOUNT_IN_TOPIC.search(topic)
    if found and found[1].lower() != account.name.lower():
        raise InvalidEventError(
            f"event {event_id}: topic names storage account {found[1]!r}, "
            f"not the configured {account.name!r}"
        )


def _text(obj: Mapping[str, Any], key: str, where: str = "") -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value:
        shown = "missing" if value is None else f"a {type(value).__name__}, not a non-empty string"
        event_id = obj.get("id") if isinstance(obj.get("id"), str) else "?"
        raise InvalidEventError(f"event {str(event_id)[:100]}: {where}{key} is {shown}")
    if len(value) > _MAX_FIELD:
        raise InvalidEventError(f"{where}{key} has {len(value)} characters; at most {_MAX_FIELD}")
    return value


def _optional_text(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > _MAX_FIELD:
        raise InvalidEventError(f"data.{key} is not a string of at most {_MAX_FIELD} characters")
    return value


def _optional_length(data: Mapping[str, Any], event_id: str) -> int | None:
    value = data.get("contentLength")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidEventError(
            f"event {event_id}: data.contentLength {value!r} is not a non-negative integer"
        )
    return value


def _same_host(ours: str, theirs: str, account: str) -> bool:
    ours, theirs = ours.lower(), theirs.lower()
    if ours == theirs or (is_loopback(ours) and is_loopback(theirs)):
        return True
    # ADLS Gen2 events name the dfs endpoint of the same account.
    prefix = f"{account.lower()}.blob."
    return ours.startswith(prefix) and theirs == f"{account.lower()}.dfs." + ours[len(prefix) :]


def _port(scheme: str, port: int | None) -> int:
    return port if port is not None else (443 if scheme == "https" else 80)
