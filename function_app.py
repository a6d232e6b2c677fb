"""Azure Functions entry point: wiring only. The work is in ``handlers/``.

No ``from __future__ import annotations`` here: the Python worker checks each trigger
parameter's annotation as a real class.
"""

import logging
from datetime import datetime
from typing import Any

import azure.functions as func

from handlers.batch_tracking import track
from handlers.pipeline import handle

app = func.FunctionApp()
# The SDKs log every HTTP request at INFO; our outcome lines are the ones worth reading.
logging.getLogger("azure").setLevel(logging.WARNING)


def event_to_dict(event: Any) -> dict[str, Any]:
    """The event as the JSON Event Grid sent, in whichever schema it used."""
    if isinstance(event, func.CloudEvent):
        envelope = {"specversion": event.specversion, "source": event.source, "type": event.type}
        when = {"time": _iso(event.time)}
    elif isinstance(event, func.EventGridEvent):
        envelope = {"topic": event.topic, "eventType": event.event_type}
        when = {"eventTime": _iso(event.event_time), "dataVersion": event.data_version}
    else:
        raise TypeError(f"not an Event Grid event: {type(event).__name__}")
    return {"id": event.id, **envelope, "subject": event.subject, **when, "data": event.get_json()}


def _iso(when: datetime | None) -> str | None:
    return when.isoformat() if when else None


# The annotation says EventGridEvent because the worker accepts one class there; the
# converter hands over a CloudEvent instead when the subscription uses CloudEvents 1.0.
@app.function_name("create_thumbnail")
@app.event_grid_trigger(arg_name="event")
def create_thumbnail(event: func.EventGridEvent) -> None:
    handle("create_thumbnail", event_to_dict(event))


@app.function_name("dispatch_batch_job")
@app.event_grid_trigger(arg_name="event")
def dispatch_batch_job(event: func.EventGridEvent) -> None:
    handle("dispatch_batch_job", event_to_dict(event))


# The schedule is an app setting (%...% is resolved by the host), so it must be set wherever
# the host runs: Bicep, local.settings.json, the local loop.
@app.function_name("track_batch_jobs")
@app.timer_trigger(arg_name="timer", schedule="%BATCH_TRACK_SCHEDULE%", run_on_startup=False)
def track_batch_jobs(timer: func.TimerRequest) -> None:
    track(past_due=timer.past_due)
