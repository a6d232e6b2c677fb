"""Cutting one types.json down to the resource types the templates use and the nodes they reach.

A types.json is an array whose nodes point at each other with ``{"$ref": "#/<index>"}``; the
pruned array keeps the reached nodes in their original order and renumbers every reference.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from tools.bicep_types.source import Node, SourceError, resource_type_index

_PREFIX = "#/"


def _references(value: Any) -> Iterable[int]:
    if isinstance(value, dict):
        ref = value.get("$ref")
        if isinstance(ref, str) and ref.startswith(_PREFIX):
            yield int(ref[len(_PREFIX) :])
        for item in value.values():
            yield from _references(item)
    elif isinstance(value, list):
        for item in value:
            yield from _references(item)


def _renumber(value: Any, new_index: dict[int, int]) -> Any:
    if isinstance(value, dict):
        ref = value.get("$ref")
        if isinstance(ref, str) and ref.startswith(_PREFIX) and len(value) == 1:
            return {"$ref": f"{_PREFIX}{new_index[int(ref[len(_PREFIX) :])]}"}
        return {key: _renumber(item, new_index) for key, item in value.items()}
    if isinstance(value, list):
        return [_renumber(item, new_index) for item in value]
    return value


def prune(nodes: list[Node], resource_names: Iterable[str]) -> list[Node]:
    """The ResourceType nodes named (``Type@version``) and every node they reach, re-indexed."""
    roots = []
    for name in resource_names:
        index = resource_type_index(nodes, name)
        if index is None:
            raise SourceError(f"{name} is not in this types.json")
        roots.append(index)
    reached: set[int] = set()
    pending = list(roots)
    while pending:
        index = pending.pop()
        if index in reached:
            continue
        if not 0 <= index < len(nodes):
            raise SourceError(f"reference #/{index} points outside the array")
        reached.add(index)
        pending.extend(_references(nodes[index]))
    order = sorted(reached)
    new_index = {old: new for new, old in enumerate(order)}
    pruned: list[Node] = [_renumber(nodes[old], new_index) for old in order]
    return pruned
