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
            "  'queue'\n  'table'\n]",
            "  'queue'\n]",
            "hostEndpoints serves ['blob', 'queue'], expected ['blob', 'queue', 'table']",
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
        "networkIsolation": "NETWORK_ISOLATION",
        "alertEmail": "ALERT_EMAIL",
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


def test_readme_parameters_table_lists_every_parameter(template: bicep.Template) -> None:
    declared = set(template.trees[(bicep.INFRA / MAIN).resolve()]["parameters"])
    readme = (bicep.REPO / "README.md").read_text(encoding="utf-8")
    assert deployment.documented_parameters(readme) == declared
    # A row removed is noticed.
    without = readme.replace("| `alertWindowSize` |", "| alertWindowSize |")
    assert declared - deployment.documented_parameters(without) == {"alertWindowSize"}
