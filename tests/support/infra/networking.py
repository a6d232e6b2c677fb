"""networkIsolation in the templates: what each mode opens and closes, read by evaluating
main.bicep's module arguments and loops in that mode."""

from __future__ import annotations

from typing import Any

from tests.support.infra.bicep import Template, access_path, dig, operator_call, unwrap
from tests.support.infra.evaluate import Expr, evaluate
from tests.support.infra.render import module_arguments
from tests.support.infra.typecheck import evaluated_resources, module_env, root_env

# Sub-resources each account needs a private endpoint for (see main.bicep).
HOST_GROUPS = {"blob", "queue", "table"}
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
