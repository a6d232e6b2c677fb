"""What makes the project adoptable as a template (issue 18): the dev container, F5 in VS Code,
the GitHub workflows and repository files. The workflows pass check-jsonschema's vendored
schema and our own checks of what actionlint would catch (actionlint cannot be installed here);
each own check is also shown on a broken copy."""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support import template
from tools.local_loop import STANDARD_BLOB_PORT

ROOT = Path(__file__).resolve().parent.parent
FEATURES = json.loads((ROOT / "tests/data/devcontainer-features.json").read_text())["features"]
WORKFLOWS = ROOT / ".github" / "workflows"


def load_json(relative: str) -> Any:
    return json.loads((ROOT / relative).read_text(encoding="utf-8"))


def check_jsonschema(schema: str, *paths: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", schema, *map(str, paths)],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )


# --- Dev container ---------------------------------------------------------------------------


def test_devcontainer_names_only_real_features_with_their_own_options() -> None:
    container = load_json(".devcontainer/devcontainer.json")
    for reference, options in container["features"].items():
        name, _, tag = reference.rpartition(":")
        assert name in FEATURES, f"{name} is not a feature we read the definition of"
        feature = FEATURES[name]
        assert tag == feature["version"].split(".")[0], (
            f"{reference}: major is {feature['version']}"
        )
        for option, value in options.items():
            assert option in feature["options"], f"{name} has no option {option}"
            kind = {"string": str, "boolean": bool}[feature["options"][option]["type"]]
            assert isinstance(value, kind), f"{name}.{option} must be a {kind.__name__}"


def test_devcontainer_has_the_tools_extensions_ports_and_install_step() -> None:
    container = load_json(".devcontainer/devcontainer.json")
    features = {ref.rpartition(":")[0]: options for ref, options in container["features"].items()}
    assert features["ghcr.io/devcontainers/features/python"]["version"] == "3.11"
    assert "ghcr.io/devcontainers/features/node" in features
    assert features["ghcr.io/devcontainers/features/azure-cli"]["installBicep"] is True
    assert "ghcr.io/azure/azure-dev/azd" in features
    assert "ghcr.io/jlaundry/devcontainer-features/azure-functions-core-tools" in features
    extensions = container["customizations"]["vscode"]["extensions"]
    assert {"ms-python.python", "ms-azuretools.vscode-azurefunctions"} <= set(extensions)
    # The Functions host, and the blob endpoint UseDevelopmentStorage=true means.
    assert set(container["forwardPorts"]) == {7071, STANDARD_BLOB_PORT}
    assert container["postCreateCommand"] == "make deps"
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^deps: ", makefile, flags=re.M)
    assert re.search(r"^run: .*\$\(VENV\)/\.installed", makefile, flags=re.M)


# --- VS Code ---------------------------------------------------------------------------------


def _task(tasks: dict[str, Any], label: str) -> dict[str, Any]:
    return next(task for task in tasks["tasks"] if task["label"] == label)


def test_vscode_files_give_f5_like_the_functions_templates() -> None:
    recommended = load_json(".vscode/extensions.json")["recommendations"]
    assert {"ms-python.python", "ms-azuretools.vscode-azurefunctions"} <= set(recommended)
    settings = load_json(".vscode/settings.json")
    assert settings["azureFunctions.deploySubpath"] == "."
    assert settings["azureFunctions.scmDoBuildDuringDeployment"] is True
    assert settings["azureFunctions.pythonVenv"] == ".venv"
    assert settings["azureFunctions.projectLanguage"] == "Python"
    assert settings["azureFunctions.projectRuntime"] == "~4"
    assert settings["python.defaultInterpreterPath"] == "${workspaceFolder}/.venv/bin/python"

    tasks = load_json(".vscode/tasks.json")
    host = _task(tasks, "func: host start")
    assert (host["type"], host["command"]) == ("func", "host start")
    assert host["isBackground"] is True
    assert host["problemMatcher"] == "$func-python-watch"
    assert host["dependsOn"] == ["check func", "pip install (functions)"]
    install = _task(tasks, "pip install (functions)")
    # The same install as make deps: the dev requirements (which include the deploy list).
    assert "pip install -r requirements-dev.txt" in install["command"]
    assert "-r requirements-dev.txt" in (ROOT / "Makefile").read_text(encoding="utf-8")

    launch = load_json(".vscode/launch.json")["configurations"]
    attach = next(c for c in launch if c["request"] == "attach")
    assert attach["type"] == "debugpy"
    assert attach["connect"] == {"host": "localhost", "port": 9091}
    assert attach["preLaunchTask"] == host["label"]


def test_without_func_the_f5_task_says_to_use_make_run(tmp_path: Path) -> None:
    command = _task(load_json(".vscode/tasks.json"), "check func")["command"]
    bare = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    missing = subprocess.run(
        ["bash", "-c", command], env=bare, check=False, capture_output=True, text=True, timeout=30
    )
    assert missing.returncode == 1
    assert "make run" in missing.stdout and "func" in missing.stdout
    fake = tmp_path / "bin" / "func"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    present = subprocess.run(
        ["bash", "-c", command],
        env={**bare, "PATH": f"{fake.parent}{os.pathsep}{bare['PATH']}"},
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert (present.returncode, present.stdout) == (0, "")


# --- Workflows -------------------------------------------------------------------------------


def test_workflows_pass_the_vendored_github_workflow_schema() -> None:
    files = sorted(WORKFLOWS.glob("*.yml"))
    assert [f.name for f in files] == ["azure-dev.yml", "ci.yml"]
    result = check_jsonschema("vendor.github-workflows", *files)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_check_catches_a_broken_workflow(tmp_path: Path) -> None:
    broken = tmp_path / "ci.yml"
    text = (WORKFLOWS / "ci.yml").read_text(encoding="utf-8")
    broken.write_text(text.replace("    runs-on: ubuntu-latest\n", ""), encoding="utf-8")
    result = check_jsonschema("vendor.github-workflows", broken)
    assert result.returncode == 1
    assert "runs-on" in result.stdout


def _azd_inputs() -> tuple[set[str], set[str]]:
    placeholders = template.parameter_placeholders(ROOT / "infra" / "main.parameters.json")
    azure_yaml = template.load_yaml(ROOT / "azure.yaml")
    return placeholders, set(azure_yaml["pipeline"]["variables"])


def _workflow(name: str) -> dict[str, Any]:
    loaded = template.load_yaml(WORKFLOWS / name)
    assert isinstance(loaded, dict)
    return loaded


def test_workflows_pass_our_own_checks() -> None:
    placeholders, pipeline_variables = _azd_inputs()
    allowed = template.AZD_PIPELINE_VARIABLES | pipeline_variables
    for name in ("ci.yml", "azure-dev.yml"):
        workflow = _workflow(name)
        assert template.check_expressions(workflow, allowed) == [], name
        assert template.check_actions_pinned(workflow) == [], name
    assert template.check_ci(_workflow("ci.yml")) == []
    assert (
        template.check_azure_dev(_workflow("azure-dev.yml"), placeholders, pipeline_variables) == []
    )
    # Every variable azure.yaml asks azd to write is one the deployment reads.
    assert pipeline_variables <= placeholders


def _set(workflow: dict[str, Any], path: list[Any], value: Any) -> dict[str, Any]:
    changed = copy.deepcopy(workflow)
    target = changed
    for key in path[:-1]:
        target = target[key]
    if value is None:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return changed


@pytest.mark.parametrize(
    ("name", "path", "value", "problem"),
    [
        ("ci.yml", ["jobs", "test", "steps", 3, "run"], "make check", "runs no `make test`"),
        ("ci.yml", ["on", "pull_request"], None, "does not run on pull_request"),
        (
            "ci.yml",
            ["jobs", "test", "steps", 1, "with", "cache-dependency-path"],
            "requirements.txt\nrequirements-test.txt\n",
            "requirements-test.txt does not exist",
        ),
        ("ci.yml", ["jobs", "test", "steps", 2, "with", "cache"], None, "does not cache npm"),
        ("ci.yml", ["jobs", "test", "steps", 0, "uses"], "actions/checkout@main", "not pinned"),
        ("azure-dev.yml", ["permissions", "id-token"], None, "id-token: write"),
        (
            "azure-dev.yml",
            ["jobs", "deploy", "steps", 1, "with"],
            {"creds": "${{ secrets.AZURE_CREDENTIALS }}"},
            "without client-id",
        ),
        (
            "azure-dev.yml",
            ["jobs", "deploy", "steps", 4, "run"],
            "azd deploy --no-prompt",
            "auth login, provision, then deploy",
        ),
        (
            "azure-dev.yml",
            ["jobs", "deploy", "env", "ALERT_EMAIL"],
            None,
            "does not pass ALERT_EMAIL",
        ),
        (
            "azure-dev.yml",
            ["jobs", "deploy", "env", "AZURE_LOCATION"],
            "${{ vars.AZURE_REGION }}",
            "vars.AZURE_REGION is not a variable",
        ),
        (
            "azure-dev.yml",
            ["jobs", "deploy", "env", "AZURE_ENV_NAME"],
            "${{ step.env.outputs.name }}",
            "uses step",
        ),
        (
            "azure-dev.yml",
            ["jobs", "deploy", "env", "AZURE_ENV_NAME"],
            "${{ steps.env.outputs.name }}",
            "no step with id env",
        ),
    ],
)
def test_our_workflow_checks_catch_broken_workflows(
    name: str, path: list[Any], value: Any, problem: str
) -> None:
    placeholders, pipeline_variables = _azd_inputs()
    broken = _set(_workflow(name), path, value)
    problems = template.check_expressions(
        broken, template.AZD_PIPELINE_VARIABLES | pipeline_variables
    ) + template.check_actions_pinned(broken)
    if name == "ci.yml":
        problems += template.check_ci(broken)
    else:
        problems += template.check_azure_dev(broken, placeholders, pipeline_variables)
    assert any(problem in p for p in problems), problems


# --- Repository files ------------------------------------------------------------------------


def test_issue_forms_and_their_config_pass_githubs_schemas() -> None:
    forms = sorted((ROOT / ".github" / "ISSUE_TEMPLATE").glob("*.yml"))
    names = {form.name for form in forms}
    assert {"bug_report.yml", "feature_request.yml", "config.yml"} == names
    result = check_jsonschema(
        "vendor.github-issue-forms", *(f for f in forms if f.name != "config.yml")
    )
    assert result.returncode == 0, result.stdout + result.stderr
    config = ROOT / ".github" / "ISSUE_TEMPLATE" / "config.yml"
    result = check_jsonschema("vendor.github-issue-config", config)
    assert result.returncode == 0, result.stdout + result.stderr


def test_repository_files_exist_and_say_what_they_must() -> None:
    security = (ROOT / "SECURITY.md").read_text(encoding="utf-8")
    assert "## Reporting a vulnerability" in security
    assert "## What the template secures by default" in security
    contributing = (ROOT / "CONTRIBUTING.md").read_text(encoding="utf-8")
    for topic in ("make run", "make test", "make bench", "## Tests", "## Style"):
        assert topic in contributing
    assert "Contributor Covenant" in (ROOT / "CODE_OF_CONDUCT.md").read_text(encoding="utf-8")
    assert "make test" in (ROOT / ".github" / "pull_request_template.md").read_text()
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    security_section = readme.split("\n## Security\n", 1)[1]
    assert "(SECURITY.md)" in security_section


def _validate_azure_yaml(path: Path) -> subprocess.CompletedProcess[str]:
    schema = ROOT / "tests" / "data" / "azd" / "azure.yaml.json"  # azd's own, see SOURCE.json
    return subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--schemafile", str(schema), str(path)],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_azure_yaml_passes_azds_schema_and_the_check_catches_a_wrong_provider(
    tmp_path: Path,
) -> None:
    result = _validate_azure_yaml(ROOT / "azure.yaml")
    assert result.returncode == 0, result.stdout + result.stderr
    broken = tmp_path / "azure.yaml"
    text = (ROOT / "azure.yaml").read_text(encoding="utf-8")
    broken.write_text(text.replace("provider: github", "provider: jenkins"), encoding="utf-8")
    result = _validate_azure_yaml(broken)
    assert result.returncode == 1
    assert "jenkins" in result.stdout
