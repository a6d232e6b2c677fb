"""Run the app's functions as the Functions host does: the JSON payload goes through the
worker's own converter, then into the indexed function."""

from __future__ import annotations

import json
from typing import Any

from azure.functions.decorators.function_app import Function
from azure.functions.eventgrid import EventGridEventInConverter
from azure.functions.meta import Datum

import function_app
from handlers.context import AppContext
from handlers.outcomes import Outcome
from handlers.pipeline import handle
from tools.eventsource.targets import app_functions


def functions() -> dict[str, Function]:
    """The indexed functions, as the host sees them (one index per process, shared with the
    local tools)."""
    return app_functions()


def _decode(payload: dict[str, Any]) -> Any:
    return EventGridEventInConverter.decode(Datum(json.dumps(payload), "json"), trigger_metadata={})


def invoke(function_name: str, payload: dict[str, Any]) -> None:
    """Call the decorated function with the event the worker's converter makes of
    ``payload``: exactly what the host runs."""
    functions()[function_name].get_user_function()(_decode(payload))


def outcome_of(
    function_name: str, payload: dict[str, Any], ctx: AppContext | None = None
) -> Outcome:
    """What the function comes to for ``payload``: the converter's event, turned back into
    the plain dict by the trigger's own ``event_to_dict``, through the same ``handle`` the
    trigger calls (the trigger returns nothing, so this is how a test reads the outcome;
    tests/test_function_app.py pins that the trigger is exactly this call)."""
    return handle(function_name, function_app.event_to_dict(_decode(payload)), ctx)
