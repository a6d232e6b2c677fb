"""Offline checks of the Bicep templates in ``infra/``: read them with pycep-parser, follow
the few expressions that matter (app settings, the routing JSON) and cross-check them with the
app code. Each ``check_*`` function returns a list of problems; empty means it passes.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import re
import subprocess
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pycep import BicepParser

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"
ROUTES_FILE = INFRA / "event-subscriptions.json"

# Settings the code reads that must NOT be set in Azure, and why.
NOT_IN_AZURE = {
    "DATA_STORAGE": "a connection string: local runs only (Azure uses the identity)",
    "DATA_STORAGE__accountName": "an alternative to DATA_STORAGE__blobServiceUri",
}

# App setting -> key of the ``containers`` object of event-subscriptions.json it must come from.
CONTAINER_SETTINGS = {
    "THUMBNAIL_CONTAINER": "thumbnails",
    "DISPATCH_LEDGER_CONTAINER": "dispatchLedger",
    "DEADLETTER_CONTAINER": "deadLetter",
}

# Containers the app writes to: an event for one of their blobs must reach no function.
OUTPUT_CONTAINER_KEYS = ("thumbnails", "dispatchLedger", "deadLetter")

SUBJECT_PREFIX = re.compile(r"^/blobServices/default/containers/([^/]+)/blobs/(?:[^/]+/)*$")

SUBSCRIPTION_TYPE = "Microsoft.EventGrid/systemTopics/eventSubscriptions"
SITE_TYPE = "Microsoft.Web/sites"
ROLE_ASSIGNMENT_TYPE = "Microsoft.Authorization/roleAssignments"

# What must never appear in infra/: key-based access and secret parameters.
SECRET_PATTERNS = {
    "listKeys": re.compile(r"listkeys", re.IGNORECASE),
    "list*Secrets/ConnectionStrings": re.compile(
        r"\blist(?:Secrets|ConnectionStrings|Credentials?)\b", re.IGNORECASE
    ),
    "AccountKey": re.compile(r"account_?key", re.IGNORECASE),
    "connection string with a key": re.compile(
        r"(?:SharedAccessKey|SharedAccessSignature|AccountKey)\s*=", re.IGNORECASE
    ),
    "secure() parameter": re.compile(r"@?\bsecure\s*\(\s*\)", re.IGNORECASE),
}
TEXT_SUFFIXES = {".bicep", ".json", ".bicepparam", ".sh", ".ps1", ".md", ".yaml", ".yml"}


class Unresolved(Exception):
    """An expression these checks cannot follow; reported as a problem, never guessed."""


# --- Reading the templates -------------------------------------------------------------------


def bicep_files(infra: Path = INFRA) -> list[Path]:
    return sorted(infra.rglob("*.bicep"))


def parse(path: Path) -> dict[str, Any]:
    """The pycep-parser tree of a Bicep file (cached by content: tests parse many copies)."""
    return _parse_text(path.read_text(encoding="utf-8"))


@functools.lru_cache(maxsize=64)
def _parse_text(text: str) -> dict[str, Any]:
    tree: dict[str, Any] = BicepParser().parse(text=text)
    return tree


@dataclass(frozen=True)
class Template:
    """All parsed files of one infra folder, keyed by resolved path."""

    root: Path
    trees: Mapping[Path, dict[str, Any]]

    @classmethod
    def load(cls, infra: Path = INFRA) -> Template:
        return cls(infra, {path.resolve(): parse(path) for path in bicep_files(infra)})

    def relative(self, path: Path) -> str:
        return path.relative_to(self.root.resolve()).as_posix()


@dataclass(frozen=True)
class Resource:
    path: Path
    symbol: str
    type: str
    existing: bool
    body: dict[str, Any]  # the declaration's properties, loop and condition unwrapped
    loop: dict[str, Any] | None  # {"item_name": ..., "array_name": ...} of a for-loop
    condition: Any


def unwrap(config: Any) -> tuple[dict[str, Any], dict[str, Any] | None, Any]:
    """The body of a resource or module declaration, its loop and its condition."""
    loop = None
    condition = None
    while (
        isinstance(config, dict)
        and "config" in config
        and ("loop_type" in config or "condition" in config)
    ):
        if config.get("loop_type"):
            loop = config["loop_type"].get("detail")
        if config.get("condition") is not None:
            condition = config["condition"]
        config = config["config"]
    if not isinstance(config, dict):
        raise Unresolved(f"declaration body is not an object: {config!r}")
    return config, loop, condition


def resources(template: Template) -> Iterator[Resource]:
    for path, tree in template.trees.items():
        for symbol, declaration in (tree.get("resources") or {}).items():
            body, loop, condition = unwrap(declaration["config"])
            yield Resource(
                path,
                symbol,
                declaration["type"],
                bool(declaration.get("existing")),
                body,
                loop,
                condition,
            )


def deployed_resources(template: Template) -> set[tuple[str, str, str]]:
    """(file, type, symbol) of every resource the templates deploy (not ``existing``)."""
    return {
        (template.relative(r.path), r.type, r.symbol) for r in resources(template) if not r.existing
    }


def _dig(value: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


# --- Following expressions -------------------------------------------------------------------


@dataclass(frozen=True)
class Scope:
    """Where an expression was written: its file, within a template."""

    template: Template
    path: Path

    @property
    def tree(self) -> dict[str, Any]:
        return self.template.trees[self.path]

    def callers(self) -> list[tuple[Scope, dict[str, Any]]]:
        """(scope of the caller, module body) of every module declaration using this file."""
        found = []
        for path, tree in self.template.trees.items():
            for declaration in (tree.get("modules") or {}).values():
                if declaration.get("type") != "local":
                    continue
                target = (path.parent / declaration["detail"]["path"]).resolve()
                if target == self.path:
                    body, _, _ = unwrap(declaration["config"])
                    found.append((Scope(self.template, path), body))
        return found


def _function(expr: Any) -> tuple[str, dict[str, Any]] | None:
    if isinstance(expr, dict) and isinstance(expr.get("function"), dict):
        return expr["function"]["type"], expr["function"].get("parameters") or {}
    return None


def _operator(expr: Any) -> tuple[str, dict[str, Any]] | None:
    if isinstance(expr, dict) and isinstance(expr.get("operator"), dict):
        return expr["operator"]["type"], expr["operator"].get("operands") or {}
    return None


def access_path(expr: Any) -> list[str] | None:
    """``a.b['c'].d`` as ["a", "b", "c", "d"]; None if ``expr`` is anything else."""
    if isinstance(expr, str):
        return [expr]
    operator = _operator(expr)
    if operator and operator[0] in ("property_accessor", "index_accessor"):
        left = access_path(operator[1].get("operand_1"))
        right = access_path(operator[1].get("operand_2"))
        if left is not None and right is not None:
            return left + right
    return None


def resolve_identifier(name: str, scope: Scope) -> list[tuple[Any, Scope]]:
    """What a variable or parameter stands for: one (expression, scope) per way it is set.

    A parameter is followed to the module declarations that pass it (or to its default when
    nothing passes it); raises Unresolved when the name is neither.
    """
    variables = scope.tree.get("variables") or {}
    if name in variables:
        return [(variables[name]["value"], scope)]
    parameters = scope.tree.get("parameters") or {}
    if name in parameters:
        passed = [
            (body["params"][name], caller)
            for caller, body in scope.callers()
            if name in (body.get("params") or {})
        ]
        if passed:
            return passed
        if parameters[name].get("default") is not None:
            return [(parameters[name]["default"], scope)]
        raise Unresolved(f"parameter {name!r} of {scope.path.name} is never set")
    raise Unresolved(f"{name!r} is neither a variable nor a parameter of {scope.path.name}")


def resolve_object(expr: Any, scope: Scope) -> dict[str, tuple[Any, Scope]]:
    """An object expression as {key: (value expression, scope)}; keys must be literal.

    Follows variables, parameters (through the modules that set them) and ``union()``. When a
    parameter is set by several callers, only the keys every caller sets are kept.
    """
    if isinstance(expr, dict) and not _function(expr) and not _operator(expr):
        return {str(key): (value, scope) for key, value in expr.items()}
    function = _function(expr)
    if function and function[0] == "union":
        merged: dict[str, tuple[Any, Scope]] = {}
        for argument in function[1].values():
            merged.update(resolve_object(argument, scope))
        return merged
    if isinstance(expr, str):
        options = [resolve_object(value, where) for value, where in resolve_identifier(expr, scope)]
        common = set.intersection(*(set(option) for option in options))
        return {key: options[0][key] for key in options[0] if key in common}
    raise Unresolved(f"cannot read an object from {json.dumps(expr)[:200]}")


def resolve_list(expr: Any, scope: Scope) -> list[tuple[Any, Scope]]:
    if isinstance(expr, list):
        return [(item, scope) for item in expr]
    if isinstance(expr, str):
        options = resolve_identifier(expr, scope)
        if len(options) != 1:
            raise Unresolved(f"{expr!r} is set in {len(options)} places")
        return resolve_list(*options[0])
    raise Unresolved(f"cannot read a list from {json.dumps(expr)[:200]}")


def json_source(expr: Any, scope: Scope) -> tuple[Path, list[str]] | None:
    """The JSON file and key path a value is read from with loadJsonContent, if it is.

    ``routing.containers.thumbnails`` with ``var routing = loadJsonContent('x.json')`` gives
    (x.json, ["containers", "thumbnails"]). A conditional (``c ? a : []``) follows ``a``.
    """
    operator = _operator(expr)
    if operator and operator[0] == "conditional":
        return json_source(operator[1]["true_value"], scope)
    function = _function(expr)
    if function and function[0] == "load_json_content":
        file_path = scope.path.parent / function[1]["file_path"]
        json_path = function[1].get("json_path")
        keys = [] if not json_path else [k for k in json_path.lstrip("$").split(".") if k]
        return file_path.resolve(), keys
    path = access_path(expr)
    if not path:
        return None
    try:
        options = resolve_identifier(path[0], scope)
    except Unresolved:
        return None
    if len(options) != 1:
        return None
    found = json_source(*options[0])
    if found is None:
        return None
    return found[0], found[1] + path[1:]


# --- App settings ----------------------------------------------------------------------------


def app_settings(template: Template) -> dict[str, tuple[Any, Scope]]:
    """Every app setting of every function app: {name: (value expression, scope)}.

    Reads ``siteConfig.appSettings`` (a list of {name, value} or a for-loop over
    ``items(<object>)``) and ``Microsoft.Web/sites/config`` named appsettings.
    """
    settings: dict[str, tuple[Any, Scope]] = {}
    found = False
    for resource in resources(template):
        if resource.existing:
            continue
        scope = Scope(template, resource.path)
        if resource.type == SITE_TYPE:
            listed = _dig(resource.body, "properties", "siteConfig", "appSettings")
            if listed is not None:
                found = True
                settings.update(_settings_list(listed, scope))
        elif resource.type == f"{SITE_TYPE}/config" and resource.body.get("name") == "appsettings":
            found = True
            settings.update(resolve_object(resource.body.get("properties"), scope))
    if not found:
        raise Unresolved("no function app declares app settings")
    return settings


def _settings_list(expr: Any, scope: Scope) -> dict[str, tuple[Any, Scope]]:
    if isinstance(expr, dict) and "loop_type" in expr:
        detail = expr["loop_type"]["detail"]
        item = detail["item_name"]
        body = expr["config"]
        if access_path(body.get("name")) != [item, "key"] or access_path(body.get("value")) != [
            item,
            "value",
        ]:
            raise Unresolved("an appSettings loop must map {name: x.key, value: x.value}")
        function = _function(detail["array_name"])
        if not function or function[0] != "items":
            raise Unresolved("an appSettings loop must run over items(<object>)")
        (argument,) = function[1].values()
        return resolve_object(argument, scope)
    settings = {}
    for item, where in resolve_list(expr, scope):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise Unresolved(f"app setting without a literal name: {json.dumps(item)[:200]}")
        # pycep writes an identifier and a string literal alike; a name that is also a
        # variable or parameter is taken for the identifier and refused.
        if item["name"] in (where.tree.get("variables") or {}) or item["name"] in (
            where.tree.get("parameters") or {}
        ):
            raise Unresolved(f"app setting name {item['name']!r} is computed, not literal")
        settings[item["name"]] = (item.get("value"), where)
    return settings


def check_app_settings(settings: Iterable[str], required: Iterable[str]) -> list[str]:
    """The Bicep settings cover every setting the code reads, except the local-only ones."""
    present = set(settings)
    problems = [
        f"app setting {name} is read by the code but not set in Bicep"
        for name in sorted(set(required) - set(NOT_IN_AZURE) - present)
    ]
    problems += [
        f"app setting {name} must not be set in Azure: {NOT_IN_AZURE[name]}"
        for name in sorted(present & set(NOT_IN_AZURE))
    ]
    return problems


def check_setting_values(
    settings: Mapping[str, tuple[Any, Scope]],
    defaults: Mapping[str, str],
    routes_file: Path = ROUTES_FILE,
) -> list[str]:
    """Container settings come from the routing JSON; parameter defaults match the code's."""
    problems = []
    for name, key in CONTAINER_SETTINGS.items():
        if name not in settings:
            continue  # check_app_settings reports it
        source = json_source(*settings[name])
        if source != (routes_file.resolve(), ["containers", key]):
            problems.append(
                f"{name} must be read from containers.{key} of {routes_file.name}, "
                f"found {source or 'another expression'}"
            )
    for name, (expr, scope) in settings.items():
        default = _parameter_default(expr, scope)
        if default is not None and name in defaults and str(default) != defaults[name]:
            problems.append(
                f"{name}: Bicep default {default!r} differs from the code's {defaults[name]!r}"
            )
    return problems


