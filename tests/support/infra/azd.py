"""The azd conventions infra/ follows (issue 18): names from abbreviations.json and a
resourceToken, the azd tags, UPPER_SNAKE outputs, and Application Insights that takes telemetry
only from the app's managed identity. Each check returns its problems as sentences."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from tests.support.infra.bicep import (
    Scope,
    Template,
    Unresolved,
    access_path,
    function_call,
    resolve_identifier,
    resources,
)
from tests.support.infra.evaluate import Expr, evaluate
from tests.support.infra.schema import Types
from tests.support.infra.typecheck import Report, walk

MAIN = "main.bicep"
ABBREVIATIONS = "abbreviations.json"
ENVIRONMENT = "azd-env"  # the environmentName the checks deploy with
MONITORING_METRICS_PUBLISHER = "3913510d-42f4-4e42-8a64-420c390055eb"
_ABBREVIATION = re.compile(r"\$\{abbrs\.(\w+)\}")
_UPPER_SNAKE = re.compile(r"^[A-Z][A-Z0-9]*(_[A-Z0-9]+)*$")


def _main(template: Template) -> Scope:
    return Scope(template, (template.root / MAIN).resolve())


def check_resource_token(template: Template) -> list[str]:
    """resourceToken is uniqueString(subscription().id, environmentName, location), as azd's
    templates build it (toLower around it changes nothing but is allowed)."""
    variables = _main(template).tree.get("variables") or {}
    if "resourceToken" not in variables:
        return ["main.bicep declares no resourceToken"]
    expr = variables["resourceToken"]["value"]
    call = function_call(expr)
    if call and call[0] == "to_lower":
        expr = call[1]["string_to_change"]
        call = function_call(expr)
    if not call or call[0] != "unique_string":
        return [f"resourceToken is not a uniqueString(...): {json.dumps(expr)[:200]}"]
    given = call[1]
    arguments = [given.get("base_string")] + [
        given[key] for key in sorted(given) if key.startswith("extra_string_")
    ]
    if not _is_subscription_id(arguments[0]):
        return [f"resourceToken's first argument is not subscription().id: {arguments[:1]}"]
    if arguments[1:] != ["environmentName", "location"]:
        return [
            f"resourceToken's other arguments are {arguments[1:]}, not environmentName, location"
        ]
    return []


def _is_subscription_id(expr: Any) -> bool:
    operator = expr.get("operator") if isinstance(expr, dict) else None
    if not isinstance(operator, dict) or operator.get("type") != "property_accessor":
        return False
    operands = operator.get("operands") or {}
    called = function_call(operands.get("operand_1"))
    return bool(called and called[0] == "subscription") and operands.get("operand_2") == "id"


def check_names(template: Template) -> list[str]:
    """abbrs is abbreviations.json; every generated name is `${abbrs.<key>}...${resourceToken}`
    with a key the file has, and every key of the file is used."""
    scope = _main(template)
    variables = scope.tree.get("variables") or {}
    problems = []
    abbrs = function_call(variables.get("abbrs", {}).get("value"))
    if not abbrs or abbrs[0] != "load_json_content" or abbrs[1]["file_path"] != ABBREVIATIONS:
        problems.append(f"abbrs is not loadJsonContent('{ABBREVIATIONS}')")
    path = template.root / ABBREVIATIONS
    known = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    if not known:
        problems.append(f"infra/{ABBREVIATIONS} is missing or empty")
    used = set()
    names = variables.get("names", {}).get("value") or {}
    for key, expr in names.items():
        generated = [text for text in _strings(expr) if "${resourceToken}" in text]
        if len(generated) != 1:
            problems.append(f"names.{key}: no single generated `...${{resourceToken}}` default")
            continue
        found = _ABBREVIATION.findall(generated[0])
        if not generated[0].startswith("${abbrs.") or not generated[0].endswith("${resourceToken}"):
            problems.append(
                f"names.{key}: {generated[0]!r} is not `${{abbrs.<key>}}...${{resourceToken}}`"
            )
        for abbreviation in found:
            used.add(abbreviation)
            if abbreviation not in known:
                problems.append(f"names.{key}: abbrs.{abbreviation} is not in {ABBREVIATIONS}")
    for unused in sorted(set(known) - used):
        problems.append(f"{ABBREVIATIONS}: {unused} is used by no name")
    return problems


def _strings(expr: Any) -> list[str]:
    if isinstance(expr, str):
        return [expr]
    if isinstance(expr, dict):
        return [text for value in expr.values() for text in _strings(value)]
    if isinstance(expr, list):
        return [text for value in expr for text in _strings(value)]
    return []


def check_tags(template: Template, types: Types, service: str) -> list[str]:
    """Every resource whose Azure type takes tags carries azd-env-name (the environment's name);
    the function app also carries azd-service-name (azure.yaml's service)."""
    report = Report()
    problems = []
    checked = 0
    for instance in walk(template, {"environmentName": ENVIRONMENT}, report):
        declaration = instance.declaration
        if declaration.get("existing"):
            continue
        body_type = types.resource_body(declaration["type"], str(declaration.get("api_version")))
        if body_type is None or "tags" not in (body_type.node.get("properties") or {}):
            continue
        checked += 1
        tags = evaluate(Expr(instance.body.get("tags"), instance.env))
        where = f"{instance.where} ({declaration['type']})"
        if not isinstance(tags, Mapping) or tags.get("azd-env-name") != ENVIRONMENT:
            problems.append(f"{where}: tags {tags!r} lack azd-env-name = environmentName")
            continue
        is_app = declaration["type"].lower() == "microsoft.web/sites"
        if is_app and tags.get("azd-service-name") != service:
            problems.append(
                f"{where}: azd-service-name is {tags.get('azd-service-name')!r}, not {service!r}"
            )
    problems.extend(sorted(report.problems))
    if not checked:
        problems.append("no resource that takes tags was found")
    return problems


def check_outputs(template: Template) -> list[str]:
    """azd reads main.bicep's outputs into the environment by name: UPPER_SNAKE, with the
    AZURE_ ones azd's own commands look for."""
    outputs = _main(template).tree.get("outputs") or {}
    problems = [
        f"output {name} is not UPPER_SNAKE" for name in outputs if not _UPPER_SNAKE.match(name)
    ]
    for needed in ("AZURE_LOCATION", "AZURE_TENANT_ID", "AZURE_RESOURCE_GROUP"):
        if needed not in outputs:
            problems.append(f"main.bicep has no output {needed}")
    return problems


def check_application_insights(template: Template) -> list[str]:
    """Local auth off, the app authenticating as its user-assigned identity
    (APPLICATIONINSIGHTS_AUTHENTICATION_STRING), and that identity holding Monitoring Metrics
    Publisher on the component."""
    problems = []
    components = [r for r in resources(template) if r.type == "Microsoft.Insights/components"]
    if len(components) != 1:
        return [f"{len(components)} Application Insights components, expected 1"]
    component = components[0]
    if (component.body.get("properties") or {}).get("DisableLocalAuth") is not True:
        problems.append("Application Insights accepts local (key) authentication")

    sites = [r for r in resources(template) if r.type == "Microsoft.Web/sites" and not r.existing]
    app_file = sites[0].path if len(sites) == 1 else None
    if app_file is None:
        return [*problems, "no function app"]
    app = Scope(template, app_file)
    settings = (app.tree.get("variables") or {}).get("hostSettings", {}).get("value") or {}
    auth = settings.get("APPLICATIONINSIGHTS_AUTHENTICATION_STRING")
    found = re.fullmatch(r"ClientId=\$\{(\w+)\};Authorization=AAD", auth or "")
    if not found:
        problems.append(f"APPLICATIONINSIGHTS_AUTHENTICATION_STRING is {auth!r}")
    else:
        problems.extend(_is_identity_property(found[1], app, "clientId"))
    identity_id = _site_identity(template, app)
    problems.extend(identity_id)

    assignments = [
        r
        for r in resources(template)
        if r.path == component.path and r.type == "Microsoft.Authorization/roleAssignments"
    ]
    publisher = [
        a
        for a in assignments
        if MONITORING_METRICS_PUBLISHER in json.dumps(_role_of(a.body, Scope(template, a.path)))
    ]
    if not publisher:
        problems.append("no Monitoring Metrics Publisher assignment beside Application Insights")
    for assignment in publisher:
        if assignment.body.get("scope") != component.symbol:
            problems.append(
                "the Monitoring Metrics Publisher assignment is not scoped to the component"
            )
        principal = (assignment.body.get("properties") or {}).get("principalId")
        if isinstance(principal, str):
            problems.extend(
                _is_identity_property(principal, Scope(template, assignment.path), "principalId")
            )
        else:
            problems.append(f"the publisher's principalId is {principal!r}")
    return problems


def _role_of(body: Mapping[str, Any], scope: Scope) -> Any:
    """The role definition expression with the variables it uses written out."""
    return _expand((body.get("properties") or {}).get("roleDefinitionId"), scope, 0)


def _expand(expr: Any, scope: Scope, depth: int) -> Any:
    variables = scope.tree.get("variables") or {}
    if isinstance(expr, str) and expr in variables and depth < 10:
        return _expand(variables[expr]["value"], scope, depth + 1)
    if isinstance(expr, dict):
        return {key: _expand(value, scope, depth) for key, value in expr.items()}
    if isinstance(expr, list):
        return [_expand(value, scope, depth) for value in expr]
    return expr


def _is_identity_property(name: str, scope: Scope, prop: str) -> list[str]:
    """``name`` (a parameter) is set, by every caller, to ``identity.properties.<prop>`` of the
    user-assigned identity in main.bicep."""
    try:
        passed = resolve_identifier(name, scope)
    except Unresolved as exc:
        return [str(exc)]
    problems = []
    for expr, where in passed:
        path = access_path(expr)
        if path != ["identity", "properties", prop]:
            problems.append(
                f"{name} in {where.path.name} is {json.dumps(expr)[:120]}, "
                f"not identity.properties.{prop}"
            )
    return problems


def _site_identity(template: Template, app: Scope) -> list[str]:
    """The app runs as that same identity: its userAssignedIdentities key is identity.id."""
    try:
        passed = resolve_identifier("identityId", app)
    except Unresolved as exc:
        return [str(exc)]
    return [
        f"identityId is {json.dumps(expr)[:120]}, not identity.id"
        for expr, _ in passed
        if access_path(expr) != ["identity", "id"]
    ]
