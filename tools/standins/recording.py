"""A host the app must never contact: it answers anything with 200 and records it, so a
test can assert that its request log stayed empty."""

from __future__ import annotations

from tools.standins.base import Answer, Recorded, Scripted, StandIn


class RecordingServer(StandIn):
    def answer(self, request: Recorded, scripted: Scripted | None) -> Answer:
        if scripted is not None:
            return scripted.status, scripted.body, scripted.headers
        return 200, {"ok": True}, {}
