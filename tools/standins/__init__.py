"""Local stand-ins for the Azure endpoints the app talks to, speaking their documented
contracts on 127.0.0.1: the tests, the benchmarks and the local loop share them.

- ``base``: the threaded server with a request log, scripted answers and a connection count;
- ``batch``: Azure ML's batch endpoint (``POST /jobs``);
- ``identity``: App Service's managed-identity token endpoint;
- ``recording``: a host that must never be contacted (it answers anything and records it);
- ``functions_host``: ``func start``'s Event Grid webhook, running the app's functions.
"""

from __future__ import annotations

from tools.standins.base import Answer, Recorded, Scripted, StandIn
from tools.standins.batch import JobsEndpoint
from tools.standins.identity import ManagedIdentityEndpoint
from tools.standins.recording import RecordingServer

__all__ = [
    "Answer",
    "JobsEndpoint",
    "ManagedIdentityEndpoint",
    "Recorded",
    "RecordingServer",
    "Scripted",
    "StandIn",
]
