"""Checking values against Azure's published Bicep types (the snapshot in tests/data/bicep-types).

The snapshot holds, for each resource type and API version the templates use, the type nodes
``bicep build`` validates against: ObjectType properties with flags (Required=1, ReadOnly=2),
UnionType of StringLiteralType for enums, DiscriminatedObjectType for endpointType-like choices,
ArrayType, and scalar types. This module answers "what is wrong with this value at this place".
"""

from __future__ import annotations

import json
from collections.abc import Generator, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.infra.bicep import REPO, function_call, operator_call
from tests.support.infra.evaluate import (
    UNKNOWN,
    Expr,
    Term,
    Value,
    evaluate,
    lookup,
    loop_items,
    object_key,
)

SNAPSHOT = REPO / "tests" / "data" / "bicep-types"
REQUIRED, READ_ONLY = 1, 2
_SCALARS = {"StringType": str, "IntegerType": int, "BooleanType": bool}


class Types:
    """The snapshot: SOURCE.json's list of resource types, and each file's type nodes, read
    once when first needed."""

    def __init__(self, folder: Path = SNAPSHOT) -> None:
        self.folder = folder
        self.source = json.loads((folder / "SOURCE.json").read_text(encoding="utf-8"))
        self._files: dict[str, list[dict[str, Any]]] = {}
        self._resources = {name.lower(): file for name, file in self.source["resources"].items()}

    def nodes(self, file: str) -> list[dict[str, Any]]:
        if file not in self._files:
            self._files[file] = json.loads((self.folder / file).read_text(encoding="utf-8"))
        return self._files[file]

    def resource_body(self, resource_type: str, version: str) -> TypeRef | None:
        """The body type of ``resource_type@version``; None if the snapshot has no such type."""
        name = f"{resource_type}@{version}".lower()
        file = self._resources.get(name)
        if file is None:
            return None
        for node in self.nodes(file):
            if node["$type"] == "ResourceType" and node["name"].lower() == name:
                return TypeRef(self, file, node["body"])
        return None


@dataclass(frozen=True)
class TypeRef:
    """A ``{"$ref": "#/<index>"}`` of one snapshot file: references never leave their file."""

    types: Types
    file: str
    ref: Mapping[str, str]

    @property
    def node(self) -> dict[str, Any]:
        index = int(self.ref["$ref"].removeprefix("#/"))
        return self.types.nodes(self.file)[index]

    def to(self, ref: Mapping[str, str]) -> TypeRef:
        return TypeRef(self.types, self.file, ref)


def describe(node: Mapping[str, Any]) -> str:
    if node["$type"] == "StringLiteralType":
        return repr(node["value"])
    return str(node.get("name") or node["$type"])


def enum_values(node: Mapping[str, Any], type_ref: TypeRef) -> tuple[set[Any], bool] | None:
    """(allowed literal values, open) of a union of literals; None if it is another union."""
    values, open_ = set(), False
    for element in node["elements"]:
        inner = type_ref.to(element).node
        if inner["$type"] == "StringLiteralType":
            values.add(inner["value"])
        elif inner["$type"] in _SCALARS:
            open_ = True
        else:
            return None
    return values, open_


# --- Walking a value along its type ----------------------------------------------------------


def check(
    term: Term, type_ref: TypeRef, at: str, skip: frozenset[str] = frozenset()
) -> Iterator[str]:
    """Problems of ``term`` as a value of ``type_ref``; ``skip`` names Bicep keywords
    (parent, scope, dependsOn) that a resource body may hold beside the type's properties."""
    if isinstance(term, Expr):
        yield from _check_expr(term, type_ref, at, skip)
        return
    data = term.data
    if data is UNKNOWN:
        return
    if isinstance(data, dict):
        children = {key: Value(value) for key, value in data.items()}
        yield from _check_object(children, type_ref, at, complete=True, skip=skip)
    elif isinstance(data, list):
        yield from _check_items([Value(item) for item in data], type_ref, at)
    else:
        yield from _check_scalar(data, type_ref, at)


def _check_expr(term: Expr, type_ref: TypeRef, at: str, skip: frozenset[str]) -> Iterator[str]:
    expr, env = term.expr, term.env
    if isinstance(expr, str):
        found = lookup(expr, env)
        if found is not None:
            yield from check(found, type_ref, at, skip)
        elif "${" not in expr:
            yield from _check_scalar(expr, type_ref, at)
        else:
            yield from _check_scalar(UNKNOWN, type_ref, at, kind=str)
        return
    if isinstance(expr, list):
        yield from _check_items([Expr(item, env) for item in expr], type_ref, at)
        return
    if not isinstance(expr, dict):
        yield from check(Value(expr), type_ref, at)
        return
    if "loop_type" in expr:
        node = type_ref.node
        if node["$type"] != "ArrayType":
            yield f"{at}: a for-expression where {describe(node)} is expected"
            return
        item_type = type_ref.to(node["itemType"])
        for number, item_env in enumerate(loop_items(expr["loop_type"]["detail"], env)):
            yield from check(Expr(expr["config"], item_env), item_type, f"{at}[{number}]")
        return
    operator = operator_call(expr)
    if operator and operator[0] == "conditional":
        # Bicep checks both branches, whichever the condition picks at deployment.
        for branch in ("true_value", "false_value"):
            yield from check(Expr(operator[1][branch], env), type_ref, at, skip)
        return
    function = function_call(expr)
    if function and function[0] == "union" and type_ref.node["$type"] != "ArrayType":
        # Each argument holds some of the keys: check them, but not what is required.
        for argument in function[1].values():
            yield from _check_partial(Expr(argument, env), type_ref, at, skip)
        return
    if function or operator:
        yield from check(Value(evaluate(term)), type_ref, at, skip)
        return
    children = {object_key(key): Expr(value, env) for key, value in expr.items()}
    yield from _check_object(children, type_ref, at, complete=True, skip=skip)


