"""A small evaluator of the Bicep expressions pycep-parser gives, for the type check.

It computes what can be known before deployment (literals, parameters bound by a caller or a
default, variables, ``loadJsonContent``, property access, a few functions) and answers UNKNOWN
for the rest (resource properties, ``uniqueString``, ``environment()``...). The type check uses
it to expand loops over known arrays and to read values that come from JSON files.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from operator import ge, gt, le, lt
from pathlib import Path
from typing import Any

from tests.support.infra.bicep import Template, function_call, operator_call


class _Unknown:
    """A value only Azure knows at deployment time."""

    def __repr__(self) -> str:
        return "UNKNOWN"


UNKNOWN: Any = _Unknown()


@dataclass(frozen=True)
class Value:
    """A known value (JSON-like data that may contain UNKNOWN), as opposed to an expression."""

    data: Any


@dataclass(frozen=True)
class Env:
    """Where an expression is read: its file, the parameters it was given, its loop variables."""

    template: Template
    path: Path
    params: Mapping[str, Term] = field(default_factory=dict)
    locals: Mapping[str, Term] = field(default_factory=dict)

    @property
    def tree(self) -> dict[str, Any]:
        return self.template.trees[self.path]

    def with_local(self, name: str | None, term: Term) -> Env:
        if not name:
            return self
        return replace(self, locals={**self.locals, name: term})

    def file_scope(self) -> Env:
        """The same file without loop variables (where a variable's expression is read)."""
        return replace(self, locals={})

    def symbols(self) -> set[str]:
        tree = self.tree
        return set(tree.get("resources") or {}) | set(tree.get("modules") or {})


@dataclass(frozen=True)
class Expr:
    """An expression as pycep-parser wrote it, with the environment to read it in."""

    expr: Any
    env: Env


Term = Expr | Value

_MAX_DEPTH = 64


def lookup(name: str, env: Env) -> Term | None:
    """What an identifier stands for, or None if ``name`` is not an identifier here.

    pycep-parser writes a string literal and an identifier alike; a string that names a loop
    variable, parameter or variable of the file is taken for that name.
    """
    if name in env.locals:
        return env.locals[name]
    if name in (env.tree.get("parameters") or {}):
        return env.params.get(name, Value(UNKNOWN))
    variables = env.tree.get("variables") or {}
    if name in variables:
        return Expr(variables[name]["value"], env.file_scope())
    if name in env.symbols():
        return Value(UNKNOWN)
    return None


def evaluate(term: Term, depth: int = 0) -> Any:
    """The value of ``term`` (JSON-like data, UNKNOWN where Azure decides)."""
    if isinstance(term, Value):
        return term.data
    if depth > _MAX_DEPTH:
        raise RecursionError(f"expression nests deeper than {_MAX_DEPTH}: {term.expr!r:.200}")
    expr, env = term.expr, term.env
    if isinstance(expr, str):
        found = lookup(expr, env)
        if found is not None:
            return evaluate(found, depth + 1)
        return _interpolated(expr, env, depth) if "${" in expr else expr
    if expr is None or isinstance(expr, bool | int | float):
        return expr
    if isinstance(expr, list):
        return [evaluate(Expr(item, env), depth + 1) for item in expr]
    if not isinstance(expr, dict):
        return UNKNOWN
    if "loop_type" in expr:
        return _loop_values(expr, env, depth)
    function = function_call(expr)
    if function:
        return _function_value(function[0], list(function[1].values()), env, depth)
    operator = operator_call(expr)
    if operator:
        return _operator_value(operator[0], operator[1], env, depth)
    return {object_key(key): evaluate(Expr(value, env), depth + 1) for key, value in expr.items()}


_PLACEHOLDER = re.compile(r"\$\{([^{}]*)\}")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _interpolated(text: str, env: Env, depth: int) -> Any:
    """``'/${name}'``: known when every placeholder is one name with a string or number
    value; anything richer inside ``${}`` stays UNKNOWN."""
    values = []
    for name in _PLACEHOLDER.findall(text):
        found = lookup(name.strip(), env) if _IDENTIFIER.match(name.strip()) else None
        value = evaluate(found, depth + 1) if found is not None else UNKNOWN
        if isinstance(value, bool) or not isinstance(value, str | int):
            return UNKNOWN
        values.append(str(value))
    parts = iter(values)
    return _PLACEHOLDER.sub(lambda _: next(parts), text)


def object_key(key: Any) -> str:
    """A key of an object literal: pycep-parser keeps the quotes of a quoted key ('odata.type')."""
    text = str(key)
    if len(text) >= 2 and text[0] == text[-1] == "'":
        return text[1:-1]
    return text


def loop_items(detail: Mapping[str, Any], env: Env) -> list[Env]:
    """One environment per item of a for-loop; one with UNKNOWN items if the array is unknown
    or empty."""
    array = evaluate(Expr(detail["array_name"], env))
    item, index = detail.get("item_name"), detail.get("index_name")
    if not isinstance(array, list) or not array:
        # Bicep type-checks the body of a loop over an empty array too.
        return [env.with_local(item, Value(UNKNOWN)).with_local(index, Value(UNKNOWN))]
    return [
        env.with_local(item, Value(value)).with_local(index, Value(number))
        for number, value in enumerate(array)
    ]


def _loop_values(expr: dict[str, Any], env: Env, depth: int) -> Any:
    detail = expr["loop_type"]["detail"]
    if not isinstance(evaluate(Expr(detail["array_name"], env), depth + 1), list):
        return UNKNOWN
    items = loop_items(detail, env)
    return [evaluate(Expr(expr["config"], item_env), depth + 1) for item_env in items]


def _function_value(name: str, arguments: list[Any], env: Env, depth: int) -> Any:
    if name == "load_json_content":
        file = (env.path.parent / arguments[0]).resolve()
        data = json.loads(file.read_text(encoding="utf-8"))
        json_path = arguments[1] if len(arguments) > 1 else None
        for key in [k for k in (json_path or "").lstrip("$").split(".") if k]:
            data = data[key]
        return data
    values = [evaluate(Expr(argument, env), depth + 1) for argument in arguments]
    if any(value is UNKNOWN for value in values):
        return UNKNOWN
    if name == "union" and all(isinstance(v, dict) for v in values):
        merged: dict[str, Any] = {}
        for value in values:
            merged.update(value)
        return merged
    if name in ("union", "concat") and all(isinstance(v, list) for v in values):
        joined = [item for value in values for item in value]
        if name == "concat":
            return joined
        return [item for n, item in enumerate(joined) if item not in joined[:n]]
    if name == "empty" and len(values) == 1:
        return values[0] in ("", [], {}, None)
    if name == "items" and len(values) == 1 and isinstance(values[0], dict):
        return [{"key": k, "value": v} for k, v in sorted(values[0].items())]
    if name == "string" and len(values) == 1:
        value = values[0]
        return json.dumps(value) if isinstance(value, bool | dict | list) else str(value)
    return UNKNOWN


def _operator_value(name: str, operands: Mapping[str, Any], env: Env, depth: int) -> Any:
    def value(key: str) -> Any:
        return evaluate(Expr(operands.get(key), env), depth + 1)

    if name == "conditional":
        condition = value("condition")
        if not isinstance(condition, bool):
            return UNKNOWN
        return value("true_value" if condition else "false_value")
    if name in ("property_accessor", "index_accessor"):
        return _access(name, operands, env, depth)
    if name == "not":
        operand = value("bool_value")
        return (not operand) if isinstance(operand, bool) else UNKNOWN
    left, right = value("operand_1"), value("operand_2")
    if left is UNKNOWN or right is UNKNOWN:
        return UNKNOWN
    if name == "equals":
        return left == right
    if name == "not_equals":
        return left != right
    if name == "and" and isinstance(left, bool) and isinstance(right, bool):
        return left and right
    if name == "or" and isinstance(left, bool) and isinstance(right, bool):
        return left or right
    if name in _COMPARISONS and _comparable(left, right):
        return _COMPARISONS[name](left, right)
    return UNKNOWN


# Bicep compares two ints or two strings; anything else is left unknown.
_COMPARISONS: dict[str, Callable[[Any, Any], bool]] = {
    "less_than": lt,
    "less_than_or_equals": le,
    "greater_than": gt,
    "greater_than_or_equals": ge,
}


def _comparable(left: Any, right: Any) -> bool:
    both_int = all(isinstance(v, int) and not isinstance(v, bool) for v in (left, right))
    return both_int or (isinstance(left, str) and isinstance(right, str))


def _access(name: str, operands: Mapping[str, Any], env: Env, depth: int) -> Any:
    """``a.b`` and ``a[k]``. pycep nests a chain to the right, ``a.b.c`` as a.(b.c) and
    ``a.b[0]`` as a.(b[0]): inside a property access the left-most names are property names,
    never identifiers, and only index expressions are evaluated."""
    target = evaluate(Expr(operands["operand_1"], env), depth + 1)
    if name == "index_accessor":
        return _step(target, evaluate(Expr(operands["operand_2"], env), depth + 1))
    return _chain(target, operands["operand_2"], env, depth)


def _chain(target: Any, chain: Any, env: Env, depth: int) -> Any:
    if isinstance(chain, str):
        return _step(target, chain)
    operator = operator_call(chain)
    if not operator or operator[0] not in ("property_accessor", "index_accessor"):
        return UNKNOWN
    target = _chain(target, operator[1]["operand_1"], env, depth)
    if operator[0] == "property_accessor":
        return _chain(target, operator[1]["operand_2"], env, depth)
    return _step(target, evaluate(Expr(operator[1]["operand_2"], env), depth + 1))


def _step(target: Any, key: Any) -> Any:
    if isinstance(target, dict) and isinstance(key, str):
        return target.get(key, UNKNOWN)
    if isinstance(target, list) and isinstance(key, int) and -len(target) <= key < len(target):
        return target[key]
    return UNKNOWN
