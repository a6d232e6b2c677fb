"""Azure ML's batch endpoint, as far as the app uses it: POST /jobs starts a job, GET
/jobs/<name> reads it back."""

from __future__ import annotations

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
    ``name``. A ``Scripted`` answer with ``then_normal`` creates the job and answers late."""

    def __init__(self, accepted_token: str, deployments: tuple[str, ...] = ("default",)) -> None:
        self.accepted_token = accepted_token
        self.deployments = deployments
        self.jobs: dict[str, dict[str, Any]] = {}
        super().__init__()

    @property
    def scoring_uri(self) -> str:
        return f"{self.url}/jobs"

    def clear(self) -> None:
        super().clear()
        with self.lock:
            self.jobs.clear()

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
            job = self.jobs.get(request.path.removeprefix("/jobs/"))
            return (200, job, {}) if job else (404, {"error": {"code": "NotFound"}}, {})
        if request.method != "POST" or request.path != "/jobs":
            return 404, {"error": {"code": "NotFound"}}, {}
        deployment = request.headers.get("azureml-model-deployment")
        if deployment is not None and deployment not in self.deployments:
            return 404, {"error": {"code": "DeploymentNotFound", "message": deployment}}, {}
        inputs = _input_data(request)
        if inputs is None:
            return 400, {"error": {"code": "BadRequest", "message": "invalid InputData"}}, {}
        name = f"batchjob-{uuid.uuid4()}"
        job = {
            "id": f"{WORKSPACE}/jobs/{name}",
            "name": name,
            "type": "Microsoft.MachineLearningServices/workspaces/jobs",
            "properties": {"status": "Queued", "InputData": inputs, "deployment": deployment},
        }
        with self.lock:
            self.jobs[name] = job
        return 200, job, {}


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
