"""Event Grid's routing, read from ``infra/event-subscriptions.json``.

The Bicep templates create the real subscriptions from the same file, so the local event
source and the ops commands route exactly as Azure does. Matching follows Event Grid's rules:
event type in includedEventTypes, subject prefix and suffix (case-insensitive unless
isSubjectCaseSensitive), and every advanced filter (string operators compare
case-insensitively; values within one filter are alternatives, filters are all required).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROUTES_FILE = Path(__file__).resolve().parent.parent / "infra" / "event-subscriptions.json"


def _lower(values: Sequence[Any]) -> list[str]:
    return [str(value).lower() for value in values]


def _string_in(actual: str, values: Sequence[Any]) -> bool:
    return actual.lower() in _lower(values)


def _string_not_in(actual: str, values: Sequence[Any]) -> bool:
    return actual.lower() not in _lower(values)


def _begins(actual: str, values: Sequence[Any]) -> bool:
    return any(actual.lower().startswith(value) for value in _lower(values))


def _ends(actual: str, values: Sequence[Any]) -> bool:
    return any(actual.lower().endswith(value) for value in _lower(values))


def _contains(actual: str, values: Sequence[Any]) -> bool:
    return any(value in actual.lower() for value in _lower(values))


# The advanced-filter operators this stand-in implements; a route using any other is refused
# when the file is loaded, so local routing can never silently differ from Azure's.
OPERATORS: dict[str, Callable[[str, Sequence[Any]], bool]] = {
    "StringIn": _string_in,
    "StringNotIn": _string_not_in,
    "StringBeginsWith": _begins,
    "StringEndsWith": _ends,
    "StringContains": _contains,
}


@dataclass(frozen=True)
class AdvancedFilter:
    operator: str
    key: str
    values: tuple[str, ...]

    def matches(self, event: Mapping[str, Any]) -> bool:
        actual = _lookup(event, self.key)
        if not isinstance(actual, str):
            # Event Grid: a missing key fails every operator except the Not* ones.
            return self.operator.startswith("StringNot")
        return OPERATORS[self.operator](actual, self.values)


@dataclass(frozen=True)
class Route:
    """One event subscription: what it matches, where it delivers, how it retries."""

    name: str
    function: str
    schema: str
    included_event_types: tuple[str, ...]
    subject_begins_with: str
    subject_ends_with: str
    case_sensitive: bool
    advanced_filters: tuple[AdvancedFilter, ...]
    max_events_per_batch: int
    max_delivery_attempts: int
    event_ttl_minutes: int

    @property
    def container(self) -> str:
        """The container the subject prefix names."""
        return self.subject_begins_with.split("/containers/", 1)[1].split("/", 1)[0]

    @property
    def folder(self) -> str:
        """The blob-name prefix within the container ('' for the whole container)."""
        return self.subject_begins_with.split("/blobs/", 1)[1]

    def matches(self, event: Mapping[str, Any]) -> bool:
        event_type = event.get("eventType", event.get("type"))
        if self.included_event_types and event_type not in self.included_event_types:
            return False
        subject = event.get("subject")
        if not isinstance(subject, str):
            return False
        shown = subject if self.case_sensitive else subject.lower()
        begins = (
            self.subject_begins_with if self.case_sensitive else self.subject_begins_with.lower()
        )
        ends = self.subject_ends_with if self.case_sensitive else self.subject_ends_with.lower()
        if not shown.startswith(begins) or not shown.endswith(ends):
            return False
        return all(item.matches(event) for item in self.advanced_filters)


@dataclass(frozen=True)
class Routes:
    containers: dict[str, str]
    subscriptions: tuple[Route, ...]

    def matching(self, event: Mapping[str, Any]) -> list[Route]:
        return [route for route in self.subscriptions if route.matches(event)]

    def by_name(self, name: str) -> Route:
        for route in self.subscriptions:
            if route.name.lower() == name.lower():
                return route
        raise KeyError(f"no subscription named {name!r} in {ROUTES_FILE.name}")


def load_routes(path: Path = ROUTES_FILE, folder_marker: str | None = None) -> Routes:
    """Read and check the routes file; raises ValueError naming what is wrong.

    ``folder_marker`` (folder scope) makes every route marked ``markerFilter`` filter on
    ``subjectEndsWith: /<marker>``, as the Bicep does with batchFolderMarker.
    """
    document = json.loads(path.read_text(encoding="utf-8"))
    return parse_routes(document, folder_marker)


# Event Grid refuses a subscription with more than 25 advanced filters, or more than 25
# values across all of its advanced filters (Event Grid docs, "Event filtering", Limitations).
MAX_ADVANCED_FILTERS = 25
MAX_ADVANCED_FILTER_VALUES = 25


def filter_limit_problems(flt: Mapping[str, Any]) -> list[str]:
    """What in one subscription's filter Event Grid would refuse for its size."""
    advanced = flt.get("advancedFilters") or []
    values = sum(len(item.get("values") or []) for item in advanced)
    problems = []
    if len(advanced) > MAX_ADVANCED_FILTERS:
        problems.append(
            f"{len(advanced)} advanced filters; Event Grid allows {MAX_ADVANCED_FILTERS}"
        )
    if values > MAX_ADVANCED_FILTER_VALUES:
        problems.append(
            f"{values} advanced filter values; Event Grid allows {MAX_ADVANCED_FILTER_VALUES} "
            "across all advanced filters of a subscription"
        )
    return problems


def parse_routes(document: Mapping[str, Any], folder_marker: str | None = None) -> Routes:
    containers = dict(document["containers"])
    routes = []
    for entry in document["subscriptions"]:
        flt = entry["filter"]
        for problem in filter_limit_problems(flt):
            raise ValueError(f"subscription {entry['name']}: {problem}")
        advanced = []
        for item in flt.get("advancedFilters", []):
            if item["operatorType"] not in OPERATORS:
                raise ValueError(
                    f"subscription {entry['name']}: advanced filter operator "
                    f"{item['operatorType']} is not implemented by the local event source"
                )
            advanced.append(
                AdvancedFilter(item["operatorType"], item["key"], tuple(item.get("values", [])))
            )
        prefix = flt.get("subjectBeginsWith", "")
        if "/blobs/" not in prefix or not prefix.endswith("/"):
            raise ValueError(
                f"subscription {entry['name']}: subjectBeginsWith {prefix!r} must end with "
                "/blobs/ or /blobs/<folder>/"
            )
        retry = entry.get("retryPolicy", {})
        routes.append(
            Route(
                name=entry["name"],
                function=entry["function"],
                schema=entry.get("eventDeliverySchema", "EventGridSchema"),
                included_event_types=tuple(flt.get("includedEventTypes", [])),
                subject_begins_with=prefix,
                subject_ends_with=(
                    f"/{folder_marker}"
                    if folder_marker and entry.get("markerFilter")
                    else flt.get("subjectEndsWith", "")
                ),
                case_sensitive=bool(flt.get("isSubjectCaseSensitive", False)),
                advanced_filters=tuple(advanced),
                max_events_per_batch=int(entry.get("maxEventsPerBatch", 1)),
                max_delivery_attempts=int(retry.get("maxDeliveryAttempts", 30)),
                event_ttl_minutes=int(retry.get("eventTimeToLiveInMinutes", 1440)),
            )
        )
    return Routes(containers, tuple(routes))


def _lookup(event: Mapping[str, Any], key: str) -> Any:
    """Event Grid's key syntax: 'subject', 'data.api', nested with dots."""
    value: Any = event
    for part in key.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value
