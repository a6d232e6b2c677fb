"""Local HTTP servers that stand in for Azure endpoints, speaking their documented contracts.

Each listens on 127.0.0.1 on a free port, serves from a daemon thread, records every
request, and shuts itself down after ``lifetime`` seconds if a test forgets to.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    received: float = field(default_factory=time.monotonic)

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Scripted:
    """One canned answer, used instead of the normal behaviour for one request."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    # When set, the server does its normal work (e.g. creates the job) before answering late.
    then_normal: bool = False


class StandIn:
    """Base: a threaded server with a request log and a queue of scripted answers."""

    def __init__(self, lifetime: float = 600.0, port: int = 0) -> None:
        self.requests: list[Recorded] = []
        self.script: list[Scripted] = []
        self.lock = threading.Lock()
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in separate writes; with Nagle's algorithm the body
            # waits for the client's delayed ACK (about 40 ms a request on loopback).
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                recorded = Recorded(
                    self.command,
                    parts.path,
                    parse_qs(parts.query),
                    dict(self.headers.items()),
                    body,
                )
                with stand_in.lock:
                    stand_in.requests.append(recorded)
                    scripted = stand_in.script.pop(0) if stand_in.script else None
                status, payload, headers = stand_in.answer(recorded, scripted)
                if scripted is not None and scripted.delay:
                    time.sleep(scripted.delay)
                data = b"" if payload is None else json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            do_GET = _serve
            do_POST = _serve

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()
        self._timer = threading.Timer(lifetime, self.stop)
        self._timer.daemon = True
        self._timer.start()

    def answer(
        self, request: Recorded, scripted: Scripted | None
    ) -> tuple[int, Any, dict[str, str]]:
        raise NotImplementedError

    def stop(self) -> None:
        self._timer.cancel()
        self.server.shutdown()
        self.server.server_close()


WORKSPACE = (
    "/subscriptions/0/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws"
)


class JobsEndpoint(StandIn):
    """Azure ML batch endpoint: POST /jobs starts a job, GET /jobs/<name> reads it.

    Checks what the real endpoint checks: a bearer token it accepts, a JSON body with
    ``properties.InputData``; the job resource comes back with ``id`` and ``name``.
    """

    def __init__(self, accepted_token: str, deployments: tuple[str, ...] = ("default",)) -> None:
        self.accepted_token = accepted_token
        self.deployments = deployments
        self.jobs: dict[str, dict[str, Any]] = {}
        super().__init__()

    @property
    def scoring_uri(self) -> str:
        return f"{self.url}/jobs"

    def answer(
        self, request: Recorded, scripted: Scripted | None
    ) -> tuple[int, Any, dict[str, str]]:
        if scripted is not None and not scripted.then_normal:
            return scripted.status, scripted.body, scripted.headers
        result = self._normal(request)
        if scripted is not None:  # did the work, answers late
            return result
        return result

    def _normal(self, request: Recorded) -> tuple[int, Any, dict[str, str]]:
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
        try:
            inputs = request.json()["properties"]["InputData"]
            assert isinstance(inputs, dict) and len(inputs) == 1
            (value,) = inputs.values()
            assert value["JobInputType"] in ("UriFile", "UriFolder") and value["Uri"]
        except (ValueError, KeyError, TypeError, AssertionError):
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


class ManagedIdentityEndpoint(StandIn):
    """App Service managed identity (IDENTITY_ENDPOINT / IDENTITY_HEADER, api 2019-08-01)."""

    def __init__(self, secret: str = "local-identity-header", token_lifetime: int = 3600) -> None:
        self.secret = secret
        self.token_lifetime = token_lifetime
        self.token = f"token-{uuid.uuid4()}"
        super().__init__()

    def environment(self) -> dict[str, str]:
        return {"IDENTITY_ENDPOINT": f"{self.url}/msi/token", "IDENTITY_HEADER": self.secret}

    @property
    def token_requests(self) -> list[Recorded]:
        return [r for r in self.requests if r.path == "/msi/token"]

    def answer(
        self, request: Recorded, scripted: Scripted | None
    ) -> tuple[int, Any, dict[str, str]]:
        if scripted is not None:
            return scripted.status, scripted.body, scripted.headers
        if request.path != "/msi/token" or request.headers.get("X-IDENTITY-HEADER") != self.secret:
            return 400, {"error": "invalid_request"}, {}
        resource = (request.query.get("resource") or [""])[0]
        if not resource:
            return 400, {"error": "invalid_request", "error_description": "no resource"}, {}
        expires_on = int(time.time()) + self.token_lifetime
        return (
            200,
            {
                "access_token": self.token,
                "expires_on": str(expires_on),
                "resource": resource,
                "token_type": "Bearer",
                "client_id": (request.query.get("client_id") or ["system"])[0],
            },
            {},
        )