def _check_partial(term: Expr, type_ref: TypeRef, at: str, skip: frozenset[str]) -> Iterator[str]:
    value = term.expr
    if isinstance(value, dict) and not function_call(value) and not operator_call(value):
        children = {object_key(key): Expr(item, term.env) for key, item in value.items()}
        yield from _check_object(children, type_ref, at, complete=False, skip=skip)
        return
    data = evaluate(term)
    if isinstance(data, dict):
        children = {key: Value(item) for key, item in data.items()}
        yield from _check_object(children, type_ref, at, complete=False, skip=skip)


def _check_items(items: list[Term], type_ref: TypeRef, at: str) -> Iterator[str]:
    node = type_ref.node
    if node["$type"] == "AnyType":
        return
    if node["$type"] != "ArrayType":
        yield f"{at}: an array where {describe(node)} is expected"
        return
    for number, item in enumerate(items):
        yield from check(item, type_ref.to(node["itemType"]), f"{at}[{number}]")


def _check_scalar(
    value: Any, type_ref: TypeRef, at: str, kind: type | None = None
) -> Iterator[str]:
    node = type_ref.node
    kind = kind or type(value)
    if value is None:
        return  # null leaves an optional property out
    match node["$type"]:
        case "AnyType":
            return
        case "StringLiteralType":
            if value is not UNKNOWN and value != node["value"]:
                yield f"{at}: {value!r} is not {node['value']!r}"
        case "UnionType":
            # An open union (literals plus StringType) is an extensible enum: Bicep takes any
            # string, but the resource provider knows only the literals of this API version.
            enum = enum_values(node, type_ref)
            if enum is None or value is UNKNOWN:
                return
            allowed, _open = enum
            if allowed and value not in allowed:
                yield f"{at}: {value!r} is not one of {sorted(map(str, allowed))}"
        case "StringType" | "IntegerType" | "BooleanType":
            expected = _SCALARS[node["$type"]]
            if value is not UNKNOWN and kind is not expected:
                yield f"{at}: {value!r} where {node['$type']} is expected"
        case _:
            if value is not UNKNOWN:
                yield f"{at}: {value!r} where {describe(node)} is expected"


def _check_object(
    children: Mapping[str, Term], type_ref: TypeRef, at: str, complete: bool, skip: frozenset[str]
) -> Iterator[str]:
    node = type_ref.node
    if node["$type"] == "AnyType":
        return
    discriminator = node.get("discriminator")
    if node["$type"] == "DiscriminatedObjectType":
        properties, complete, label = yield from _discriminated(children, type_ref, at, complete)
        additional = None
    elif node["$type"] == "ObjectType":
        properties = _properties(node.get("properties", {}), type_ref)
        additional = node.get("additionalProperties")
        label = describe(node)
    else:
        yield f"{at}: an object where {describe(node)} is expected"
        return
    for key, child in children.items():
        where = f"{at}.{key}" if at else key
        if key in skip or (key == discriminator and key not in properties):
            continue
        if key in properties:
            child_type, flags = properties[key]
            if flags & READ_ONLY and not flags & REQUIRED:
                yield f"{where}: read-only property written"
                continue
            if child_type is not None:
                yield from check(child, child_type, where)
        elif additional is not None:
            yield from check(child, type_ref.to(additional), where)
        else:
            near = [name for name in properties if name.lower() == key.lower()]
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            yield f"{where}: no such property in {label}{hint}"
    if complete:
        for key, (_, flags) in properties.items():
            if flags & REQUIRED and not flags & READ_ONLY and key not in children:
                yield (
                    f"{at}.{key}: required property missing"
                    if at
                    else f"{key}: required property missing"
                )


def _discriminated(
    children: Mapping[str, Term], type_ref: TypeRef, at: str, complete: bool
) -> Generator[str, None, tuple[dict[str, tuple[TypeRef | None, int]], bool, str]]:
    """Yields problems, returns (properties, complete, label): the base properties plus those
    of the element the discriminator picks, or of every element when it is not known."""
    node = type_ref.node
    key = node["discriminator"]
    properties = _properties(node.get("baseProperties", {}), type_ref)
    elements = {name: type_ref.to(ref).node for name, ref in node["elements"].items()}
    chosen = evaluate(children[key]) if key in children else UNKNOWN
    if key not in children and complete:
        yield f"{at}.{key}: required property missing (one of {sorted(elements)})"
    elif chosen is not UNKNOWN and chosen not in elements:
        yield f"{at}.{key}: {chosen!r} is not one of {sorted(elements)}"
        chosen = UNKNOWN
    if chosen is UNKNOWN:
        for element in elements.values():
            for name in _properties(element.get("properties", {}), type_ref):
                # Which element applies is not known: the name must exist, any value goes.
                properties.setdefault(name, (None, 0))
        properties.pop(key, None)
        return properties, False, describe(node)
    properties.update(_properties(elements[chosen].get("properties", {}), type_ref))
    return properties, complete, describe(elements[chosen])


def _properties(
    declared: Mapping[str, Mapping[str, Any]], type_ref: TypeRef
) -> dict[str, tuple[TypeRef | None, int]]:
    return {name: (type_ref.to(p["type"]), p.get("flags", 0)) for name, p in declared.items()}
