"""``func start``'s Event Grid webhook, for runs without Azure Functions Core Tools.

``FunctionsHostStandIn`` serves ``POST /runtime/webhooks/EventGrid?functionName=<name>`` in
this process, as the host's Event Grid extension does: ``aeg-event-type: Notification`` runs the
function on each event (a JSON array, or one object), ``SubscriptionValidation`` answers 200
with ``{"validationResponse": <the event's data.validationCode>}``, ``Unsubscribe`` 202, any
other header 400. The path is matched without regard to case, as the host routes it.

Run as ``python -m tools.standins.functions_host start --port N`` it behaves like ``func start``
from the outside: it starts a child process (as the host starts its language worker), comes up
after a delay, and serves the webhook until it is stopped. In-process ``make run`` serves it on
``--functions-port`` (7071), so test.http works without Core Tools.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

from tools.standins.base import Answer, Recorded, Scripted, StandIn

WEBHOOK_PATH = "/runtime/webhooks/EventGrid"
EVENT_TYPE_HEADER = "aeg-event-type"


class FunctionsHostStandIn(StandIn):
    """Records every request. With ``run_functions`` it runs each event through the worker's
    converter and the indexed function (as the host does) and answers 202, or 500 when the
    function raises; a functionName the app lacks still gets 202, as the real host answers.
    Otherwise it answers ``status``."""

    def __init__(
        self,
        port: int = 0,
        *,
        run_functions: bool = True,
        status: int = 202,
        lifetime: float = 120.0,
    ) -> None:
        self.run_functions = run_functions
        self.status = status
        super().__init__(lifetime=lifetime, port=port)

    def answer(self, request: Recorded, scripted: Scripted | None) -> Answer:
        if scripted is not None:
            return scripted.status, scripted.body, scripted.headers
        if not self.run_functions:
            return self.status, None, {}
        if request.path.lower() != WEBHOOK_PATH.lower():
            return 404, None, {}
        kind = _header(request, EVENT_TYPE_HEADER).lower()
        try:
            body = request.json()
        except ValueError:
            return 400, {"error": "the body is not JSON"}, {}
        if kind == "subscriptionvalidation":
            code = _validation_code(body)
            if code is None:
                return 400, {"error": "no data.validationCode in the validation event"}, {}
            return 200, {"validationResponse": code}, {}
        if kind == "unsubscribe":
            return 202, None, {}
        if kind != "notification":
            return 400, {"error": f"{EVENT_TYPE_HEADER} must be Notification"}, {}
        events = body if isinstance(body, list) else [body]
        return self._run(request, events), None, {}

    def _run(self, request: Recorded, events: list[Any]) -> int:
        # Imported here: indexing the app is only needed when functions run.
        from tools.eventsource.targets import InProcessTarget, indexed_functions

        name = (request.query.get("functionName") or [""])[0]
        if name not in indexed_functions():
            return 202  # what the real host answers for a function it does not have
        target = InProcessTarget()
        for event in events:
            if not target.deliver(name, event).delivered:
                return 500
        return 202


def _header(request: Recorded, name: str) -> str:
    return next((v for k, v in request.headers.items() if k.lower() == name), "")


def _validation_code(body: Any) -> str | None:
    """data.validationCode of an Event Grid schema validation event (an array of one), or of a
    CloudEvents one (one object whose data may arrive as a JSON string)."""
    event = body[0] if isinstance(body, list) and body else body
    data = event.get("data") if isinstance(event, dict) else None
    if isinstance(data, str):
        try:
            data = json.loads(data)
        except ValueError:
            return None
    code = data.get("validationCode") if isinstance(data, dict) else None
    return code if isinstance(code, str) and code else None


def main(argv: Sequence[str] | None = None) -> int:
    """``func start --port N``, as far as the local loop can tell."""
    parser = argparse.ArgumentParser(prog="python -m tools.standins.functions_host")
    parser.add_argument("command", choices=["start"])
    parser.add_argument("--port", type=int, default=7071)
    parser.add_argument("--startup-delay", type=float, default=1.0)
    args = parser.parse_args(argv)
    worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    time.sleep(args.startup_delay)  # the real host takes a while to come up
    host = FunctionsHostStandIn(args.port, lifetime=24 * 3600.0)
    print(f"functions host stand-in on port {host.port}, worker {worker.pid}", flush=True)
    try:
        host.wait()
    finally:
        worker.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
