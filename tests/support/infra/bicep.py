"""Reading the Bicep templates of ``infra/`` with pycep-parser and following the few
expressions the checks need (variables, parameters through modules, ``union()``,
``loadJsonContent``). What cannot be followed raises Unresolved; nothing is guessed.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lark.exceptions import LarkError
from pycep import BicepParser

REPO = Path(__file__).resolve().parents[3]
INFRA = REPO / "infra"
ROUTES_FILE = INFRA / "event-subscriptions.json"


class Unresolved(Exception):
    """An expression these checks cannot follow; reported as a problem, never guessed."""


# --- Reading the templates -------------------------------------------------------------------


def bicep_files(infra: Path = INFRA) -> list[Path]:
    return sorted(infra.rglob("*.bicep"))


def parse(path: Path) -> dict[str, Any]:
    """The pycep-parser tree of a Bicep file (cached by content: tests parse many copies).

    A construct pycep-parser cannot read raises Unresolved naming the file, so a check that
    needs the file fails with the reason instead of passing over it.
    """
    try:
        return _parse_text(path.read_text(encoding="utf-8"))
    except LarkError as error:
        raise Unresolved(f"pycep-parser cannot parse {path}: {error}") from error


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


def dig(value: Any, *keys: str) -> Any:
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


def function_call(expr: Any) -> tuple[str, dict[str, Any]] | None:
    if isinstance(expr, dict) and isinstance(expr.get("function"), dict):
        return expr["function"]["type"], expr["function"].get("parameters") or {}
    return None


def operator_call(expr: Any) -> tuple[str, dict[str, Any]] | None:
    if isinstance(expr, dict) and isinstance(expr.get("operator"), dict):
        return expr["operator"]["type"], expr["operator"].get("operands") or {}
    return None


def access_path(expr: Any) -> list[str] | None:
    """``a.b['c'].d`` as ["a", "b", "c", "d"]; None if ``expr`` is anything else."""
    if isinstance(expr, str):
        return [expr]
    operator = operator_call(expr)
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
    if isinstance(expr, dict) and not function_call(expr) and not operator_call(expr):
        return {str(key): (value, scope) for key, value in expr.items()}
    function = function_call(expr)
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
    operator = operator_call(expr)
    if operator and operator[0] == "conditional":
        return json_source(operator[1]["true_value"], scope)
    function = function_call(expr)
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
