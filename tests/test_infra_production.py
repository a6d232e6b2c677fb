"""What production asks of infra/ beyond a working app: private networking (networkIsolation),
alerts an on-call engineer acts on, and both deployment phases of azd carrying the options.
Each check is also run on a broken copy of infra/ to show it catches what it claims to."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.infra import alerts, bicep, deployment, networking
from tests.support.infra.copies import copy_infra, edit

pytestmark = pytest.mark.infra

MAIN = "main.bicep"
ALERTS = "modules/alerts.bicep"


@pytest.fixture(scope="module")
def template() -> bicep.Template:
    return bicep.Template.load()


# --- networkIsolation ------------------------------------------------------------------------


def test_network_isolation_opens_and_closes_what_it_should(template: bicep.Template) -> None:
    assert networking.check_network_isolation(template) == []


@pytest.mark.parametrize(
    ("file", "old", "new", "problem"),
    [
        pytest.param(
            MAIN,
            "    publicNetworkAccess: networkIsolation ? 'Disabled' : 'Enabled'\n",
            "    publicNetworkAccess: 'Enabled'\n",
            "networkIsolation=True, hierarchical namespace=False: hostStorage "
            "(publicNetworkAccess, networkDefaultAction) is ('Enabled', 'Deny')",
            id="host-account-left-public",
        ),
        pytest.param(
            MAIN,
            "  'blob'\n  'table'\n]",
            "  'blob'\n]",
            "hostEndpoints serves ['blob'], expected ['blob', 'table']",
            id="no-table-endpoint",
        ),
        pytest.param(
            MAIN,
            "var dataEndpointGroups = union(blobEndpointGroups, "
            "dataStorageHierarchicalNamespace ? hnsEndpointGroups : [])",
            "var dataEndpointGroups = blobEndpointGroups",
            "hierarchical namespace=True: dataEndpoints serves ['blob'], expected ['blob', 'dfs']",
            id="no-dfs-endpoint-with-hns",
        ),
        pytest.param(
            MAIN,
            "for groupId in (networkIsolation ? hostEndpointGroups : []): {",
            "for groupId in hostEndpointGroups: {",
            "networkIsolation=False, hierarchical namespace=False: hostEndpoints serves",
            id="endpoints-without-isolation",
        ),
        pytest.param(
            MAIN,
            "    virtualNetworkSubnetId: networkIsolation ? network.outputs.appSubnetId : ''\n",
            "",
            "functionApp virtualNetworkSubnetId must be",
            id="app-not-integrated",
        ),
        pytest.param(
            "modules/storage-account.bicep",
            "bypass: 'AzureServices'",
            "bypass: 'None'",
            "the data account networkAcls.bypass must include AzureServices",
            id="event-grid-not-trusted",
        ),
    ],
)
def test_network_isolation_check_catches_broken_templates(
    tmp_path: Path, file: str, old: str, new: str, problem: str
) -> None:
    infra = copy_infra(tmp_path)
    edit(infra / file, old, new)
    problems = networking.check_network_isolation(bicep.Template.load(infra))
    assert any(problem in p for p in problems), problems


def test_host_storage_settings_roles_and_endpoints_name_the_same_services(
    template: bicep.Template,
) -> None:
    assert networking.check_host_storage_services(template) == []


@pytest.mark.parametrize(
    ("file", "old", "new", "problem"),
    [
        pytest.param(
            "modules/function-app.bicep",
            "  AzureWebJobsStorage__tableServiceUri:",
            "  AzureWebJobsStorage__queueServiceUri: "
            "hostStorage.properties.primaryEndpoints.queue\n"
            "  AzureWebJobsStorage__tableServiceUri:",
            "AzureWebJobsStorage__<service>ServiceUri settings name ['blob', 'queue', 'table']",
            id="queue-setting-without-role",
        ),
        pytest.param(
            MAIN,
            "    roleDefinitionGuid: storageTableDataContributorRoleId\n",
            "    roleDefinitionGuid: '974c5e8b-45b9-4653-ba55-5f855dd0fb88'\n",
            "role assignments on hostStorage name ['blob', 'queue'], expected ['blob', 'table']",
            id="queue-role-instead-of-table",
        ),
        pytest.param(
            MAIN,
            "  'blob'\n  'table'\n]",
            "  'blob'\n  'queue'\n  'table'\n]",
            "hostEndpoints (networkIsolation) name ['blob', 'queue', 'table']",
            id="endpoint-without-role",
        ),
    ],
)
def test_host_storage_check_catches_disagreeing_templates(
    tmp_path: Path, file: str, old: str, new: str, problem: str
) -> None:
    infra = copy_infra(tmp_path)
    edit(infra / file, old, new)
    problems = networking.check_host_storage_services(bicep.Template.load(infra))
    assert any(problem in p for p in problems), problems


# --- Alerts ----------------------------------------------------------------------------------


def test_alerts_cover_dead_letters_deliveries_functions_and_batch_jobs(
    template: bicep.Template,
) -> None:
    assert alerts.check_alerts(template) == []


@pytest.mark.parametrize(
    ("old", "new", "problem"),
    [
        pytest.param(
            "metricName: 'DroppedEventCount'",
            "metricName: 'DroppedEvents'",
            "no alert on DroppedEventCount",
            id="metric-missing",
        ),
        pytest.param(
            "            dimensions: perSubscription\n",
            "            dimensions: []\n",
            "must be split by EventSubscriptionName",
            id="not-per-subscription",
        ),
        pytest.param(
            "        emailAddress: alertEmail\n",
            "        emailAddress: 'someone@example.com'\n",
            "alertEmail 'oncall@example.com': action group mails ['someone@example.com']",
            id="address-ignored",
        ),
        pytest.param(
            "query: 'requests | where success == false",
            "query: 'requests | where resultCode == 500",
            "no log alert on failed function executions",
            id="no-function-failures",
        ),
    ],
)
def test_alert_check_catches_broken_templates(
    tmp_path: Path, old: str, new: str, problem: str
) -> None:
    infra = copy_infra(tmp_path)
    edit(infra / ALERTS, old, new)
    problems = alerts.check_alerts(bicep.Template.load(infra))
    assert any(problem in p for p in problems), problems


def test_alert_windows_are_never_shorter_than_the_evaluation_frequency(
    template: bicep.Template,
) -> None:
    assert alerts.allowed(template, "alertEvaluationFrequency")[-1] == "PT1H"
    assert "PT5M" in alerts.allowed(template, "alertWindowSize")  # so PT1H/PT5M is a pair
    assert alerts.check_windows(template) == []


def test_alert_window_check_catches_a_window_taken_as_given(tmp_path: Path) -> None:
    infra = copy_infra(tmp_path)
    edit(infra / ALERTS, "      windowSize: ruleWindowSize\n", "      windowSize: windowSize\n")
    problems = alerts.check_windows(bicep.Template.load(infra))
    assert any(
        "alertEvaluationFrequency=PT1H, alertWindowSize=PT5M:" in p
        and "is ('PT1H', 'PT5M'), expected ('PT1H', 'PT1H')" in p
        for p in problems
    ), problems


def test_batch_job_alert_traces_are_not_sampled() -> None:
    """The batch-jobs-failed rule counts trace rows; adaptive sampling would drop some."""
    host = json.loads((bicep.REPO / "host.json").read_text(encoding="utf-8"))
    sampling = host["logging"]["applicationInsights"]["samplingSettings"]
    assert "Trace" in sampling["excludedTypes"].split(";")
    # The function-failures rule counts requests, so those stay unsampled too.
    assert "Request" in sampling["excludedTypes"].split(";")


# The tracker's log line (the batch-job tracking issue): status in lower case.
TRACKER_LINE = "track_batch_jobs blob={blob} job={job} outcome=job-{status}"


def batch_job_query(template: bicep.Template) -> str:
    queries = [alerts.log_query(r) for r in alerts.alert_rules(template)["logAlerts"]]
    (query,) = [q for q in queries if "track_batch_jobs" in q]
    return query


@pytest.mark.parametrize(
    ("status", "fires"),
    [("failed", True), ("completed", False), ("canceled", False), ("running", False)],
)
def test_batch_job_alert_matches_the_tracker_log_line(
    template: bicep.Template, status: str, fires: bool
) -> None:
    line = TRACKER_LINE.format(blob="batch-input/incoming/a b.csv", job="job-42", status=status)
    columns = alerts.kql_matches(batch_job_query(template), line)
    assert (columns is not None) == fires
    if fires:
        assert columns == {"job": "job-42", "outcome": "job-failed"}


def test_batch_job_alert_check_catches_a_query_in_the_wrong_case(tmp_path: Path) -> None:
    infra = copy_infra(tmp_path)
    edit(infra / ALERTS, 'outcome == "job-failed"', 'outcome == "job-Failed"')
    query = batch_job_query(bicep.Template.load(infra))
    line = TRACKER_LINE.format(blob="batch-input/incoming/a.csv", job="j", status="failed")
    assert alerts.kql_matches(query, line) is None


# --- Both deployment phases ------------------------------------------------------------------


def test_postdeploy_hooks_pass_every_azd_placeholder() -> None:
    assert deployment.placeholders() == {
        "environmentName": "AZURE_ENV_NAME",
        "networkIsolation": "NETWORK_ISOLATION",
        "alertEmail": "ALERT_EMAIL",
        "batchJobScope": "BATCH_JOB_SCOPE",
    }
    assert deployment.check_hooks_pass_placeholders() == []


def test_hook_check_catches_a_placeholder_the_hooks_do_not_pass(tmp_path: Path) -> None:
    infra = copy_infra(tmp_path)
    parameters_file = infra / "main.parameters.json"
    given = json.loads(parameters_file.read_text())
    given["parameters"]["alertWindowSize"] = {"value": "${ALERT_WINDOW=PT15M}"}
    parameters_file.write_text(json.dumps(given))
    assert deployment.check_hooks_pass_placeholders(infra) == [
        "hooks/postdeploy.sh: does not pass --parameters alertWindowSize=",
        "hooks/postdeploy.sh: does not read ALERT_WINDOW for alertWindowSize",
        "hooks/postdeploy.ps1: does not pass --parameters alertWindowSize=",
        "hooks/postdeploy.ps1: does not read ALERT_WINDOW for alertWindowSize",
    ]


def test_deploy_docs_az_commands_pass_every_azd_placeholder() -> None:
    readme = (bicep.REPO / "docs" / "deploy.md").read_text(encoding="utf-8")
    assert len(deployment.cli_deployments(readme)) == 2  # both phases
    assert deployment.check_readme_cli_passes_placeholders(readme) == []


def test_deploy_docs_az_check_catches_a_command_that_relies_on_the_parameters_file() -> None:
    readme = (bicep.REPO / "docs" / "deploy.md").read_text(encoding="utf-8")
    first = deployment.cli_deployments(readme)[0]
    assert "-p networkIsolation=" in first
    broken = readme.replace("-p networkIsolation=", "-p network_isolation=", 1)
    assert deployment.check_readme_cli_passes_placeholders(broken) == [
        "docs/deploy.md az command 1: does not pass -p networkIsolation="
    ]
    no_commands = readme.replace("az deployment group create", "az deployment group what-if")
    assert deployment.check_readme_cli_passes_placeholders(no_commands) == [
        "docs/deploy.md's Azure CLI section has no az deployment group create command"
    ]


def test_deploy_docs_parameters_table_lists_every_parameter(template: bicep.Template) -> None:
    declared = set(template.trees[(bicep.INFRA / MAIN).resolve()]["parameters"])
    readme = (bicep.REPO / "docs" / "deploy.md").read_text(encoding="utf-8")
    assert deployment.documented_parameters(readme) == declared
    # A row removed is noticed.
    without = readme.replace("| `alertWindowSize` |", "| alertWindowSize |")
    assert declared - deployment.documented_parameters(without) == {"alertWindowSize"}
