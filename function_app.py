"""Azure Functions entry point: wiring only. The work is in ``handlers/``.

No ``from __future__ import annotations`` here: the Python worker checks each trigger
parameter's annotation as a real class.
"""

import logging
from typing import Any

import azure.functions as func

from handlers.pipeline import handle

app = func.FunctionApp()
# The SDKs log every HTTP request at INFO; our outcome lines are the ones worth reading.
logging.getLogger("azure").setLevel(logging.WARNING)


def event_to_dict(event: Any) -> dict[str, Any]:
    """The event as the JSON Event Grid sent, in whichever schema it used."""
    if isinstance(event, func.CloudEvent):
        return {
            "specversion": event.specversion,
            "id": event.id,
            "source": event.source,
            "type": event.type,
            "subject": event.subject,
            "time": event.time.isoformat() if event.time else None,
            "data": event.get_json(),
        }
    if isinstance(event, func.EventGridEvent):
        return {
            "id": event.id,
            "topic": event.topic,
            "subject": event.subject,
            "eventType": event.event_type,
            "eventTime": event.event_time.isoformat() if event.event_time else None,
            "data": event.get_json(),
            "dataVersion": event.data_version,
        }
    raise TypeError(f"not an Event Grid event: {type(event).__name__}")


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
