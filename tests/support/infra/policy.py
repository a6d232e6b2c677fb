"""Rules every template follows: deterministic role assignment names with an explicit
principal type, and no key-based access or secret parameters anywhere under ``infra/``.
"""

from __future__ import annotations

import re
from pathlib import Path

from tests.support.infra.bicep import (
    INFRA,
    Template,
    access_path,
    dig,
    function_call,
    resources,
)

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

# --- Role assignments ------------------------------------------------------------------------


def check_role_assignments(template: Template) -> list[str]:
    """name: guid(<scope>.id, principalId, roleDefinitionId), explicit principalType."""
    problems = []
    for resource in resources(template):
        if resource.type != ROLE_ASSIGNMENT_TYPE or resource.existing:
            continue
        where = f"{template.relative(resource.path)}:{resource.symbol}"
        function = function_call(resource.body.get("name"))
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
        if not dig(resource.body, "properties", "principalType"):
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
