"""The type check: every resource ``main.bicep`` deploys, through its modules and loops, checked
against Azure's published types for its API version.

Bicep type-checks a resource whatever its ``if`` condition, so conditions are not evaluated
here: each resource is walked, and each loop is expanded over its array when the array is known
(the event subscriptions over event-subscriptions.json, for instance). A root parameter takes
the value the caller gives (one per networking mode) or its default.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.infra.bicep import INFRA, Template, Unresolved, unwrap
from tests.support.infra.evaluate import UNKNOWN, Env, Expr, Term, Value, evaluate, loop_items
from tests.support.infra.schema import Types, check

# Keys of a resource body that are Bicep's, not the resource type's.
BICEP_KEYWORDS = frozenset({"parent", "scope", "dependsOn"})
MODULE_KEYS = frozenset({"name", "params", "scope", "dependsOn"})
EXISTING_KEYS = frozenset({"name", "scope", "parent"})


@dataclass
class Report:
    """What one walk found: problems, and how many instances of each resource type it checked."""

    problems: set[str] = field(default_factory=set)
    checked: Counter[str] = field(default_factory=Counter)
    files: set[Path] = field(default_factory=set)


def root_env(template: Template, parameters: Mapping[str, Any]) -> Env:
    """main.bicep's environment: the given parameter values, the defaults for the rest."""
    main = (template.root / "main.bicep").resolve()
    if main not in template.trees:
        raise Unresolved(f"{template.root} has no main.bicep")
    declared = template.trees[main].get("parameters") or {}
    unknown = sorted(set(parameters) - set(declared))
    if unknown:
        raise Unresolved(f"main.bicep declares no parameter {unknown}")
    params: dict[str, Term] = {name: Value(value) for name, value in parameters.items()}
    for name, declaration in declared.items():
        if name not in params and declaration.get("default") is not None:
            params[name] = Expr(declaration["default"], Env(template, main))
    return Env(template, main, params)


def module_env(template: Template, parameters: Mapping[str, Any], symbol: str) -> Env:
    """The environment of main.bicep's module ``symbol`` (its first instance)."""
    env = root_env(template, parameters)
    declaration = (env.tree.get("modules") or {}).get(symbol)
    if declaration is None or declaration.get("type") != "local":
        raise Unresolved(f"main.bicep has no local module {symbol!r}")
    target = (env.path.parent / declaration["detail"]["path"]).resolve()
    report = Report()
    for body, item_env in _instances(declaration["config"], env, symbol, report):
        found = _module_env(body, item_env, target, symbol, report)
        if found is not None and not report.problems:
            return found
    raise Unresolved(f"module {symbol}: {sorted(report.problems)}")


def evaluated_resources(env: Env, symbol: str) -> list[Any]:
    """The value of each instance of resource ``symbol`` of ``env``'s file (UNKNOWN where Azure
    decides), one per loop item."""
    declaration = (env.tree.get("resources") or {}).get(symbol)
    if declaration is None:
        raise Unresolved(f"{env.template.relative(env.path)} has no resource {symbol!r}")
    report = Report()
    found = [
        evaluate(Expr(body, item_env))
        for body, item_env in _instances(declaration["config"], env, symbol, report)
    ]
    if report.problems:
        raise Unresolved(f"resource {symbol}: {sorted(report.problems)}")
    return found


@dataclass(frozen=True)
class Instance:
    """One instance of a resource declaration, as the walk reaches it."""

    where: str  # main.bicep:module>modules/file.bicep:symbol
    declaration: Mapping[str, Any]
    body: dict[str, Any]
    env: Env


def typecheck(
    types: Types,
    parameters: Mapping[str, Any],
    infra: Path = INFRA,
    template: Template | None = None,
) -> Report:
    """Walk ``infra/main.bicep`` with the given root parameter values."""
    template = template or Template.load(infra)
    report = Report()
    for instance in walk(template, parameters, report):
        report.problems.update(
            _check_resource(
                types, instance.declaration, instance.body, instance.env, instance.where
            )
        )
        report.checked[instance.declaration["type"]] += 1
    return report


def walk(template: Template, parameters: Mapping[str, Any], report: Report) -> Iterator[Instance]:
    """Every resource instance main.bicep deploys, through its modules and loops; what cannot
    be walked (and any file never reached) goes into ``report.problems``."""
    yield from _walk_file(root_env(template, parameters), report, trail="main.bicep")
    for path in template.trees:
        if path not in report.files:
            report.problems.add(f"{template.relative(path)}: not reached from main.bicep")