def _parameter_default(expr: Any, scope: Scope) -> Any:
    """The default of the parameter a value is (or is ``string()`` of), else None."""
    function = _function(expr)
    if function and function[0] == "string":
        (expr,) = function[1].values()
    if not isinstance(expr, str):
        return None
    parameters = scope.tree.get("parameters") or {}
    if expr in parameters:
        return parameters[expr].get("default")
    return None


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
        container = _dig(
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
    resource_id = _dig(destination, "properties", "resourceId")
    if not isinstance(resource_id, str) or "/functions/" not in resource_id:
        problems.append("destination.properties.resourceId must be '<app id>/functions/<name>'")
    for key in ("maxEventsPerBatch", "preferredBatchSizeInKilobytes"):
        if _dig(destination, "properties", key) is None:
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
    if _dig(dead_letter, "identity", "type") != "SystemAssigned":
        problems.append("deadLetterWithResourceIdentity.identity.type must be SystemAssigned")
    destination = dead_letter.get("deadLetterDestination") or {}
    if destination.get("endpointType") != "StorageBlob":
        problems.append("deadLetterDestination.endpointType must be StorageBlob")
    for key in ("resourceId", "blobContainerName"):
        if _dig(destination, "properties", key) is None:
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
    operator = _operator(array)
    gated = (
        operator is not None
        and operator[0] == "conditional"
        and operator[1].get("condition") == "deployEventSubscriptions"
        and operator[1].get("false_value") == []
    )
    if not gated:
        problems.append("must loop over (deployEventSubscriptions ? subscriptions : [])")
    default = _dig(scope.tree, "parameters", "deployEventSubscriptions", "default")
    if gated and default is not False:
        problems.append("parameter deployEventSubscriptions must default to false")
    name = resource.loop["item_name"]
    target = _dig(resource.body, "properties", "destination", "properties", "resourceId")
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
    return problems


# --- Role assignments ------------------------------------------------------------------------


def check_role_assignments(template: Template) -> list[str]:
    """name: guid(<scope>.id, principalId, roleDefinitionId), explicit principalType."""
    problems = []
    for resource in resources(template):
        if resource.type != ROLE_ASSIGNMENT_TYPE or resource.existing:
            continue
        where = f"{template.relative(resource.path)}:{resource.symbol}"
        function = _function(resource.body.get("name"))
        arguments = list(function[1].values()) if function and function[0] == "guid" else []
        scope_symbol = resource.body.get("scope")
        if len(arguments) != 3 or access_path(arguments[0]) != [scope_symbol, "id"]:
            problems.append(f"{where}: name must be guid({scope_symbol}.id, principalId, roleId)")
        else:
            properties = resource.body.get("properties") or {}
            if arguments[1] != properties.get("principalId"):
                problems.append(f"{where}: the guid must use the assignment's principalId")
            if arguments[2] != properties.get("roleDefinitionId"):
                problems.append(f"{where}: the guid must use the assignment's roleDefinitionId")
        if not _dig(resource.body, "properties", "principalType"):
            problems.append(f"{where}: principalType must be explicit")
    return problems


# --- Secrets ---------------------------------------------------------------------------------


def check_no_secrets(infra: Path = INFRA) -> list[str]:
    """No key-based access and no secret parameters anywhere under infra/."""
    problems = []
    for path in sorted(infra.rglob("*")):
        if not path.is_file() or path.suffix not in TEXT_SUFFIXES:
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for what, pattern in SECRET_PATTERNS.items():
                if pattern.search(line):
                    where = path.relative_to(infra).as_posix()
                    problems.append(f"{where}:{number}: {what}: {line.strip()[:120]}")
    return problems


# --- checkov ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckovRun:
    """One checkov scan: its JSON report and the resources its CycloneDX report lists."""

    summary: dict[str, Any]
    failed: list[dict[str, Any]]
    skipped: list[dict[str, Any]]
    parsing_errors: list[str]
    resources: set[tuple[str, str, str]]  # (file relative to the scanned folder, type, symbol)


_PURL = re.compile(r"^pkg:bicep/(?:cli_repo/)?(?P<file>.+?\.bicep)/(?P<resource>[^@]+)@")


def checkov_executable(repo: Path = REPO, environ: Mapping[str, str] | None = None) -> Path:
    """``$CHECKOV`` if set (relative to the repo), else the repo's .venv-checkov."""
    configured = (environ or {}).get("CHECKOV")
    path = Path(configured) if configured else Path(".venv-checkov/bin/checkov")
    return path if path.is_absolute() else repo / path


def run_checkov(
    executable: Path, folder: Path, out: Path, environ: Mapping[str, str]
) -> CheckovRun:
    """Scan ``folder`` offline; raises RuntimeError if checkov did not produce its reports."""
    command = [
        str(executable),
        "--directory",
        str(folder),
        "--framework",
        "bicep",
        "--skip-download",
        "--output",
        "json",
        "--output",
        "cyclonedx_json",
        "--output-file-path",
        str(out),
    ]
    env = {**environ, "BC_SKIP_MAPPING": "TRUE"}
    done = subprocess.run(
        command,
        check=False,
        cwd=folder.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    report_file, bom_file = out / "results_json.json", out / "results_cyclonedx.json"
    # Exit status 1 means "some check failed"; anything else, or no report, is a crash.
    if done.returncode not in (0, 1) or not report_file.exists() or not bom_file.exists():
        raise RuntimeError(
            f"checkov exited with {done.returncode} and no report:\n{done.stderr[-3000:]}"
        )
    reports = json.loads(report_file.read_text(encoding="utf-8"))
    reports = reports if isinstance(reports, list) else [reports]
    report = next((r for r in reports if r.get("check_type") == "bicep"), None)
    if report is None:
        raise RuntimeError(f"checkov produced no bicep report: {json.dumps(reports)[:500]}")
    found = set()
    for component in json.loads(bom_file.read_text(encoding="utf-8")).get("components", []):
        match = _PURL.match(component.get("purl") or component.get("bom-ref") or "")
        if not match:
            raise RuntimeError(f"unexpected CycloneDX component {component}")
        file = Path(match["file"])
        if file.parts and file.parts[0] == folder.name:
            file = Path(*file.parts[1:])
        resource_type, _, symbol = match["resource"].rpartition(".")
        found.add((file.as_posix(), resource_type, symbol))
    results = report["results"]
    return CheckovRun(
        summary=report["summary"],
        failed=results.get("failed_checks", []),
        skipped=results.get("skipped_checks", []),
        parsing_errors=list(results.get("parsing_errors", [])),
        resources=found,
    )


def check_checkov(run: CheckovRun, deployed: set[tuple[str, str, str]]) -> list[str]:
    """No failed check, every file parsed, every deployed resource scanned, every skip reasoned.

    checkov skips a file it cannot parse and only counts it under parsing_errors, and its
    summary's resource_count also counts parameters and leaves out resources no check applies
    to; so the resources are compared one by one with the CycloneDX list of what it scanned.
    """
    problems = [
        f"checkov {c['check_id']} failed on {c['file_path']} {c['resource']}: {c['check_name']}"
        for c in run.failed
    ]
    if run.summary.get("failed"):
        problems.append(f"checkov summary counts {run.summary['failed']} failed checks")
    if run.summary.get("parsing_errors") or run.parsing_errors:
        problems.append(f"checkov could not parse (so did not check): {run.parsing_errors}")
    problems += [
        f"checkov did not scan {file} {kind}.{symbol}"
        for file, kind, symbol in sorted(deployed - run.resources)
    ]
    problems += [
        f"checkov scanned {file} {kind}.{symbol}, which the pycep parse does not deploy"
        for file, kind, symbol in sorted(run.resources - deployed)
    ]
    for skip in run.skipped:
        reason = (skip.get("check_result") or {}).get("suppress_comment") or ""
        if len(reason.strip()) < 30:
            problems.append(f"checkov skip of {skip['check_id']} needs a real reason: {reason!r}")
    return problems
