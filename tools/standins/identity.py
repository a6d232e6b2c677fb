"""App Service's managed-identity endpoint (IDENTITY_ENDPOINT / IDENTITY_HEADER, api
2019-08-01), which ``DefaultAzureCredential`` asks for tokens under the Functions host."""

from __future__ import annotations

import time
import uuid

from tools.standins.base import Answer, Recorded, Scripted, StandIn


class ManagedIdentityEndpoint(StandIn):
    """Hands out one token per instance; point a process at it with ``environment()``."""

    def __init__(
        self,
        secret: str = "local-identity-header",  # noqa: S107 - a loopback stand-in's header
        token_lifetime: int = 3600,
        lifetime: float = 600.0,
    ) -> None:
        self.secret = secret
        self.token_lifetime = token_lifetime
        self.token = f"token-{uuid.uuid4()}"
        super().__init__(lifetime=lifetime)

    def environment(self) -> dict[str, str]:
        return {"IDENTITY_ENDPOINT": f"{self.url}/msi/token", "IDENTITY_HEADER": self.secret}

    @property
    def token_requests(self) -> list[Recorded]:
        with self.lock:
            return [r for r in self.requests if r.path == "/msi/token"]

    def answer(self, request: Recorded, scripted: Scripted | None) -> Answer:
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
