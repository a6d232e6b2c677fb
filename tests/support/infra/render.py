"""One mode of the templates, written out for checkov. checkov reads each file on its own and
cannot follow a module parameter to main.bicep (and it resolves parameter defaults across all
files of a scan, so same-named parameters of two files mix), so a module is rendered with the
arguments main.bicep passes it in that mode written in place of the parameters."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from tests.support.infra.bicep import Template, Unresolved, unwrap
from tests.support.infra.evaluate import UNKNOWN, Expr, evaluate
from tests.support.infra.typecheck import root_env

# `  property: parameterName` alone on its line.
_USE = re.compile(r"^(?P<key>\s*[\w']+: )(?P<name>\w+)$", re.M)


def module_arguments(
    template: Template, parameters: Mapping[str, Any], symbol: str
) -> dict[str, Any]:
    """The known values main.bicep passes to its module ``symbol`` for these parameters."""
    env = root_env(template, parameters)
    declaration = (env.tree.get("modules") or {}).get(symbol)
    if declaration is None:
        raise Unresolved(f"main.bicep has no module {symbol!r}")
    body, _, _ = unwrap(declaration["config"])
    values = {name: evaluate(Expr(expr, env)) for name, expr in (body.get("params") or {}).items()}
    return {name: value for name, value in values.items() if _literal(value) is not None}


def _literal(value: Any) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and value is not UNKNOWN:
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return None


def inline_arguments(text: str, values: Mapping[str, Any]) -> tuple[str, set[str]]:
    """``text`` with every ``key: <parameter>`` line of a given parameter set to its literal
    value; returns the text and the parameters it replaced."""
    replaced: set[str] = set()

    def replace(match: re.Match[str]) -> str:
        name = match["name"]
        literal = _literal(values[name]) if name in values else None
        if literal is None:
            return match[0]
        replaced.add(name)
        return f"{match['key']}{literal}"

    return _USE.sub(replace, text), replaced


def without_skips(text: str, check_ids: Iterable[str]) -> str:
    """``text`` without the checkov suppressions of these checks."""
    ids = "|".join(re.escape(i) for i in check_ids)
    return re.sub(rf"^\s*//checkov:skip=(?:{ids}):.*\n", "", text, flags=re.M)
