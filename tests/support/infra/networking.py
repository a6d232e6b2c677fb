"""networkIsolation in the templates: what each mode opens and closes, read by evaluating
main.bicep's module arguments and loops in that mode."""

from __future__ import annotations

import re
from typing import Any

from tests.support.infra.bicep import Template, access_path, dig, operator_call, unwrap
from tests.support.infra.evaluate import Expr, evaluate
from tests.support.infra.render import module_arguments
from tests.support.infra.settings import app_settings
from tests.support.infra.typecheck import evaluated_resources, module_env, root_env

# The host account's services the Functions host uses: blob (keys, locks, timer schedules, the
# code package) and table (diagnostic events); no queue without blob triggers or Durable
# Functions. Its settings, role assignments and private endpoints must all name these.
HOST_GROUPS = {"blob", "table"}
# Built-in data roles (docs/deploy.md, "Role assignments") and the storage service each opens.
ROLE_SERVICES = {
    "b7e6dc6d-f1e8-4753-8033-0f276bb0955b": "blob",  # Storage Blob Data Owner
    "ba92f5b4-2d11-453d-a403-e96b0029c9fe": "blob",  # Storage Blob Data Contributor
    "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1": "blob",  # Storage Blob Data Reader
    "974c5e8b-45b9-4653-ba55-5f855dd0fb88": "queue",  # Storage Queue Data Contributor
    "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3": "table",  # Storage Table Data Contributor
}
_SERVICE_URI = re.compile(r"^AzureWebJobsStorage__(?P<service>\w+)ServiceUri$")
DATA_GROUPS = {False: {"blob"}, True: {"blob", "dfs"}}

# (publicNetworkAccess, networkDefaultAction) per account and networkIsolation.
EXPECTED_ACCESS = {
    ("hostStorage", False): ("Enabled", "Allow"),
    ("hostStorage", True): ("Disabled", "Deny"),
    ("dataStorage", False): ("Enabled", "Allow"),
    # Event Grid dead-letters as a trusted service, which only the public endpoint admits.
    ("dataStorage", True): ("Enabled", "Deny"),
}


def endpoint_groups(template: Template, parameters: dict[str, Any], symbol: str) -> Any:
    """The sub-resources main.bicep's private endpoint loop ``symbol`` runs over."""
    env = root_env(template, parameters)
    _, loop, _ = unwrap(env.tree["modules"][symbol]["config"])
    if loop is None:
        return None
    return evaluate(Expr(loop["array_name"], env))


def check_network_isolation(template: Template) -> list[str]:
    problems = []
    for isolated in (False, True):
        for hns in (False, True):
            parameters = {"networkIsolation": isolated, "dataStorageHierarchicalNamespace": hns}
            mode = f"networkIsolation={isolated}, hierarchical namespace={hns}"
            expected = {
                "hostEndpoints": HOST_GROUPS if isolated else set(),
                "dataEndpoints": DATA_GROUPS[hns] if isolated else set(),
            }
            for symbol, groups in expected.items():
                found = endpoint_groups(template, parameters, symbol)
                if not isinstance(found, list) or set(found) != groups:
                    problems.append(f"{mode}: {symbol} serves {found}, expected {sorted(groups)}")
            for account in ("hostStorage", "dataStorage"):
                values = module_arguments(template, parameters, account)
                found = (values.get("publicNetworkAccess"), values.get("networkDefaultAction"))
                if found != EXPECTED_ACCESS[(account, isolated)]:
                    problems.append(
                        f"{mode}: {account} (publicNetworkAccess, networkDefaultAction) is "
                        f"{found}, expected {EXPECTED_ACCESS[(account, isolated)]}"
                    )
    problems += _subnet_problems(template)
    problems += _event_grid_problems(template)
    return problems


def _subnet_problems(template: Template) -> list[str]:
    """The app integrates with the network's app subnet when isolated, with none otherwise."""
    env = root_env(template, {"networkIsolation": True})
    body, _, _ = unwrap(env.tree["modules"]["functionApp"]["config"])
    expr = (body.get("params") or {}).get("virtualNetworkSubnetId")
    operator = operator_call(expr)
    if (
        not operator
        or operator[0] != "conditional"
        or operator[1].get("condition") != "networkIsolation"
        or access_path(operator[1].get("true_value")) != ["network", "outputs", "appSubnetId"]
        or operator[1].get("false_value") != ""
    ):
        return [
            "functionApp virtualNetworkSubnetId must be networkIsolation ? "
            "network.outputs.appSubnetId : ''"
        ]
    return []


def _event_grid_problems(template: Template) -> list[str]:
    """Dead-lettering through the firewall works for a system-assigned identity only, and only
    if the data account lets trusted Azure services through."""
    problems = []
    env = module_env(template, {"networkIsolation": True}, "eventGrid")
    for topic in evaluated_resources(env, "systemTopic"):
        if dig(topic, "identity", "type") != "SystemAssigned":
            problems.append("the system topic identity must be SystemAssigned")
    storage = module_env(template, {"networkIsolation": True}, "dataStorage")
    for account in evaluated_resources(storage, "account"):
        if "AzureServices" not in str(dig(account, "properties", "networkAcls", "bypass")):
            problems.append("the data account networkAcls.bypass must include AzureServices")
    return problems


def host_role_services(template: Template) -> set[str]:
    """The services the role assignments main.bicep makes on the host account open."""
    env = root_env(template, {})
    services = set()
    for symbol, declaration in (env.tree.get("modules") or {}).items():
        body, _, _ = unwrap(declaration["config"])
        params = body.get("params") or {}
        if access_path(params.get("storageAccountName")) != ["hostStorage", "outputs", "name"]:
            continue
        if "roleDefinitionGuid" not in params:
            continue
        role = module_arguments(template, {}, symbol).get("roleDefinitionGuid")
        services.add(ROLE_SERVICES.get(str(role), f"unknown role {role}"))
    return services


def check_host_storage_services(template: Template) -> list[str]:
    """One story for the host account: the services AzureWebJobsStorage names, the roles the app
    gets on it and its private endpoints are the same, and are what the host uses."""
    found = {
        "AzureWebJobsStorage__<service>ServiceUri settings": {
            match["service"] for match in map(_SERVICE_URI.match, app_settings(template)) if match
        },
        "role assignments on hostStorage": host_role_services(template),
        "hostEndpoints (networkIsolation)": set(
            endpoint_groups(template, {"networkIsolation": True}, "hostEndpoints") or []
        ),
    }
    return [
        f"{what} name {sorted(services)}, expected {sorted(HOST_GROUPS)}"
        for what, services in found.items()
        if services != HOST_GROUPS
    ]
