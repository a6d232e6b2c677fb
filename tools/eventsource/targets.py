"""Where the event source delivers: the Functions host's Event Grid webhook (``func
start``), or the app's functions called in this process through the worker's own converter.

Each attempt comes back as a ``Result`` carrying Event Grid's name for what happened
(``lastDeliveryOutcome``), which the dispatcher uses to retry or dead-letter.
"""

from __future__ import annotations

import functools
import http.client
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote, urlsplit

from azure.functions.decorators.function_app import Function

SUCCESS_STATUSES = frozenset({200, 201, 202, 203, 204})
# Event Grid's delivery outcome for an HTTP status; anything else is GenericError.
OUTCOMES = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    408: "TimedOut",
    413: "RequestEntityTooLarge",
    429: "Busy",
    503: "Busy",
}


@dataclass(frozen=True)
class Result:
    delivered: bool
    outcome: str  # Succeeded, BadRequest, TimedOut, GenericError, ...
    status: int | None
    detail: str = ""


def result_for_status(status: int, detail: str = "") -> Result:
    if status in SUCCESS_STATUSES:
        return Result(True, "Succeeded", status, detail)
    return Result(False, OUTCOMES.get(status, "GenericError"), status, detail)


class Target(Protocol):
    description: str

    def available(self) -> bool:
        """False while the destination cannot be reached at all (host not started yet)."""
        ...

    def deliver(self, function: str, event: Mapping[str, Any]) -> Result: ...


class WebhookTarget:
    """The Functions host's Event Grid endpoint, as ``func start`` serves it."""

    def __init__(self, base_url: str, timeout: float = 30.0) -> None:
        parts = urlsplit(base_url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"webhook base URL must be http://host:port, got {base_url!r}")
        self.host = parts.hostname
        self.port = parts.port or 80
        self.timeout = timeout
        self.description = f"webhook {base_url.rstrip('/')}/runtime/webhooks/EventGrid"

    def path(self, function: str) -> str:
        return f"/runtime/webhooks/EventGrid?functionName={quote(function, safe='')}"

    def available(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=1):
                return True
        except OSError:
            return False

    def deliver(self, function: str, event: Mapping[str, Any]) -> Result:
        body = json.dumps([event]).encode("utf-8")
        connection = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            connection.request(
                "POST",
                self.path(function),
                body=body,
                headers={"Content-Type": "application/json", "aeg-event-type": "Notification"},
            )
            response = connection.getresponse()
            text = response.read(2000).decode("utf-8", "replace")
        except TimeoutError:
            return Result(False, "TimedOut", 408, f"no answer within {self.timeout} s")
        except OSError as exc:
            return Result(False, "GenericError", None, f"{type(exc).__name__}: {exc}")
        finally:
            connection.close()
        return result_for_status(response.status, text[:200])


UserFunction = Callable[[Any], Any]


_index_lock = threading.Lock()


@functools.cache
def _index() -> dict[str, Function]:
    import function_app

    # Indexing warns on the root logger that auth levels apply to HTTP functions only.
    logging.disable(logging.WARNING)
    try:
        functions = function_app.app.get_functions()
    finally:
        logging.disable(logging.NOTSET)
    return {str(fn.get_function_name()): fn for fn in functions}


def app_functions() -> dict[str, Function]:
    """The app's functions as the host indexes them, bindings included. An app can be
    indexed once a process, so everything in it (tests too) shares this index."""
    with _index_lock:
        return _index()


def indexed_functions() -> dict[str, UserFunction]:
    """The app's function bodies by name, from the one index."""
    return {name: fn.get_user_function() for name, fn in app_functions().items()}


class InProcessTarget:
    """Call the indexed functions here, with the event decoded by the worker's converter."""

    description = "in-process (function_app imported here)"

    def __init__(
        self, resolve: Callable[[str], UserFunction] | None = None, timeout: float = 30.0
    ) -> None:
        self._resolve = resolve or (lambda name: indexed_functions()[name])
        self.timeout = timeout

    def available(self) -> bool:
        return True

    def deliver(self, function: str, event: Mapping[str, Any]) -> Result:
        from azure.functions.eventgrid import EventGridEventInConverter
        from azure.functions.meta import Datum

        try:
            user_function = self._resolve(function)
        except KeyError:
            # The host would answer 202 and run nothing; here the mistake is made visible.
            return Result(False, "NotFound", 404, f"function_app has no function {function!r}")
        try:
            decoded = EventGridEventInConverter.decode(
                Datum(json.dumps(event), "json"), trigger_metadata={}
            )
        except Exception as exc:
            return Result(False, "BadRequest", 400, f"the converter refused the event: {exc}")
        started = time.monotonic()
        try:
            user_function(decoded)
        except Exception as exc:
            # The host answers 500 when the function raises.
            return Result(False, "GenericError", 500, f"{type(exc).__name__}: {exc}"[:300])
        elapsed = time.monotonic() - started
        if elapsed > self.timeout:
            return Result(False, "TimedOut", 408, f"the function took {elapsed:.1f} s")
        return Result(True, "Succeeded", 200)
