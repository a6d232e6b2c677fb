"""``func start``'s Event Grid webhook, for runs without Azure Functions Core Tools.

``FunctionsHostStandIn`` serves ``POST /runtime/webhooks/EventGrid?functionName=<name>`` in
this process. Run as ``python -m tools.standins.functions_host start --port N`` it behaves
like ``func start`` from the outside: it starts a child process (as the host starts its
language worker), comes up after a delay, and serves the webhook until it is stopped.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Sequence

from tools.standins.base import Answer, Recorded, Scripted, StandIn

WEBHOOK_PATH = "/runtime/webhooks/EventGrid"


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
        return self._status(request), None, {}

    def _status(self, request: Recorded) -> int:
        if not self.run_functions:
            return self.status
        # Imported here: indexing the app is only needed when functions run.
        from tools.eventsource.targets import InProcessTarget, indexed_functions

        name = (request.query.get("functionName") or [""])[0]
        if request.path != WEBHOOK_PATH or name not in indexed_functions():
            return 202
        target = InProcessTarget()
        for event in request.json():
            if not target.deliver(name, event).delivered:
                return 500
        return 202


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
