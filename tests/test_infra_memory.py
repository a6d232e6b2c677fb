"""The decode budget and the per-instance concurrency the templates set follow from
instanceMemoryMB, as handlers/memory.py says they should, for every size Bicep allows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from handlers.memory import DEFAULT_INSTANCE_MB, INSTANCE_SIZING
from handlers.settings import DEFAULTS
from tests.support.infra import bicep
from tests.support.infra.copies import copy_infra, edit
from tests.support.infra.typecheck import evaluated_resources, module_env

pytestmark = pytest.mark.infra


def deployed(template: bicep.Template, instance_mb: int) -> dict[str, Any]:
    """What the function app gets with ``instanceMemoryMB`` = ``instance_mb``: its app
    settings and its scaleAndConcurrency, as Bicep would evaluate them."""
    env = module_env(template, {"instanceMemoryMB": instance_mb}, "functionApp")
    (site,) = evaluated_resources(env, "site")
    properties = site["properties"]
    listed = properties["siteConfig"]["appSettings"]
    return {
        "settings": {item["name"]: item["value"] for item in listed},
        "scale": properties["functionAppConfig"]["scaleAndConcurrency"],
    }


def allowed_sizes(template: bicep.Template) -> list[int]:
    declared = template.trees[(bicep.INFRA / "main.bicep").resolve()]["parameters"]
    parameter = declared["instanceMemoryMB"]
    (allowed,) = [d for d in parameter["decorators"] if d["type"] == "allowed"]
    assert parameter["default"] == DEFAULT_INSTANCE_MB
    return [int(size) for size in allowed["argument"]]


@pytest.fixture(scope="module")
def template() -> bicep.Template:
    return bicep.Template.load()


def test_every_allowed_size_has_a_sizing(template: bicep.Template) -> None:
    assert sorted(allowed_sizes(template)) == sorted(INSTANCE_SIZING)


def sizing_problems(template: bicep.Template) -> list[str]:
    """Where the templates' budget or concurrency does not follow from instanceMemoryMB."""
    problems = []
    for instance_mb, sizing in sorted(INSTANCE_SIZING.items()):
        app = deployed(template, instance_mb)
        budget = app["settings"].get("THUMBNAIL_DECODE_BUDGET_MB")
        if budget != str(sizing.decode_budget_mb):
            problems.append(
                f"{instance_mb} MB: THUMBNAIL_DECODE_BUDGET_MB is {budget!r}, "
                f"handlers/memory.py says {sizing.decode_budget_mb}"
            )
        concurrency = app["scale"].get("triggers", {}).get("http", {}).get("perInstanceConcurrency")
        if concurrency != sizing.concurrency:
            problems.append(
                f"{instance_mb} MB: perInstanceConcurrency is {concurrency!r}, "
                f"handlers/memory.py says {sizing.concurrency}"
            )
        if app["scale"].get("instanceMemoryMB") != instance_mb:
            problems.append(f"{instance_mb} MB: the site does not get that instanceMemoryMB")
    return problems


def test_budget_and_concurrency_follow_from_instance_memory(template: bicep.Template) -> None:
    assert sizing_problems(template) == []


@pytest.mark.parametrize("instance_mb", sorted(INSTANCE_SIZING))
def test_the_budget_leaves_room_for_the_host_and_the_worker(instance_mb: int) -> None:
    assert INSTANCE_SIZING[instance_mb].decode_budget_mb <= instance_mb // 2


def test_the_code_default_is_the_default_instance_budget(template: bicep.Template) -> None:
    app = deployed(template, DEFAULT_INSTANCE_MB)
    assert app["settings"]["THUMBNAIL_DECODE_BUDGET_MB"] == DEFAULTS["THUMBNAIL_DECODE_BUDGET_MB"]


@pytest.mark.parametrize(
    ("old", "new", "reported"),
    [
        # The Bicep table edited alone.
        ("decodeBudgetMB: 2048", "decodeBudgetMB: 3072", "4096 MB: THUMBNAIL_DECODE_BUDGET_MB"),
        # A fixed setting that ignores instanceMemoryMB.
        (
            "THUMBNAIL_DECODE_BUDGET_MB: string(sizing.decodeBudgetMB)",
            "THUMBNAIL_DECODE_BUDGET_MB: '1024'",
            "512 MB: THUMBNAIL_DECODE_BUDGET_MB",
        ),
        # The module's concurrency left at its default.
        ("    perInstanceConcurrency: sizing.perInstanceConcurrency\n", "", "4096 MB: perInstance"),
    ],
)
def test_a_sizing_that_does_not_follow_is_caught(
    tmp_path: Path, old: str, new: str, reported: str
) -> None:
    infra = copy_infra(tmp_path)
    edit(infra / "main.bicep", old, new)
    problems = sizing_problems(bicep.Template.load(infra))
    assert any(problem.startswith(reported) for problem in problems), problems
