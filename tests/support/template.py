"""Checks of the template's own files that no installable tool makes here: what actionlint would
catch in our workflows (it cannot be installed on our machines), and what the workflows, the
dev container and VS Code's files must say. Each check returns its problems as sentences."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parent.parent.parent
# What `azd pipeline config` writes as repository variables for a Bicep template deployed at
# resource-group scope (azure-dev cli/azd/pkg/pipeline/github_provider.go, setPipelineVariables),
# before the ones azure.yaml lists under pipeline.variables.
AZD_PIPELINE_VARIABLES = frozenset(
    {
        "AZURE_ENV_NAME",
        "AZURE_LOCATION",
        "AZURE_SUBSCRIPTION_ID",
        "AZURE_TENANT_ID",
        "AZURE_CLIENT_ID",
        "AZURE_RESOURCE_GROUP",
    }
)
CONTEXTS = frozenset({"github", "env", "vars", "secrets", "steps", "job", "runner", "inputs"})
_EXPRESSION = re.compile(r"\$\{\{(.*?)\}\}")
_NAME = re.compile(r"(?<![\w.'\"-])([A-Za-z_][\w-]*)((?:\.[\w-]+)*)")
_LITERALS = frozenset({"true", "false", "null"})
_FUNCTIONS = frozenset(
    {"contains", "startsWith", "endsWith", "format", "join", "toJSON", "fromJSON", "hashFiles"}
    | {"success", "always", "cancelled", "failure"}
)
_PINNED = re.compile(r"^[\w.-]+/[\w.-]+@v\d+$")
_PLACEHOLDER = re.compile(r"\$\{([A-Z][A-Z0-9_]*)")


def load_yaml(path: Path) -> Any:
    return YAML(typ="safe").load(path.read_text(encoding="utf-8"))


def triggers(workflow: Mapping[str, Any]) -> Mapping[str, Any]:
    """The `on:` block (YAML 1.1 loaders read the key as True; ruamel reads it as "on")."""
    on = workflow.get("on", workflow.get(True))
    if isinstance(on, str):
        return {on: None}
    if isinstance(on, list):
        return {name: None for name in on}
    return on or {}


def steps(workflow: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    for job_name, job in (workflow.get("jobs") or {}).items():
        for step in job.get("steps") or []:
            yield job_name, step


def check_expressions(workflow: Mapping[str, Any], allowed_vars: frozenset[str]) -> list[str]:
    """Every ${{ }} names a known context; vars.X is one azd writes; steps.<id> exists in its
    job; no expression calls a function GitHub does not have."""
    problems = []
    for job_name, job in (workflow.get("jobs") or {}).items():
        ids = {step.get("id") for step in job.get("steps") or [] if step.get("id")}
        text = json.dumps(job)
        for expression in _EXPRESSION.findall(text):
            stripped = re.sub(r"'[^']*'", "''", expression)
            for name, rest in _NAME.findall(stripped):
                if name in _LITERALS or name in _FUNCTIONS:
                    continue
                if name not in CONTEXTS:
                    problems.append(f"job {job_name}: ${{{{{expression.strip()}}}}} uses {name}")
                    continue
                parts = rest.split(".")[1:]
                if name == "vars" and (not parts or parts[0] not in allowed_vars):
                    problems.append(
                        f"job {job_name}: vars.{parts[0] if parts else ''} is not a variable "
                        "`azd pipeline config` writes"
                    )
                if name == "steps" and (not parts or parts[0] not in ids):
                    problems.append(f"job {job_name}: no step with id {parts[0] if parts else ''}")
    return problems


def check_actions_pinned(workflow: Mapping[str, Any]) -> list[str]:
    return [
        f"job {job}: {step['uses']} is not pinned to a major version (owner/repo@vN)"
        for job, step in steps(workflow)
        if "uses" in step and not _PINNED.match(str(step["uses"]))
    ]


def _runs(workflow: Mapping[str, Any]) -> list[str]:
    return [str(step["run"]) for _, step in steps(workflow) if "run" in step]


def _uses(workflow: Mapping[str, Any], action: str) -> list[Mapping[str, Any]]:
    return [
        step
        for _, step in steps(workflow)
        if str(step.get("uses", "")).lower().startswith(action.lower() + "@")
    ]


def check_ci(workflow: Mapping[str, Any], root: Path = ROOT) -> list[str]:
    """Runs `make test` on pushes and pull requests, with pip and npm caches on the files
    that pin the dependencies."""
    problems = []
    on = triggers(workflow)
    for event in ("push", "pull_request"):
        if event not in on:
            problems.append(f"ci.yml does not run on {event}")
    if not any(run.strip() == "make test" for run in _runs(workflow)):
        problems.append("ci.yml runs no `make test` step")
    python = _uses(workflow, "actions/setup-python")
    node = _uses(workflow, "actions/setup-node")
    for name, found, cache, pins in (
        ("setup-python", python, "pip", ["requirements.txt", "requirements-dev.txt"]),
        ("setup-node", node, "npm", ["package-lock.json"]),
    ):
        if len(found) != 1:
            problems.append(f"ci.yml has {len(found)} {name} steps")
            continue
        given = found[0].get("with") or {}
        if given.get("cache") != cache:
            problems.append(f"{name} does not cache {cache}")
        paths = str(given.get("cache-dependency-path", "")).split()
        for pin in pins:
            if pin not in paths:
                problems.append(f"{name}'s cache is not keyed on {pin}")
        for path in paths:
            if not (root / path).is_file():
                problems.append(f"{name}'s cache-dependency-path {path} does not exist")
    if python and str((python[0].get("with") or {}).get("python-version")) != "3.11":
        problems.append("ci.yml does not test Python 3.11, the version the app deploys with")
    return problems


def check_azure_dev(
    workflow: Mapping[str, Any], placeholders: set[str], pipeline_variables: set[str]
) -> list[str]:
    """OIDC sign-in (azure/login, then azd's federated credential), azd provision before azd
    deploy, every placeholder of main.parameters.json and azure.yaml's pipeline variables in
    the environment."""
    problems = []
    permissions = workflow.get("permissions") or {}
    if permissions.get("id-token") != "write":
        problems.append("azure-dev.yml lacks permissions id-token: write (OIDC)")
    login = _uses(workflow, "azure/login")
    if len(login) != 1:
        problems.append("azure-dev.yml does not sign in with azure/login")
    else:
        given = login[0].get("with") or {}
        for key in ("client-id", "tenant-id", "subscription-id"):
            if key not in given:
                problems.append(f"azure/login without {key} (OIDC needs all three)")
        if "creds" in given:
            problems.append("azure/login with creds: a secret, not a federated credential")
    if not _uses(workflow, "Azure/setup-azd"):
        problems.append("azure-dev.yml does not install azd with Azure/setup-azd")
    runs = _runs(workflow)
    auth = [i for i, run in enumerate(runs) if "azd auth login" in run]
    provision = [i for i, run in enumerate(runs) if run.strip() == "azd provision --no-prompt"]
    deploy = [i for i, run in enumerate(runs) if run.strip() == "azd deploy --no-prompt"]
    if not auth or "--federated-credential-provider github" not in runs[auth[0]]:
        problems.append("azd is not signed in with --federated-credential-provider github")
    if not provision or not deploy or not auth or not auth[0] < provision[0] < deploy[0]:
        problems.append("azure-dev.yml does not run azd auth login, provision, then deploy")
    env: dict[str, Any] = {}
    for job in (workflow.get("jobs") or {}).values():
        env.update(job.get("env") or {})
    env.update(workflow.get("env") or {})
    for name in sorted(placeholders | pipeline_variables | {"AZURE_SUBSCRIPTION_ID"}):
        if name not in env:
            problems.append(f"azure-dev.yml does not pass {name} to azd")
    return problems


def parameter_placeholders(parameters_file: Path) -> set[str]:
    """The azd environment variables main.parameters.json reads (`${NAME}`, `${NAME=default}`)."""
    return set(_PLACEHOLDER.findall(parameters_file.read_text(encoding="utf-8")))
