"""App settings in the templates: every setting the code reads is set, none of the local-only
ones is, and the values come from where they should (the routing JSON, the code's defaults).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from tests.support.infra.bicep import (
    ROUTES_FILE,
    Scope,
    Template,
    Unresolved,
    access_path,
    dig,
    function_call,
    json_source,
    resolve_list,
    resolve_object,
    resources,
)

# Settings the code reads that must NOT be set in Azure, and why.
NOT_IN_AZURE = {
    "DATA_STORAGE": "a connection string: local runs only (Azure uses the identity)",
    "DATA_STORAGE__accountName": "an alternative to DATA_STORAGE__blobServiceUri",
    "THUMBNAIL_SIZE": "the template sets THUMBNAIL_SIZES, which it would have to agree with",
}

# App setting -> key of the ``containers`` object of event-subscriptions.json it must come from.
CONTAINER_SETTINGS = {
    "THUMBNAIL_CONTAINER": "thumbnails",
    "DISPATCH_LEDGER_CONTAINER": "dispatchLedger",
    "DEADLETTER_CONTAINER": "deadLetter",
}

SITE_TYPE = "Microsoft.Web/sites"

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
            listed = dig(resource.body, "properties", "siteConfig", "appSettings")
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
        function = function_call(detail["array_name"])
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
    function = function_call(expr)
    if function and function[0] == "string":
        (expr,) = function[1].values()
    if not isinstance(expr, str):
        return None
    parameters = scope.tree.get("parameters") or {}
    if expr in parameters:
        return parameters[expr].get("default")
    return None
