"""``make run ARGS="--batch-endpoint local"``: a batch endpoint for the local loop.

Starts the managed-identity stand-in (the token the app asks for) and the jobs stand-in in
its walking mode (each job goes Queued, Running, then Completed, or Failed when the file's
name contains "fail", over a few seconds), points BATCH_ENDPOINT_URI at it and makes the
tracker run every few seconds: ``func start`` reads BATCH_TRACK_SCHEDULE itself; in-process,
a thread calls the indexed ``track_batch_jobs`` with the TimerRequest the worker's
converter makes, as the host would.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from azure.functions.meta import Datum
from azure.functions.timer import TimerRequestConverter

from tools.standins import JobsEndpoint, ManagedIdentityEndpoint

logger = logging.getLogger("local_loop")

TIMER_FUNCTION = "track_batch_jobs"
# Inherited settings that would point DefaultAzureCredential somewhere else than the stand-in.
_CREDENTIAL_SETTINGS = ("AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_CLIENT_SECRET", "MSI_ENDPOINT")


@dataclass
class LocalBatch:
    """The stand-ins, and the in-process timer when there is one; ``stop`` ends them all."""

    identity: ManagedIdentityEndpoint
    jobs: JobsEndpoint
    every: float
    _stop: threading.Event = field(default_factory=threading.Event)
    _timer: threading.Thread | None = None

    @classmethod
    def start(cls, walk_seconds: float, every: float) -> LocalBatch:
        # They stop with the loop; the lifetime only bounds a loop that is never stopped.
        week = 7 * 24 * 3600.0
        identity = ManagedIdentityEndpoint(lifetime=week)
        jobs = JobsEndpoint(identity.token, walk_seconds=walk_seconds, lifetime=week)
        return cls(identity, jobs, every)

    def environment(self, env: dict[str, str]) -> dict[str, str]:
        """``env`` with the endpoint, the identity and a schedule of every ``every`` s."""
        changed = {name: value for name, value in env.items() if name not in _CREDENTIAL_SETTINGS}
        changed.update(self.identity.environment())
        changed["BATCH_ENDPOINT_URI"] = self.jobs.scoring_uri
        changed["BATCH_TRACK_SCHEDULE"] = f"*/{max(1, round(self.every))} * * * * *"
        return changed

    def run_timer(self, function: Callable[[object], None]) -> None:
        """Call the timer function every ``every`` seconds, as the host would."""

        def loop() -> None:
            payload = json.dumps({"Schedule": {}, "ScheduleStatus": {}, "IsPastDue": False})
            while not self._stop.wait(self.every):
                timer = TimerRequestConverter.decode(Datum(payload, "json"), trigger_metadata={})
                try:
                    function(timer)
                except Exception:
                    logger.exception("%s raised", TIMER_FUNCTION)

        self._timer = threading.Thread(target=loop, name=TIMER_FUNCTION, daemon=True)
        self._timer.start()

    def describe(self) -> str:
        return (
            f"local batch endpoint {self.jobs.scoring_uri} (jobs walk Queued, Running, "
            f"Completed over {self.jobs.walk_seconds:g} s; a name with 'fail' ends Failed); "
            f"{TIMER_FUNCTION} every {self.every:g} s"
        )

    def stop(self) -> None:
        self._stop.set()
        if self._timer is not None:
            self._timer.join(timeout=30)
        self.jobs.stop()
        self.identity.stop()
