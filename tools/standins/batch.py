"""Azure ML's batch endpoint, as far as the app uses it: POST /jobs starts a job, GET
/jobs/<name> reads it back (``properties.status``; 404 for a job it does not have).

The body is read in azure-ai-ml's camelCase form (``inputData``, ``outputData``, ``name``)
or the older PascalCase one (``InputData``) the seed tutorial posts."""

from __future__ import annotations

import re
import time
import uuid
from collections import Counter
from typing import Any

from tools.standins.base import Answer, Recorded, Scripted, StandIn

_JOB_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,254}$")
WORKSPACE = (
    "/subscriptions/0/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws"
)


class JobsEndpoint(StandIn):
    """Checks what the real endpoint checks: a bearer token it accepts, a deployment it has,
    a JSON body with one input entry; the job comes back with ``id`` and ``name``: the name
    the body asked for (``honour_names``, as the service does; a name in use answers 409),
    else one of its own. A ``Scripted`` answer with ``then_normal`` creates the job and
    answers late.

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
        honour_names: bool = True,
        lifetime: float = 600.0,
        port: int = 0,
    ) -> None:
        self.accepted_token = accepted_token
        self.honour_names = honour_names
        self.deployments = deployments
        self.walk_seconds = walk_seconds
        self.jobs: dict[str, dict[str, Any]] = {}
        self.job_script: dict[str, list[str | Scripted]] = {}
        self._started: dict[str, float] = {}
        super().__init__(lifetime=lifetime, port=port)

    def add_job(self, name: str, status: str = "Queued", uri: str = "") -> None:
        """A job the endpoint knows without a POST (tests that seed many open jobs)."""
        inputs = {"input_data": {"jobInputType": "UriFile", "uri": uri}}
        with self.lock:
            self.jobs[name] = _job(name, status, {"inputData": inputs}, None)
            self._started[name] = time.monotonic()

    def remove_job(self, name: str) -> None:
        """Delete a job, as a workspace clean-up does."""
        with self.lock:
            del self.jobs[name]

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
            uris[_input_uri(job)] += 1
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
        body = _job_body(request)
        if body is None:
            return 400, {"error": {"code": "BadRequest", "message": "invalid inputData"}}, {}
        asked = request.json()["properties"].get("name")
        if asked is not None and not (isinstance(asked, str) and _JOB_NAME.match(asked)):
            return 400, {"error": {"code": "UserError", "message": f"bad job name {asked!r}"}}, {}
        name = asked if asked and self.honour_names else f"batchjob-{uuid.uuid4()}"
        with self.lock:
            if name in self.jobs:
                message = f"a job named {name} exists"
                return 409, {"error": {"code": "UserError", "message": message}}, {}
            job = _job(name, "Queued", body, deployment)
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
        failing = "fail" in name.lower() or "fail" in _input_uri(job).lower()
        return "Failed" if failing else "Completed"


def _job(name: str, status: str, body: dict[str, Any], deployment: str | None) -> dict[str, Any]:
    return {
        "id": f"{WORKSPACE}/jobs/{name}",
        "name": name,
        "type": "Microsoft.MachineLearningServices/workspaces/jobs",
        "properties": {"status": status, **body, "deployment": deployment},
    }


def _input_uri(job: dict[str, Any]) -> str:
    properties = job["properties"]
    (value,) = properties["inputData"].values()
    return str(value["uri"])


def _snapshot(job: dict[str, Any]) -> dict[str, Any]:
    """A copy taken under the lock, so an answer never sees a status change half-way."""
    properties = dict(job["properties"])
    return {**job, "properties": properties}


def _job_body(request: Recorded) -> dict[str, Any] | None:
    """The job's inputs and outputs, camelCase, when the body names exactly one
    UriFile/UriFolder input (and outputs, if any, of the same kinds), else None."""
    try:
        properties = request.json()["properties"]
    except (ValueError, KeyError, TypeError):
        return None
    if not isinstance(properties, dict):
        return None
    if "InputData" in properties:  # the seed's PascalCase form
        old = properties["InputData"]
        if not isinstance(old, dict) or len(old) != 1:
            return None
        ((key, value),) = old.items()
        if not isinstance(value, dict):
            return None
        properties = {
            "inputData": {key: {"jobInputType": value.get("JobInputType"), "uri": value.get("Uri")}}
        }
    inputs = properties.get("inputData")
    if not isinstance(inputs, dict) or len(inputs) != 1 or not _entries(inputs, "jobInputType"):
        return None
    outputs = properties.get("outputData", {})
    if not isinstance(outputs, dict) or (outputs and not _entries(outputs, "jobOutputType")):
        return None
    return {"inputData": inputs, **({"outputData": outputs} if outputs else {})}


def _entries(entries: dict[str, Any], kind: str) -> bool:
    return all(
        isinstance(value, dict)
        and value.get(kind) in ("UriFile", "UriFolder")
        and isinstance(value.get("uri"), str)
        and value["uri"]
        for value in entries.values()
    )