def _walk_file(env: Env, report: Report, trail: str) -> Iterator[Instance]:
    report.files.add(env.path)
    tree = env.tree
    if tree.get("globals", {}).get("scope", {}).get("value") not in (None, "resourceGroup"):
        report.problems.add(f"{trail}: only resourceGroup-scoped files are walked")
    for symbol, declaration in (tree.get("resources") or {}).items():
        where = f"{trail}:{symbol}"
        for body, item_env in _instances(declaration["config"], env, where, report):
            yield Instance(where, declaration, body, item_env)
    for symbol, declaration in (tree.get("modules") or {}).items():
        where = f"{trail}:{symbol}"
        if declaration.get("type") != "local":
            report.problems.add(f"{where}: only local modules can be walked")
            continue
        target = (env.path.parent / declaration["detail"]["path"]).resolve()
        if target not in env.template.trees:
            report.problems.add(f"{where}: module file {declaration['detail']['path']} not found")
            continue
        for body, item_env in _instances(declaration["config"], env, where, report):
            module_env = _module_env(body, item_env, target, where, report)
            if module_env is not None:
                yield from _walk_file(
                    module_env, report, f"{where}>{env.template.relative(target)}"
                )


def _instances(
    config: Any, env: Env, where: str, report: Report
) -> Iterator[tuple[dict[str, Any], Env]]:
    """(body, environment) of each instance of a declaration: one per loop item."""
    try:
        body, loop, _condition = unwrap(config)
    except Unresolved as error:
        report.problems.add(f"{where}: {error}")
        return
    if loop is None:
        yield body, env
        return
    for item_env in loop_items(loop, env):
        yield body, item_env


def _check_resource(
    types: Types, declaration: Mapping[str, Any], body: dict[str, Any], env: Env, where: str
) -> Iterator[str]:
    resource_type, version = declaration["type"], declaration.get("api_version")
    label = f"{where} ({resource_type}@{version})"
    body_type = types.resource_body(resource_type, str(version))
    if body_type is None:
        yield (
            f"{label}: no such type and API version in Azure's published types "
            f"({types.source['repository']} at {types.source['commit'][:12]}); a new version "
            "needs `python -m tools.bicep_types regenerate <checkout>`"
        )
        return
    if declaration.get("existing"):
        for key in sorted(set(body) - EXISTING_KEYS):
            yield f"{label} {key}: an existing resource takes only {sorted(EXISTING_KEYS)}"
        return
    for problem in check(Expr(body, env), body_type, "", skip=BICEP_KEYWORDS):
        yield f"{label} {problem}"


def _module_env(
    body: dict[str, Any], env: Env, target: Path, where: str, report: Report
) -> Env | None:
    """The module file's environment: its parameters bound to what the caller passes."""
    for key in sorted(set(body) - MODULE_KEYS):
        report.problems.add(f"{where} {key}: a module takes only {sorted(MODULE_KEYS)}")
    passed = body.get("params") or {}
    if not isinstance(passed, dict):
        report.problems.add(f"{where} params: must be written as an object literal")
        return None
    declared = env.template.trees[target].get("parameters") or {}
    module = env.template.relative(target)
    params: dict[str, Term] = {}
    for name in sorted(set(passed) - set(declared)):
        report.problems.add(f"{where} params.{name}: {module} declares no such parameter")
    for name, declaration in declared.items():
        if name in passed:
            params[name] = Expr(passed[name], env)
            problem = _not_allowed(declaration, params[name])
            if problem:
                report.problems.add(f"{where} params.{name}: {problem} (@allowed in {module})")
        elif declaration.get("default") is not None:
            params[name] = Expr(declaration["default"], Env(env.template, target))
        else:
            report.problems.add(f"{where} params.{name}: required parameter of {module} not set")
            params[name] = Value(UNKNOWN)
    return Env(env.template, target, params)


def _not_allowed(declaration: Mapping[str, Any], argument: Term) -> str | None:
    """Bicep refuses a known argument outside the parameter's @allowed list (a value that
    depends on the loop item, such as a private endpoint's sub-resource, included)."""
    for decorator in declaration.get("decorators") or []:
        if decorator.get("type") != "allowed":
            continue
        value = evaluate(argument)
        choices = decorator.get("argument")
        if value is UNKNOWN or not isinstance(choices, list) or value in choices:
            return None
        return f"{value!r} is not one of {choices}"
    return None
