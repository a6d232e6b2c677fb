"""Azure ML's batch endpoint, as far as the app uses it: POST /jobs starts a job, GET
/jobs/<name> reads it back (``properties.status``; 404 for a job it does not have)."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from typing import Any

from tools.standins.base import Answer, Recorded, Scripted, StandIn

WORKSPACE = (
    "/subscriptions/0/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws"
)


class JobsEndpoint(StandIn):
    """Checks what the real endpoint checks: a bearer token it accepts, a deployment it has,
    a JSON body with one ``properties.InputData`` entry; the job comes back with ``id`` and
    ``name``. A ``Scripted`` answer with ``then_normal`` creates the job and answers late.

    Job status: a new job is Queued and stays so unless a test changes it (``set_status``,
    or ``job_script[name]``: answers for the next GETs of that job, a status string or a
    ``Scripted``). With ``walk_seconds`` every job walks by itself through Queued, Running
    and Completed over that many seconds, or ends Failed when its name or input contains
    "fail" (the local loop's mode).
    """

    def __init__(
        self,
        accepted_token: str,
        deployments: tuple[str, ...] = ("default",),
        *,
        walk_seconds: float | None = None,
        lifetime: float = 600.0,
        port: int = 0,
    ) -> None:
        self.accepted_token = accepted_token
        self.deployments = deployments
        self.walk_seconds = walk_seconds
        self.jobs: dict[str, dict[str, Any]] = {}
        self.job_script: dict[str, list[str | Scripted]] = {}
        self._started: dict[str, float] = {}
        super().__init__(lifetime=lifetime, port=port)

    def add_job(self, name: str, status: str = "Queued", uri: str = "") -> None:
        """A job the endpoint knows without a POST (tests that seed many open jobs)."""
        inputs = {"input_data": {"JobInputType": "UriFile", "Uri": uri}}
        with self.lock:
            self.jobs[name] = _job(name, status, inputs, None)
            self._started[name] = time.monotonic()

    def set_status(self, name: str, status: str) -> None:
        with self.lock:
            self.jobs[name]["properties"]["status"] = status

    def status_requests(self) -> Counter[str]:
        """How many status GETs each job name got."""
        with self.lock:
            return Counter(
                r.path.removeprefix("/jobs/")
                for r in self.requests
                if r.method == "GET" and r.path.startswith("/jobs/")
            )

    def requests_by_kind(self) -> Counter[str]:
        """Requests counted as ``submit`` (POST /jobs), ``status`` (GET /jobs/<name>), other."""
        kinds: Counter[str] = Counter()
        with self.lock:
            for r in self.requests:
                if r.method == "POST" and r.path == "/jobs":
                    kinds["submit"] += 1
                elif r.method == "GET" and r.path.startswith("/jobs/"):
                    kinds["status"] += 1
                else:
                    kinds["other"] += 1
        return kinds

    @property
    def scoring_uri(self) -> str:
        return f"{self.url}/jobs"

    def clear(self) -> None:
        super().clear()
        with self.lock:
            self.jobs.clear()
            self.job_script.clear()

    def job_uris(self) -> Counter[str]:
        """How many jobs were started for each input URI."""
        with self.lock:
            found = list(self.jobs.values())
        uris: Counter[str] = Counter()
        for job in found:
            (value,) = job["properties"]["InputData"].values()
            uris[value["Uri"]] += 1
        return uris

    def answer(self, request: Recorded, scripted: Scripted | None) -> Answer:
        if scripted is not None and not scripted.then_normal:
            return scripted.status, scripted.body, scripted.headers
        return self._normal(request)

    def _normal(self, request: Recorded) -> Answer:
        if request.headers.get("Authorization") != f"Bearer {self.accepted_token}":
            return 401, {"error": {"code": "Unauthorized", "message": "bad or missing token"}}, {}
        if request.method == "GET" and request.path.startswith("/jobs/"):
            return self._status(request.path.removeprefix("/jobs/"))
        if request.method != "POST" or request.path != "/jobs":
            return 404, {"error": {"code": "NotFound"}}, {}
        deployment = request.headers.get("azureml-model-deployment")
        if deployment is not None and deployment not in self.deployments:
            return 404, {"error": {"code": "DeploymentNotFound", "message": deployment}}, {}
        inputs = _input_data(request)
        if inputs is None:
            return 400, {"error": {"code": "BadRequest", "message": "invalid InputData"}}, {}
        name = f"batchjob-{uuid.uuid4()}"
        job = _job(name, "Queued", inputs, deployment)
        with self.lock:
            self.jobs[name] = job
            self._started[name] = time.monotonic()
        return 200, job, {}

    def _status(self, name: str) -> Answer:
        with self.lock:
            script = self.job_script.get(name)
            step = script.pop(0) if script else None
            job = self.jobs.get(name)
            if isinstance(step, str) and job is not None:
                job["properties"]["status"] = step
            elif job is not None and self.walk_seconds is not None:
                job["properties"]["status"] = self._walked(name, job)
            answer = _snapshot(job) if job is not None else None
        if isinstance(step, Scripted):
            return step.status, step.body, step.headers
        if answer is None:
            return 404, {"error": {"code": "UserError", "message": f"job {name} not found"}}, {}
        return 200, answer, {}

    def _walked(self, name: str, job: dict[str, Any]) -> str:
        assert self.walk_seconds is not None
        elapsed = (time.monotonic() - self._started[name]) / self.walk_seconds
        if elapsed < 1 / 3:
            return "Queued"
        if elapsed < 1:
            return "Running"
        (value,) = job["properties"]["InputData"].values()
        failing = "fail" in name.lower() or "fail" in str(value.get("Uri", "")).lower()
        return "Failed" if failing else "Completed"


def _job(name: str, status: str, inputs: dict[str, Any], deployment: str | None) -> dict[str, Any]:
    return {
        "id": f"{WORKSPACE}/jobs/{name}",
        "name": name,
        "type": "Microsoft.MachineLearningServices/workspaces/jobs",
        "properties": {"status": status, "InputData": inputs, "deployment": deployment},
    }


def _snapshot(job: dict[str, Any]) -> dict[str, Any]:
    """A copy taken under the lock, so an answer never sees a status change half-way."""
    properties = dict(job["properties"])
    return {**job, "properties": properties}


def _input_data(request: Recorded) -> dict[str, Any] | None:
    """The body's InputData when it names exactly one UriFile/UriFolder input, else None."""
    try:
        inputs = request.json()["properties"]["InputData"]
    except (ValueError, KeyError, TypeError):
        return None
    if not isinstance(inputs, dict) or len(inputs) != 1:
        return None
    (value,) = inputs.values()
    if not isinstance(value, dict) or value.get("JobInputType") not in ("UriFile", "UriFolder"):
        return None
    return inputs if value.get("Uri") else None
