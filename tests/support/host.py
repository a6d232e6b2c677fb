"""Run the app's functions as the Functions host does: the JSON payload goes through the
worker's own converter, then into the indexed function."""

from __future__ import annotations

import json
from typing import Any

from azure.functions.decorators.function_app import Function
from azure.functions.eventgrid import EventGridEventInConverter
from azure.functions.meta import Datum
from azure.functions.timer import TimerRequestConverter

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


def timer_payload(past_due: bool = False) -> dict[str, Any]:
    """The JSON the host sends a timer trigger (TimerInfo: schedule status, past due)."""
    return {
        "Schedule": {"AdjustForDST": True},
        "ScheduleStatus": {
            "Last": "2026-11-22T10:00:00+00:00",
            "Next": "2026-11-22T10:05:00+00:00",
            "LastUpdated": "2026-11-22T10:00:00+00:00",
        },
        "IsPastDue": past_due,
    }


def invoke_timer(function_name: str, payload: dict[str, Any] | None = None) -> None:
    """Call a timer-triggered function with the func.TimerRequest the worker's converter
    makes of ``payload``."""
    timer = TimerRequestConverter.decode(
        Datum(json.dumps(payload or timer_payload()), "json"), trigger_metadata={}
    )
    functions()[function_name].get_user_function()(timer)
