"""The eventSubscriptions resources in Bicep: delivery to a function, retries, dead-letter with
the topic identity after its role exists, and a loop over the routing JSON behind the
deployEventSubscriptions switch.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tests.support.infra.bicep import (
    ROUTES_FILE,
    Resource,
    Scope,
    Template,
    dig,
    json_source,
    operator_call,
    resources,
)
from tests.support.infra.routing import load_routing
from tools.routes import filter_limit_problems

SUBSCRIPTION_TYPE = "Microsoft.EventGrid/systemTopics/eventSubscriptions"
ROLE_ASSIGNMENT_TYPE = "Microsoft.Authorization/roleAssignments"

# --- Event subscriptions in Bicep ------------------------------------------------------------


def check_bicep_subscriptions(template: Template, routing_file: Path = ROUTES_FILE) -> list[str]:
    """Every eventSubscriptions resource delivers to a function, retries, dead-letters with the
    topic identity after its role is assigned, and (when it loops) loops over the routing JSON
    behind the deployEventSubscriptions switch; every route has the values it reads."""
    problems: list[str] = []
    declared = [r for r in resources(template) if r.type == SUBSCRIPTION_TYPE and not r.existing]
    if not declared:
        return ["no Microsoft.EventGrid/systemTopics/eventSubscriptions resource in infra/"]
    routing = load_routing(routing_file)
    for resource in declared:
        where = f"{template.relative(resource.path)}:{resource.symbol}"
        props = resource.body.get("properties") or {}
        problems += [f"{where}: {p}" for p in _subscription_problems(props)]
        if not _depends_on_role_assignment(resource, template):
            problems.append(f"{where}: must depend on the dead-letter role assignment")
        container = dig(
            props, "deadLetterWithResourceIdentity", "deadLetterDestination", "properties"
        )
        source = json_source(
            (container or {}).get("blobContainerName"), Scope(template, resource.path)
        )
        if source != (routing_file.resolve(), ["containers", "deadLetter"]):
            problems.append(
                f"{where}: blobContainerName must be containers.deadLetter of "
                f"{routing_file.name}, found {source}"
            )
        if resource.loop is not None:
            problems += [f"{where}: {p}" for p in _loop_problems(resource, template, routing_file)]
    for route in routing["subscriptions"]:
        problems += [f"route {route.get('name')}: {p}" for p in _route_problems(route)]
    return problems


def _subscription_problems(props: Mapping[str, Any]) -> list[str]:
    problems = []
    destination = props.get("destination") or {}
    if destination.get("endpointType") != "AzureFunction":
        problems.append("destination.endpointType must be AzureFunction")
    resource_id = dig(destination, "properties", "resourceId")
    if not isinstance(resource_id, str) or "/functions/" not in resource_id:
        problems.append("destination.properties.resourceId must be '<app id>/functions/<name>'")
    for key in ("maxEventsPerBatch", "preferredBatchSizeInKilobytes"):
        if dig(destination, "properties", key) is None:
            problems.append(f"destination.properties.{key} is not set")
    for key in ("eventDeliverySchema", "filter"):
        if props.get(key) is None:
            problems.append(f"{key} is not set")
    retry = props.get("retryPolicy")
    if not isinstance(retry, dict):
        problems.append("retryPolicy must be an object with both of its fields")
    else:
        for key in ("maxDeliveryAttempts", "eventTimeToLiveInMinutes"):
            if retry.get(key) is None:
                problems.append(f"retryPolicy.{key} is not set")
    dead_letter = props.get("deadLetterWithResourceIdentity") or {}
    if dig(dead_letter, "identity", "type") != "SystemAssigned":
        problems.append("deadLetterWithResourceIdentity.identity.type must be SystemAssigned")
    destination = dead_letter.get("deadLetterDestination") or {}
    if destination.get("endpointType") != "StorageBlob":
        problems.append("deadLetterDestination.endpointType must be StorageBlob")
    for key in ("resourceId", "blobContainerName"):
        if dig(destination, "properties", key) is None:
            problems.append(f"deadLetterDestination.properties.{key} is not set")
    if props.get("deadLetterDestination") is not None:
        problems.append("use deadLetterWithResourceIdentity, not key-based deadLetterDestination")
    return problems


def _depends_on_role_assignment(resource: Resource, template: Template) -> bool:
    symbols = resource.body.get("dependsOn") or resource.body.get("depends_on") or []
    tree = template.trees[resource.path]
    for symbol in symbols:
        if not isinstance(symbol, str):
            continue
        declared = (tree.get("resources") or {}).get(symbol)
        if declared and declared["type"] == ROLE_ASSIGNMENT_TYPE:
            return True
        module = (tree.get("modules") or {}).get(symbol)
        if module and module.get("type") == "local":
            target = (resource.path.parent / module["detail"]["path"]).resolve()
            inner = template.trees.get(target) or {}
            if any(
                d["type"] == ROLE_ASSIGNMENT_TYPE for d in (inner.get("resources") or {}).values()
            ):
                return True
    return False


def _loop_problems(resource: Resource, template: Template, routing_file: Path) -> list[str]:
    assert resource.loop is not None
    problems = []
    scope = Scope(template, resource.path)
    array = resource.loop["array_name"]
    source = json_source(array, scope)
    if source != (routing_file.resolve(), ["subscriptions"]):
        problems.append(f"must loop over subscriptions of {routing_file.name}, found {source}")
    operator = operator_call(array)
    gated = (
        operator is not None
        and operator[0] == "conditional"
        and operator[1].get("condition") == "deployEventSubscriptions"
        and operator[1].get("false_value") == []
    )
    if not gated:
        problems.append("must loop over (deployEventSubscriptions ? subscriptions : [])")
    default = dig(scope.tree, "parameters", "deployEventSubscriptions", "default")
    if gated and default is not False:
        problems.append("parameter deployEventSubscriptions must default to false")
    name = resource.loop["item_name"]
    target = dig(resource.body, "properties", "destination", "properties", "resourceId")
    if isinstance(target, str) and f"/functions/${{{name}.function}}" not in target:
        problems.append(f"destination resourceId must end with /functions/${{{name}.function}}")
    return problems


def _route_problems(route: Mapping[str, Any]) -> list[str]:
    problems = []
    retry = route.get("retryPolicy") or {}
    attempts = retry.get("maxDeliveryAttempts")
    if not isinstance(attempts, int) or not 1 <= attempts <= 30:
        problems.append(f"retryPolicy.maxDeliveryAttempts must be 1..30, got {attempts!r}")
    ttl = retry.get("eventTimeToLiveInMinutes")
    if not isinstance(ttl, int) or not 1 <= ttl <= 1440:
        problems.append(f"retryPolicy.eventTimeToLiveInMinutes must be 1..1440, got {ttl!r}")
    for key in ("name", "function", "eventDeliverySchema", "maxEventsPerBatch"):
        if route.get(key) in (None, ""):
            problems.append(f"{key} is not set")
    if route.get("preferredBatchSizeInKilobytes") is None:
        problems.append("preferredBatchSizeInKilobytes is not set")
    marker = route.get("markerFilter")
    if not isinstance(marker, bool):
        problems.append(
            f"markerFilter must be true or false (event-grid.bicep reads it), got {marker!r}"
        )
    elif marker and route.get("function") != "dispatch_batch_job":
        problems.append("markerFilter: only the batch dispatch has a folder scope")
    problems += filter_limit_problems(route.get("filter") or {})
    return problems
