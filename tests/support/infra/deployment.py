"""The two deployment phases agree: azd expands the ${NAME=default} placeholders of
main.parameters.json, but the postdeploy hooks call az, which does not, so each hook must pass
every placeholder's parameter again from the environment."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.support.infra.bicep import INFRA

_PLACEHOLDER = re.compile(r"^\$\{(?P<variable>\w+)(?:=[^}]*)?\}$")
HOOKS = ("hooks/postdeploy.sh", "hooks/postdeploy.ps1")


def placeholders(infra: Path = INFRA) -> dict[str, str]:
    """{parameter: environment variable} of every placeholder in main.parameters.json."""
    given = json.loads((infra / "main.parameters.json").read_text(encoding="utf-8"))
    found = {}
    for name, entry in given["parameters"].items():
        match = _PLACEHOLDER.match(str(entry.get("value")))
        if match:
            found[name] = match["variable"]
    return found


def check_hooks_pass_placeholders(infra: Path = INFRA) -> list[str]:
    problems = []
    for hook in HOOKS:
        text = (infra / hook).read_text(encoding="utf-8")
        for parameter, variable in sorted(placeholders(infra).items()):
            if not re.search(rf"--parameters \"?{parameter}=", text):
                problems.append(f"{hook}: does not pass --parameters {parameter}=")
            if variable not in text:
                problems.append(f"{hook}: does not read {variable} for {parameter}")
    return problems


def cli_deployments(readme: str) -> list[str]:
    """The ``az deployment group create`` commands of docs/deploy.md's "Deploy with the Azure
    CLI" section, each joined across its backslash-continued lines."""
    section = readme.split("## Deploy with the Azure CLI", 1)[1].split("\n## ", 1)[0]
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", section, flags=re.S):
        for command in block.replace("\\\n", " ").splitlines():
            if command.strip().startswith("az deployment group create"):
                commands.append(command.strip())
    return commands


def check_readme_cli_passes_placeholders(readme: str, infra: Path = INFRA) -> list[str]:
    """Like the hooks, every docs/deploy.md az command must override each azd placeholder, or az
    sends the placeholder text itself to ARM."""
    commands = cli_deployments(readme)
    if not commands:
        return ["docs/deploy.md's Azure CLI section has no az deployment group create command"]
    problems = []
    for number, command in enumerate(commands, 1):
        for parameter in sorted(placeholders(infra)):
            if not re.search(rf"(?:-p|--parameters) \"?{parameter}=", command):
                problems.append(
                    f"docs/deploy.md az command {number}: does not pass -p {parameter}="
                )
    return problems


def documented_parameters(readme: str) -> set[str]:
    """Parameter names in the first column of docs/deploy.md's "## Parameters" table."""
    section = readme.split("## Parameters\n", 1)[1].split("\n## ", 1)[0]
    names: set[str] = set()
    for line in section.splitlines():
        if line.startswith("| `"):
            first_column = line.split("|")[1]
            names.update(re.findall(r"`(\w+)`", first_column))
    return names
