"""The routing table (``infra/event-subscriptions.json``) against the app: every route targets
an Event Grid function, names a known container, and never covers a container the app writes.
"""

from __future__ import annotations

import importlib.util
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tests.support.infra.bicep import REPO, ROUTES_FILE

# Containers the app writes to: an event for one of their blobs must reach no function.
OUTPUT_CONTAINER_KEYS = ("thumbnails", "dispatchLedger", "deadLetter")

SUBJECT_PREFIX = re.compile(r"^/blobServices/default/containers/([^/]+)/blobs/(?:[^/]+/)*$")

# --- Routing (event-subscriptions.json) ------------------------------------------------------


def load_routing(path: Path = ROUTES_FILE) -> dict[str, Any]:
    routing: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return routing


def indexed_app(path: Path = REPO / "function_app.py") -> Any:
    """A freshly imported ``app`` of function_app.py, as a starting host indexes it.

    ``FunctionApp.get_functions()`` raises "does not have a unique function name" on its second
    call in a process, so these checks index their own copy and leave the shared one alone.
    """
    spec = importlib.util.spec_from_file_location("_function_app_for_infra_checks", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.app


def function_bindings(app: Any) -> dict[str, list[dict[str, Any]]]:
    """{function name: its bindings} as the Functions host indexes them."""
    return {
        fn.get_function_name(): json.loads(fn.get_function_json())["bindings"]
        for fn in app.get_functions()
    }


def check_subscription_functions(
    routing: Mapping[str, Any], bindings: Mapping[str, list[dict[str, Any]]]
) -> list[str]:
    """Every function a subscription targets exists and has an eventGridTrigger binding."""
    problems = []
    for route in routing["subscriptions"]:
        name = route.get("function")
        if name not in bindings:
            problems.append(f"subscription {route['name']} targets {name!r}: no such function")
        elif not any(
            b.get("type") == "eventGridTrigger" and str(b.get("direction")).lower() == "in"
            for b in bindings[name]
        ):
            problems.append(
                f"subscription {route['name']} targets {name!r}, which has no eventGridTrigger"
            )
    return problems


def check_subject_prefixes(routing: Mapping[str, Any]) -> list[str]:
    """Every subjectBeginsWith names one known container and ends with /blobs/[folder/]."""
    containers = set(routing["containers"].values())
    problems = []
    for route in routing["subscriptions"]:
        prefix = route["filter"].get("subjectBeginsWith", "")
        match = SUBJECT_PREFIX.match(prefix)
        if not match:
            problems.append(
                f"subscription {route['name']}: subjectBeginsWith {prefix!r} must be "
                "/blobServices/default/containers/<container>/blobs/ or .../blobs/<folder>/"
            )
        elif match.group(1) not in containers:
            problems.append(
                f"subscription {route['name']}: container {match.group(1)!r} is not one of "
                f"{sorted(containers)}"
            )
    return problems


def check_no_output_loops(routing: Mapping[str, Any]) -> list[str]:
    """No subscription's prefix covers a container the app writes to (thumbnails above all).

    Event Grid compares prefixes as plain strings, so ``.../containers/images`` also covers
    ``images-thumbs``; this tries a blob of each output container against every prefix.
    """
    problems = []
    for route in routing["subscriptions"]:
        prefix = route["filter"].get("subjectBeginsWith", "")
        case_sensitive = bool(route["filter"].get("isSubjectCaseSensitive"))
        for key in OUTPUT_CONTAINER_KEYS:
            container = routing["containers"][key]
            subject = f"/blobServices/default/containers/{container}/blobs/photo.jpg"
            if _begins(subject, prefix, case_sensitive):
                problems.append(
                    f"subscription {route['name']} ({route.get('function')}): prefix "
                    f"{prefix!r} covers output container {container!r} ({key}); "
                    "its own writes would trigger it again"
                )
    return problems


def _begins(subject: str, prefix: str, case_sensitive: bool) -> bool:
    if not case_sensitive:
        subject, prefix = subject.lower(), prefix.lower()
    return subject.startswith(prefix)
