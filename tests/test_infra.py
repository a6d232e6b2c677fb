"""Offline checks of infra/: every Bicep file parses, checkov finds nothing and really scans
everything, and the templates agree with the code and with event-subscriptions.json.

Neither the Bicep CLI nor Azure is reachable here; docs/verification.md ("What was verified,
and what was not") says what that leaves unverified. Each cross-check is also fed a broken
copy to show it catches what it claims to.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from handlers.settings import DEFAULTS, SETTINGS
from tests.support.infra import bicep, checkov, policy, render
from tests.support.infra import routing as routing_check
from tests.support.infra import settings as settings_check
from tests.support.infra import subscriptions as subscriptions_check
from tests.support.infra.copies import copy_infra, edit
from tools.routes import ROUTES_FILE as ROUTES
from tools.routes import parse_routes

pytestmark = pytest.mark.infra

BICEP_FILES = bicep.bicep_files()


@pytest.fixture(scope="module")
def template() -> bicep.Template:
    return bicep.Template.load()


@pytest.fixture(scope="module")
def routing() -> dict[str, Any]:
    return routing_check.load_routing()


@pytest.fixture
def routing_copy(routing: dict[str, Any]) -> dict[str, Any]:
    return copy.deepcopy(routing)


def route(routing: dict[str, Any], function: str) -> dict[str, Any]:
    return next(r for r in routing["subscriptions"] if r["function"] == function)


# --- Parsing ---------------------------------------------------------------------------------


def test_the_expected_templates_exist() -> None:
    names = {path.relative_to(bicep.INFRA).as_posix() for path in BICEP_FILES}
    assert "main.bicep" in names
    assert {name for name in names if name.startswith("modules/")}
    assert (bicep.INFRA / "main.parameters.json").is_file()


@pytest.mark.parametrize("path", BICEP_FILES, ids=lambda p: p.relative_to(bicep.INFRA).as_posix())
def test_bicep_file_parses(path: Path) -> None:
    tree = bicep.parse(path)
    assert tree.get("resources") or tree.get("modules"), f"{path} declares nothing"


def test_parameters_file_names_only_declared_parameters(template: bicep.Template) -> None:
    declared = template.trees[(bicep.INFRA / "main.bicep").resolve()]["parameters"]
    given = json.loads((bicep.INFRA / "main.parameters.json").read_text())["parameters"]
    assert set(given) <= set(declared)
    required = {name for name, p in declared.items() if p.get("default") is None}
    assert required <= set(given)
    assert given["deployEventSubscriptions"]["value"] is False


# --- checkov ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def checkov_executable() -> Path:
    return checkov.checkov_executable(environ=os.environ)


def require(executable: Path) -> None:
    """A missing checkov fails the test: an unscanned template must not pass quietly."""
    if not executable.exists():
        pytest.fail(
            f"checkov not found at {executable}: run `make deps` (it installs "
            "requirements-checkov.txt into .venv-checkov) or set CHECKOV to its path"
        )


@pytest.fixture(scope="module")
def checkov_run(
    checkov_executable: Path, tmp_path_factory: pytest.TempPathFactory
) -> checkov.CheckovRun | None:
    """The one checkov scan of infra/ that the tests below share."""
    if not checkov_executable.exists():
        return None
    return checkov.run_checkov(
        checkov_executable, bicep.INFRA, tmp_path_factory.mktemp("checkov"), os.environ
    )


def test_checkov_passes_and_scans_every_resource(
    checkov_executable: Path, checkov_run: checkov.CheckovRun | None, template: bicep.Template
) -> None:
    require(checkov_executable)
    assert checkov_run is not None
    deployed = bicep.deployed_resources(template)
    assert checkov.check_checkov(checkov_run, deployed) == []
    assert checkov_run.summary["parsing_errors"] == 0
    assert checkov_run.summary["failed"] == 0
    assert len(checkov_run.resources) == len(deployed)


# The checks suppressed because the default mode has no private networking. checkov reads each
# file alone, so each storage module call is rendered with the arguments main.bicep passes it in
# each mode, and scanned without those suppressions.
PRIVATE_NETWORKING_CHECKS = ("CKV_AZURE_35", "CKV_AZURE_59")
NETWORK_MODES = {"public": {"networkIsolation": False}, "isolated": {"networkIsolation": True}}


@pytest.mark.slow
def test_checkov_private_networking_checks_pass_when_isolated(
    checkov_executable: Path, template: bicep.Template, tmp_path: Path
) -> None:
    require(checkov_executable)
    folder = tmp_path / "rendered"
    folder.mkdir()
    module = (bicep.INFRA / "modules" / "storage-account.bicep").read_text()
    bare = render.without_skips(module, PRIVATE_NETWORKING_CHECKS)
    assert "CKV_AZURE_35" in module and "CKV_AZURE_35" not in bare
    for account in ("hostStorage", "dataStorage"):
        for mode, parameters in NETWORK_MODES.items():
            values = render.module_arguments(template, parameters, account)
            text, inlined = render.inline_arguments(bare, values)
            assert {"publicNetworkAccess", "networkDefaultAction"} <= inlined, values
            (folder / f"{account}-{mode}.bicep").write_text(text)
    run = checkov.run_checkov(checkov_executable, folder, tmp_path / "out", os.environ)
    assert run.parsing_errors == []
    outcome = {
        (Path(c["file_path"]).stem, c["check_id"]): verdict
        for verdict, checks in (("passed", run.passed), ("failed", run.failed))
        for c in checks
        if c["check_id"] in PRIVATE_NETWORKING_CHECKS
    }
    assert outcome == {
        ("hostStorage-isolated", "CKV_AZURE_35"): "passed",
        ("hostStorage-isolated", "CKV_AZURE_59"): "passed",
        ("dataStorage-isolated", "CKV_AZURE_35"): "passed",
        # Event Grid dead-letters through the public endpoint as a trusted service (README).
        ("dataStorage-isolated", "CKV_AZURE_59"): "failed",
        ("hostStorage-public", "CKV_AZURE_35"): "failed",
        ("hostStorage-public", "CKV_AZURE_59"): "failed",
        ("dataStorage-public", "CKV_AZURE_35"): "failed",
        ("dataStorage-public", "CKV_AZURE_59"): "failed",
    }


def test_checkov_check_catches_failures_and_skipped_files(
    checkov_executable: Path, tmp_path: Path
) -> None:
    require(checkov_executable)
    # Two files, not the whole copy: checkov's start-up is most of its run time.
    infra = tmp_path / "infra"
    infra.mkdir()
    for name in ("storage-account.bicep", "event-grid.bicep"):
        shutil.copy(bicep.INFRA / "modules" / name, infra / name)
    edit(
        infra / "storage-account.bicep",
        "supportsHttpsTrafficOnly: true",
        "supportsHttpsTrafficOnly: false",
    )
    # A lambda: fine for Bicep and pycep-parser 0.7.1, not for the parser checkov pins.
    events = infra / "event-grid.bicep"
    events.write_text(
        events.read_text() + "\noutput functions array = map(subscriptions, s => s.function)\n"
    )
    assert bicep.parse(events)  # our parser still reads it
    run = checkov.run_checkov(checkov_executable, infra, tmp_path / "out", os.environ)
    problems = checkov.check_checkov(run, bicep.deployed_resources(bicep.Template.load(infra)))
    text = "\n".join(problems)
    assert "CKV_AZURE_3 failed" in text
    assert "could not parse" in text and "event-grid.bicep" in text
    assert "did not scan event-grid.bicep Microsoft.EventGrid/systemTopics.systemTopic" in text


def test_checkov_check_wants_reasons_for_skips() -> None:
    run = checkov.CheckovRun(
        summary={"failed": 0, "parsing_errors": 0},
        failed=[],
        skipped=[{"check_id": "CKV_AZURE_1", "check_result": {"suppress_comment": "no"}}],
        parsing_errors=[],
        resources=set(),
    )
    assert checkov.check_checkov(run, set()) == [
        "checkov skip of CKV_AZURE_1 needs a real reason: 'no'"
    ]


def test_checkov_executable_comes_from_env_or_the_repo() -> None:
    assert checkov.checkov_executable(Path("/r"), {}) == Path("/r/.venv-checkov/bin/checkov")
    assert checkov.checkov_executable(Path("/r"), {"CHECKOV": "x/checkov"}) == Path("/r/x/checkov")
    assert checkov.checkov_executable(Path("/r"), {"CHECKOV": "/opt/ck"}) == Path("/opt/ck")


# --- (1) subscriptions target real Event Grid functions ------------------------------------


@pytest.fixture(scope="module")
def bindings() -> dict[str, list[dict[str, Any]]]:
    return routing_check.function_bindings(routing_check.indexed_app())


def test_subscriptions_target_event_grid_functions(
    routing: dict[str, Any], bindings: dict[str, list[dict[str, Any]]]
) -> None:
    assert routing_check.check_subscription_functions(routing, bindings) == []


def test_subscription_function_check_catches_missing_and_wrong_functions(
    routing_copy: dict[str, Any], bindings: dict[str, list[dict[str, Any]]]
) -> None:
    bindings = copy.deepcopy(bindings)
    route(routing_copy, "create_thumbnail")["function"] = "make_thumbnail"
    bindings["dispatch_batch_job"] = [{"type": "blobTrigger", "direction": "IN", "name": "b"}]
    assert routing_check.check_subscription_functions(routing_copy, bindings) == [
        "subscription thumbnails targets 'make_thumbnail': no such function",
        "subscription batch targets 'dispatch_batch_job', which has no eventGridTrigger",
    ]


# --- (2) app settings cover what the code reads ----------------------------------------------


def test_app_settings_cover_every_setting_the_code_reads(template: bicep.Template) -> None:
    settings = settings_check.app_settings(template)
    assert settings_check.check_app_settings(settings, SETTINGS) == []
    assert settings_check.check_setting_values(settings, DEFAULTS) == []
    assert settings["AzureWebJobsStorage__credential"][0] == "managedidentity"


def test_app_settings_check_catches_missing_and_local_only_settings() -> None:
    present = (
        set(SETTINGS)
        - {"THUMBNAIL_MAX_FRAMES", "DATA_STORAGE__clientId"}
        - set(settings_check.NOT_IN_AZURE)
    )
    assert settings_check.check_app_settings(present | {"DATA_STORAGE"}, SETTINGS) == [
        "app setting DATA_STORAGE__clientId is read by the code but not set in Bicep",
        "app setting THUMBNAIL_MAX_FRAMES is read by the code but not set in Bicep",
        "app setting DATA_STORAGE must not be set in Azure: "
        + settings_check.NOT_IN_AZURE["DATA_STORAGE"],
    ]


def test_app_settings_check_catches_a_setting_dropped_from_bicep(tmp_path: Path) -> None:
    infra = copy_infra(tmp_path)
    edit(infra / "main.bicep", "  BATCH_JOB_SCOPE: batchJobScope\n", "")
    settings = settings_check.app_settings(bicep.Template.load(infra))
    assert settings_check.check_app_settings(settings, SETTINGS) == [
        "app setting BATCH_JOB_SCOPE is read by the code but not set in Bicep"
    ]


def test_setting_values_check_catches_hardcoded_containers_and_wrong_defaults(
    tmp_path: Path,
) -> None:
    infra = copy_infra(tmp_path)
    edit(
        infra / "main.bicep",
        "THUMBNAIL_CONTAINER: containers.thumbnails",
        "THUMBNAIL_CONTAINER: 'thumbs'",
    )
    edit(
        infra / "main.bicep",
        "DEADLETTER_CONTAINER: containers.deadLetter",
        "DEADLETTER_CONTAINER: containers.images",
    )
    edit(
        infra / "main.bicep",
        "param thumbnailMaxFrames int = 100",
        "param thumbnailMaxFrames int = 50",
    )
    settings = settings_check.app_settings(bicep.Template.load(infra))
    problems = settings_check.check_setting_values(
        settings, DEFAULTS, infra / "event-subscriptions.json"
    )
    assert len(problems) == 3, problems
    assert problems[0].startswith("THUMBNAIL_CONTAINER must be read from containers.thumbnails")
    assert problems[1].startswith("DEADLETTER_CONTAINER must be read from containers.deadLetter")
    assert problems[2] == "THUMBNAIL_MAX_FRAMES: Bicep default 50 differs from the code's '100'"


# How app settings are read: the forms a template may use, and what is refused.
SITE = """
resource site 'Microsoft.Web/sites@2024-04-01' = {{
  name: 'app'
  properties: {{
    siteConfig: {{
      appSettings: {settings}
    }}
  }}
}}
"""


def write_bicep(folder: Path, files: dict[str, str]) -> bicep.Template:
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text, encoding="utf-8")
    return bicep.Template.load(folder)


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        pytest.param(
            {
                "main.bicep": SITE.format(
                    settings="[\n{ name: 'A', value: 'x' }\n{ name: 'B', value: p }\n]"
                )
                + "param p string = 'y'\n"
            },
            {"A", "B"},
            id="list-of-name-value",
        ),
        pytest.param(
            {
                "main.bicep": "var more = { C: 'z' }\nmodule app 'modules/app.bicep' = {\n"
                "  name: 'app'\n  params: {\n    settings: union({ A: 'x' }, more)\n  }\n}\n",
                "modules/app.bicep": "param settings object\nvar host = { B: 'y' }\n"
                + SITE.format(
                    settings="[for s in items(union(host, settings)): {\n"
                    "name: s.key\nvalue: s.value\n}]"
                ),
            },
            {"A", "B", "C"},
            id="loop-over-items-through-a-module-param",
        ),
        pytest.param(
            {
                "main.bicep": "var s = { A: 'x', B: 'y' }\n"
                "resource site 'Microsoft.Web/sites@2024-04-01' = {\n  name: 'app'\n"
                "  resource cfg 'config' = {\n    name: 'appsettings'\n    properties: s\n  }\n}\n"
            },
            {"A", "B"},
            id="sites-config-appsettings",
        ),
    ],
)
def test_app_settings_extraction_reads_each_form(
    tmp_path: Path, files: dict[str, str], expected: set[str]
) -> None:
    assert set(settings_check.app_settings(write_bicep(tmp_path, files))) == expected


@pytest.mark.parametrize(
    "files",
    [
        pytest.param(
            {"main.bicep": SITE.format(settings="concat(a, b)") + "param a array\nparam b array\n"},
            id="function-it-cannot-follow",
        ),
        pytest.param(
            {
                "main.bicep": SITE.format(settings="[\n{ name: n, value: 'x' }\n]")
                + "param n string\n"
            },
            id="computed-name",
        ),
        pytest.param(
            {"main.bicep": "resource site 'Microsoft.Web/sites@2024-04-01' = {\n  name: 'a'\n}\n"},
            id="no-settings-at-all",
        ),
    ],
)
def test_app_settings_extraction_refuses_what_it_cannot_read(
    tmp_path: Path, files: dict[str, str]
) -> None:
    with pytest.raises(bicep.Unresolved):
        settings_check.app_settings(write_bicep(tmp_path, files))


# --- (3) subject prefixes end with /blobs/ or /blobs/<folder>/ -------------------------------


def test_subject_prefixes_end_at_blobs_or_a_folder(routing: dict[str, Any]) -> None:
    assert routing_check.check_subject_prefixes(routing) == []


@pytest.mark.parametrize(
    ("prefix", "problem"),
    [
        ("/blobServices/default/containers/images", "must be"),
        ("/blobServices/default/containers/images/", "must be"),
        ("/blobServices/default/containers/images/blobs", "must be"),
        ("/blobServices/default/containers/images/blobs/raw", "must be"),
        ("blobServices/default/containers/images/blobs/", "must be"),
        ("/blobServices/default/containers/other/blobs/", "is not one of"),
    ],
)
def test_subject_prefix_check_catches_bad_prefixes(
    routing_copy: dict[str, Any], prefix: str, problem: str
) -> None:
    route(routing_copy, "create_thumbnail")["filter"]["subjectBeginsWith"] = prefix
    problems = routing_check.check_subject_prefixes(routing_copy)
    assert len(problems) == 1 and problem in problems[0], problems


def test_subject_prefix_check_accepts_nested_folders(routing_copy: dict[str, Any]) -> None:
    prefix = "/blobServices/default/containers/batch-input/blobs/incoming/2024/"
    route(routing_copy, "dispatch_batch_job")["filter"]["subjectBeginsWith"] = prefix
    assert routing_check.check_subject_prefixes(routing_copy) == []


# --- (4) no subscription covers a container the app writes to --------------------------------


def test_no_subscription_covers_an_output_container(routing: dict[str, Any]) -> None:
    assert routing_check.check_no_output_loops(routing) == []


def test_output_loop_check_catches_a_prefix_that_also_matches_the_thumbnail_container(
    routing_copy: dict[str, Any],
) -> None:
    routing_copy["containers"]["thumbnails"] = "images-thumbs"
    thumbnails = route(routing_copy, "create_thumbnail")
    thumbnails["filter"]["subjectBeginsWith"] = "/blobServices/default/containers/images"
    problems = routing_check.check_no_output_loops(routing_copy)
    assert len(problems) == 1, problems
    assert "covers output container 'images-thumbs' (thumbnails)" in problems[0]


def test_output_loop_check_catches_a_subscription_on_the_thumbnail_container(
    routing_copy: dict[str, Any],
) -> None:
    thumbnails = route(routing_copy, "create_thumbnail")
    thumbnails["filter"]["subjectBeginsWith"] = "/blobServices/default/containers/THUMBNAILS/blobs/"
    problems = routing_check.check_no_output_loops(routing_copy)
    assert len(problems) == 1 and "'thumbnails' (thumbnails)" in problems[0], problems
    # Case-sensitive matching would not cover it; Event Grid's default is insensitive.
    thumbnails["filter"]["isSubjectCaseSensitive"] = True
    assert routing_check.check_no_output_loops(routing_copy) == []


# --- (5) retry policy and dead-letter on every subscription, in the Bicep --------------------


def test_bicep_subscriptions_retry_and_dead_letter(template: bicep.Template) -> None:
    assert subscriptions_check.check_bicep_subscriptions(template) == []


EVENT_GRID = "modules/event-grid.bicep"


@pytest.mark.parametrize(
    ("old", "new", "problem"),
    [
        pytest.param(
            "      retryPolicy: {\n",
            "      retryPolicyX: {\n",
            "retryPolicy must be an object",
            id="no-retry-policy",
        ),
        pytest.param(
            "        maxDeliveryAttempts: route.retryPolicy.maxDeliveryAttempts\n",
            "",
            "retryPolicy.maxDeliveryAttempts is not set",
            id="retry-without-attempts",
        ),
        pytest.param(
            "deadLetterWithResourceIdentity: {",
            "deadLetterWithoutIdentity: {",
            "deadLetterWithResourceIdentity.identity.type must be SystemAssigned",
            id="no-dead-letter",
        ),
        pytest.param(
            "            blobContainerName: deadLetterContainerName\n",
            "",
            "deadLetterDestination.properties.blobContainerName is not set",
            id="dead-letter-without-container",
        ),
        pytest.param(
            "    dependsOn: [\n      deadLetterWriter\n    ]\n",
            "",
            "must depend on the dead-letter role assignment",
            id="no-dependency-on-role",
        ),
        pytest.param(
            "for route in (deployEventSubscriptions ? subscriptions : [])",
            "for route in subscriptions",
            "must loop over (deployEventSubscriptions ? subscriptions : [])",
            id="not-gated",
        ),
        pytest.param(
            "endpointType: 'AzureFunction'",
            "endpointType: 'WebHook'",
            "destination.endpointType must be AzureFunction",
            id="webhook",
        ),
    ],
)
def test_bicep_subscription_check_catches_broken_templates(
    tmp_path: Path, old: str, new: str, problem: str
) -> None:
    infra = copy_infra(tmp_path)
    edit(infra / EVENT_GRID, old, new)
    problems = subscriptions_check.check_bicep_subscriptions(
        bicep.Template.load(infra), infra / "event-subscriptions.json"
    )
    assert any(problem in p for p in problems), problems


def test_bicep_subscription_check_catches_a_dead_letter_container_not_from_the_json(
    tmp_path: Path,
) -> None:
    infra = copy_infra(tmp_path)
    edit(
        infra / "main.bicep",
        "deadLetterContainerName: containers.deadLetter",
        "deadLetterContainerName: 'dl'",
    )
    problems = subscriptions_check.check_bicep_subscriptions(
        bicep.Template.load(infra), infra / "event-subscriptions.json"
    )
    assert any("blobContainerName must be containers.deadLetter" in p for p in problems), problems


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda r: r.pop("retryPolicy"), "retryPolicy.maxDeliveryAttempts must be 1..30"),
        (lambda r: r["retryPolicy"].update(maxDeliveryAttempts=31), "must be 1..30, got 31"),
        (lambda r: r["retryPolicy"].pop("eventTimeToLiveInMinutes"), "must be 1..1440, got None"),
        (lambda r: r.pop("markerFilter"), "markerFilter must be true or false"),
    ],
)
def test_bicep_subscription_check_catches_routes_without_retry_values(
    tmp_path: Path, change: Callable[[dict[str, Any]], object], problem: str
) -> None:
    infra = copy_infra(tmp_path)
    routes_file = infra / "event-subscriptions.json"
    routing = json.loads(routes_file.read_text())
    change(route(routing, "dispatch_batch_job"))
    routes_file.write_text(json.dumps(routing))
    problems = subscriptions_check.check_bicep_subscriptions(
        bicep.Template.load(infra), routes_file
    )
    assert any(p.startswith("route batch:") and problem in p for p in problems), problems


def test_bicep_subscription_check_catches_a_marker_filter_on_the_thumbnails(
    tmp_path: Path,
) -> None:
    infra = copy_infra(tmp_path)
    routes_file = infra / "event-subscriptions.json"
    routing = json.loads(routes_file.read_text())
    route(routing, "create_thumbnail")["markerFilter"] = True
    routes_file.write_text(json.dumps(routing))
    problems = subscriptions_check.check_bicep_subscriptions(
        bicep.Template.load(infra), routes_file
    )
    assert any("only the batch dispatch has a folder scope" in p for p in problems), problems


def _more_suffixes(route: dict[str, Any], count: int) -> None:
    (suffixes,) = [f for f in route["filter"]["advancedFilters"] if f["key"] == "subject"]
    suffixes["values"] += [f".x{n}" for n in range(count)]


def _more_filters(route: dict[str, Any], count: int) -> None:
    route["filter"]["advancedFilters"] += [
        {"operatorType": "StringNotContains", "key": "subject", "values": [f"/skip{n}/"]}
        for n in range(count)
    ]


def _filter_values(route: dict[str, Any]) -> int:
    return sum(len(f["values"]) for f in route["filter"]["advancedFilters"])


@pytest.mark.parametrize(
    ("grow", "problem"),
    [
        (
            lambda r: _more_suffixes(r, 26 - _filter_values(r)),
            "26 advanced filter values; Event Grid allows 25",
        ),
        (
            lambda r: _more_filters(r, 26 - len(r["filter"]["advancedFilters"])),
            "26 advanced filters; Event Grid allows 25",
        ),
    ],
    ids=["values", "filters"],
)
def test_subscription_filters_stay_within_event_grid_limits(
    tmp_path: Path, grow: Callable[[dict[str, Any]], object], problem: str
) -> None:
    """Event Grid refuses more than 25 advanced filters or 25 values across them; the routing
    JSON (read by Bicep, the local loop and backfill alike) is held to that."""
    assert all(_filter_values(r) <= 25 for r in json.loads(ROUTES.read_text())["subscriptions"])
    infra = copy_infra(tmp_path)
    routes_file = infra / "event-subscriptions.json"
    routing = json.loads(routes_file.read_text())
    grow(route(routing, "create_thumbnail"))
    routes_file.write_text(json.dumps(routing))
    problems = subscriptions_check.check_bicep_subscriptions(
        bicep.Template.load(infra), routes_file
    )
    assert any(p.startswith("route thumbnails:") and problem in p for p in problems), problems
    with pytest.raises(ValueError, match=f"subscription thumbnails: {problem}"):
        parse_routes(routing)


# --- (6) no keys, no secrets -----------------------------------------------------------------


def test_no_keys_or_secrets_in_infra() -> None:
    assert policy.check_no_secrets() == []


@pytest.mark.parametrize(
    ("line", "what"),
    [
        ("var k = storage.listKeys().keys[0].value", "listKeys"),
        ("var k = listkeys(storage.id, '2023-05-01')", "listKeys"),
        ("value: 'DefaultEndpointsProtocol=https;AccountName=a;AccountKey=abc'", "AccountKey"),
        ("accountKey: k", "AccountKey"),
        ("value: 'Endpoint=sb://x/;SharedAccessKeyName=a;SharedAccessKey=abc'", "with a key"),
        ("@secure()", "secure() parameter"),
        ("var s = webApp.listSecrets()", "list*Secrets"),
    ],
)
def test_secret_check_catches_keys(tmp_path: Path, line: str, what: str) -> None:
    infra = copy_infra(tmp_path)
    (infra / "modules" / "extra.bicep").write_text(f"// ok\n{line}\n")
    problems = policy.check_no_secrets(infra)
    assert problems and all(p.startswith("modules/extra.bicep:2: ") for p in problems)
    assert any(what in p for p in problems), problems


# --- Role assignments ------------------------------------------------------------------------


def test_role_assignments_have_deterministic_names_and_principal_types(
    template: bicep.Template,
) -> None:
    assert policy.check_role_assignments(template) == []


@pytest.mark.parametrize(
    ("old", "new", "problem"),
    [
        (
            "name: guid(account.id, principalId, roleDefinitionId)",
            "name: guid(principalId, roleDefinitionId)",
            "name must be guid",
        ),
        (
            "name: guid(account.id, principalId, roleDefinitionId)",
            "name: guid(account.id, roleDefinitionId, principalId)",
            "principalId",
        ),
        ("    principalType: principalType\n", "", "principalType must be explicit"),
    ],
)
def test_role_assignment_check_catches_broken_assignments(
    tmp_path: Path, old: str, new: str, problem: str
) -> None:
    infra = copy_infra(tmp_path)
    edit(infra / "modules" / "storage-role-assignment.bicep", old, new)
    problems = policy.check_role_assignments(bicep.Template.load(infra))
    assert len(problems) >= 1 and all(
        "storage-role-assignment.bicep:roleAssignment" in p for p in problems
    )
    assert any(problem in p for p in problems), problems
