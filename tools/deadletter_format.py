"""Event Grid's dead-letter blobs: the name it gives them and what they hold, in one place
for the event source (which writes them like Event Grid), the replay command (which reads
them) and the tests.

Name: ``<SUBSCRIPTION NAME IN UPPER CASE>/<yyyy>/<m>/<d>/<h>/<id>.json``, the UTC hour the
events were dead-lettered in, not zero-padded. Content: a JSON array of the original events,
each with the dead-letter fields below added (lowercase for CloudEvents, whose extension
attributes are lowercase).
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

REASON = "deadLetterReason"
ATTEMPTS = "deliveryAttempts"
LAST_OUTCOME = "lastDeliveryOutcome"
LAST_STATUS = "lastHttpStatusCode"
PUBLISH_TIME = "publishTime"
LAST_ATTEMPT_TIME = "lastDeliveryAttemptTime"
FIELDS = (REASON, ATTEMPTS, LAST_OUTCOME, LAST_STATUS, PUBLISH_TIME, LAST_ATTEMPT_TIME)
_FIELDS_LOWER = frozenset(name.lower() for name in FIELDS)

_NAME = re.compile(
    r"^(?P<subscription>[^/]+)/(?P<year>\d{4})/(?P<month>\d{1,2})/(?P<day>\d{1,2})"
    r"/(?P<hour>\d{1,2})/(?P<id>[^/]+)\.json$"
)


class MalformedError(Exception):
    """Not a dead-letter blob as Event Grid writes it; the message says why."""


@dataclass(frozen=True)
class DeadLetterName:
    subscription: str
    hour: datetime  # the UTC hour Event Grid dead-lettered the events in
    id: str


def blob_name(subscription: str, when: datetime, blob_id: str | None = None) -> str:
    """Where Event Grid puts the events of ``subscription`` dead-lettered at ``when`` (UTC)."""
    when = when.astimezone(UTC)
    return (
        f"{subscription.upper()}/{when.year}/{when.month}/{when.day}/{when.hour}/"
        f"{blob_id or uuid.uuid4()}.json"
    )


def parse_name(name: str) -> DeadLetterName:
    match = _NAME.match(name)
    if match is None:
        raise MalformedError(
            "the name is not <SUBSCRIPTION>/<yyyy>/<m>/<d>/<h>/<id>.json as Event Grid writes it"
        )
    try:
        hour = datetime(
            int(match["year"]),
            int(match["month"]),
            int(match["day"]),
            int(match["hour"]),
            tzinfo=UTC,
        )
    except ValueError as exc:
        raise MalformedError(f"the name's date is not a date: {exc}") from None
    return DeadLetterName(match["subscription"], hour, match["id"])


@dataclass(frozen=True)
class Attempts:
    """What Event Grid records about the delivery that gave up."""

    reason: str
    attempts: int
    last_outcome: str
    last_status: int | None
    publish_time: float  # epoch seconds
    last_attempt: float | None  # epoch seconds


def dead_lettered(
    event: dict[str, Any], attempts: Attempts, *, cloud_event: bool
) -> dict[str, Any]:
    """``event`` with the dead-letter fields added, as one item of the blob's array."""
    fields: dict[str, Any] = {
        REASON: attempts.reason,
        ATTEMPTS: attempts.attempts,
        LAST_OUTCOME: attempts.last_outcome,
    }
    if attempts.last_status is not None:
        fields[LAST_STATUS] = attempts.last_status
    fields[PUBLISH_TIME] = _timestamp(attempts.publish_time)
    if attempts.last_attempt is not None:
        fields[LAST_ATTEMPT_TIME] = _timestamp(attempts.last_attempt)
    if cloud_event:
        fields = {name.lower(): value for name, value in fields.items()}
    return {**event, **fields}


def encode(events: list[dict[str, Any]]) -> bytes:
    return json.dumps(events, indent=2).encode("utf-8")


@dataclass(frozen=True)
class DeadLetter:
    events: list[dict[str, Any]]  # as first delivered: the dead-letter fields removed
    reason: str  # why Event Grid gave up, from the first event


def parse_blob(data: bytes) -> DeadLetter:
    """The events of one dead-letter blob; MalformedError when it is not one."""
    try:
        document = json.loads(data)
    except ValueError as exc:
        raise MalformedError(f"not JSON: {exc}") from None
    if not isinstance(document, list) or not document:
        raise MalformedError("not a non-empty JSON array of events")
    events = []
    for index, event in enumerate(document):
        if not isinstance(event, dict):
            raise MalformedError(f"item {index} is a {type(event).__name__}, not an event")
        events.append({k: v for k, v in event.items() if k.lower() not in _FIELDS_LOWER})
    added = {k.lower(): v for k, v in document[0].items()}
    reason = (
        f"{added.get(REASON.lower(), '?')} after {added.get(ATTEMPTS.lower(), '?')} "
        f"attempts, last {added.get(LAST_OUTCOME.lower(), '?')}"
    )
    return DeadLetter(events, reason)


def _timestamp(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")
