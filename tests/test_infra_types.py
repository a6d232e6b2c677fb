"""The templates against Azure's published Bicep types (tests/data/bicep-types, a pruned snapshot
of github:Azure/bicep-types-az): what ``bicep build`` would reject, found without the Bicep CLI.

Every resource of both networking modes is walked, through modules and loops, including one
event subscription per route of event-subscriptions.json. Each kind of mistake is then made in
a copy of infra/ to show the check reports it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.support.infra import bicep, routing
from tests.support.infra.copies import copy_infra, edit
from tests.support.infra.schema import SNAPSHOT, Types
from tests.support.infra.typecheck import Report, evaluated_resources, module_env, typecheck

pytestmark = pytest.mark.infra

SUBSCRIPTION_TYPE = "Microsoft.EventGrid/systemTopics/eventSubscriptions"
# Both networking modes; the subscriptions on so the second deployment phase is checked too.
MODES = {
    "public": {"networkIsolation": False, "deployEventSubscriptions": True},
    "isolated": {"networkIsolation": True, "deployEventSubscriptions": True},
    "folder": {"batchJobScope": "folder", "deployEventSubscriptions": True},
}


@pytest.fixture(scope="module")
def types() -> Types:
    return Types()


def run(types: Types, infra: Path = bicep.INFRA, mode: str = "public") -> Report:
    return typecheck(types, MODES[mode], infra)


# --- The snapshot ----------------------------------------------------------------------------


def test_snapshot_records_its_source_and_holds_only_what_it_lists(types: Types) -> None:
    source = types.source
    assert source["repository"] == "github:Azure/bicep-types-az"
    assert re.fullmatch(r"[0-9a-f]{40}", source["commit"])
    listed = set(source["resources"].values())
    on_disk = {p.relative_to(SNAPSHOT).as_posix() for p in SNAPSHOT.rglob("types.json")}
    assert listed == on_disk
    for file in listed:
        nodes = json.loads((SNAPSHOT / file).read_text())
        names = {n["name"].lower() for n in nodes if n["$type"] == "ResourceType"}
        assert names == {r.lower() for r, f in source["resources"].items() if f == file}
        refs = [int(m) for m in re.findall(r'"\$ref": "#/(\d+)"', json.dumps(nodes))]
        assert all(0 <= ref < len(nodes) for ref in refs), file


def test_snapshot_has_every_type_and_version_infra_uses(types: Types) -> None:
    template = bicep.Template.load()
    versions = {
        (declaration["type"], declaration["api_version"])
        for tree in template.trees.values()
        for declaration in (tree.get("resources") or {}).values()
    }
    assert versions
    missing = [f"{t}@{v}" for t, v in sorted(versions) if types.resource_body(t, v) is None]
    assert missing == []


# --- The templates as they are ---------------------------------------------------------------


@pytest.mark.parametrize("mode", sorted(MODES))
def test_templates_match_azure_types(types: Types, mode: str) -> None:
    report = run(types, mode=mode)
    assert sorted(report.problems) == []
    template = bicep.Template.load()
    declared = {r.type for r in bicep.resources(template)}
    assert declared <= set(report.checked), declared - set(report.checked)
    # One subscription per route: the loop over event-subscriptions.json was expanded.
    assert report.checked[SUBSCRIPTION_TYPE] == len(routing.load_routing()["subscriptions"])


@pytest.mark.parametrize(
    ("parameters", "batch_ends_with"),
    [
        ({}, ""),
        ({"batchJobScope": "folder"}, "/_SUCCESS"),
        ({"batchJobScope": "folder", "batchFolderMarker": "_DONE"}, "/_DONE"),
        ({"batchJobScope": "file", "batchFolderMarker": "_DONE"}, ""),
    ],
)
def test_the_compiled_subscriptions_carry_the_marker_filter_in_folder_scope(
    parameters: dict[str, Any], batch_ends_with: str
) -> None:
    env = module_env(
        bicep.Template.load(), {"deployEventSubscriptions": True, **parameters}, "eventGrid"
    )
    filters = {
        sub["name"]: sub["properties"]["filter"]
        for sub in evaluated_resources(env, "eventSubscriptions")
    }
    assert filters["batch"]["subjectEndsWith"] == batch_ends_with
    assert filters["thumbnails"]["subjectEndsWith"] == ""  # never the marker
    routes = {r["name"]: r["filter"] for r in routing.load_routing()["subscriptions"]}
    assert filters["batch"]["subjectBeginsWith"] == routes["batch"]["subjectBeginsWith"]


# --- Each kind of mistake, in a broken copy --------------------------------------------------

MAIN = "main.bicep"
STORAGE = "modules/storage-account.bicep"
EVENT_GRID = "modules/event-grid.bicep"
ROLE = "modules/storage-role-assignment.bicep"
FUNCTION_APP = "modules/function-app.bicep"


@pytest.mark.parametrize(
    ("file", "old", "new", "problem"),
    [
        pytest.param(
            EVENT_GRID,
            "'Microsoft.EventGrid/systemTopics@2025-02-15' = {",
            "'Microsoft.EventGrid/systemTopics@2025-02-16' = {",
            "(Microsoft.EventGrid/systemTopics@2025-02-16): no such type and API version",
            id="unknown-api-version",
        ),
        pytest.param(
            EVENT_GRID,
            "'Microsoft.EventGrid/systemTopics@2025-02-15' = {",
            "'Microsoft.EventGrid/systemTopic@2025-02-15' = {",
            "(Microsoft.EventGrid/systemTopic@2025-02-15): no such type and API version",
            id="unknown-type",
        ),
        pytest.param(
            STORAGE,
            "allowBlobPublicAccess: false",
            "allowBlobPublicAcess: false",
            "properties.allowBlobPublicAcess: no such property in "
            "StorageAccountPropertiesCreateParametersOrStorageAccountProperties",
            id="misspelled-nested-property",
        ),
        pytest.param(
            STORAGE,
            "      enabled: true\n      days: deleteRetentionDays\n    }\n    containerDelete",
            "      enabled: true\n      Days: deleteRetentionDays\n    }\n    containerDelete",
            "properties.deleteRetentionPolicy.Days: no such property in DeleteRetentionPolicy "
            "(did you mean 'days'?)",
            id="wrong-letter-case",
        ),
        pytest.param(
            FUNCTION_APP,
            "          value: setting.value\n",
            "          value: setting.value\n          slot: true\n",
            "properties.siteConfig.appSettings[0].slot: no such property in NameValuePair",
            id="property-in-a-loop-item",
        ),
        pytest.param(
            EVENT_GRID,
            "          maxEventsPerBatch: route.maxEventsPerBatch\n",
            "          maxEventsPerBatch: route.maxEventsPerBatch\n          endpointUrl: 'x'\n",
            "properties.destination.properties.endpointUrl: no such property in "
            "AzureFunctionEventSubscriptionDestinationProperties",
            id="property-of-another-endpoint-type",
        ),
        pytest.param(
            STORAGE,
            "accessTier: 'Hot'",
            "accessTier: 'Hottest'",
            "properties.accessTier: 'Hottest' is not one of "
            "['Cold', 'Cool', 'Hot', 'Premium', 'Smart']",
            id="enum-value",
        ),
        pytest.param(
            EVENT_GRID,
            "endpointType: 'AzureFunction'",
            "endpointType: 'AzureFunctions'",
            "properties.destination.endpointType: 'AzureFunctions' is not one of",
            id="discriminator-value",
        ),
        pytest.param(
            ROLE,
            "    principalType: principalType\n",
            "    principalType: 'ServicePrinciple'\n",
            "properties.principalType: 'ServicePrinciple' is not one of",
            id="extensible-enum-value",
        ),
        pytest.param(
            EVENT_GRID,
            "    topicType: 'Microsoft.Storage.StorageAccounts'\n",
            "    topicType: 'Microsoft.Storage.StorageAccounts'\n"
            "    provisioningState: 'Succeeded'\n",
            "properties.provisioningState: read-only property written",
            id="read-only",
        ),
        pytest.param(
            ROLE,
            "    roleDefinitionId: roleDefinitionId\n",
            "",
            "properties.roleDefinitionId: required property missing",
            id="required-missing",
        ),
        pytest.param(
            EVENT_GRID,
            "        endpointType: 'AzureFunction'\n",
            "",
            "properties.destination.endpointType: required property missing",
            id="discriminator-missing",
        ),
        pytest.param(
            "main.bicep",
            "    skuName: 'Standard_ZRS'\n",
            "    skuName: 'Standard_ZRS'\n    sku: 'x'\n",
            "params.sku: modules/storage-account.bicep declares no such parameter",
            id="unknown-module-parameter",
        ),
        pytest.param(
            "main.bicep",
            "    deadLetterContainerName: containers.deadLetter\n",
            "",
            "params.deadLetterContainerName: required parameter of modules/event-grid.bicep",
            id="required-module-parameter",
        ),
    ],
)
def test_type_check_catches_broken_templates(
    types: Types, tmp_path: Path, file: str, old: str, new: str, problem: str
) -> None:
    infra = copy_infra(tmp_path)
    edit(infra / file, old, new)
    problems = run(types, infra).problems
    assert any(problem in p for p in problems), sorted(problems)


@pytest.mark.parametrize(
    ("file", "old", "new", "problem", "public_too"),
    [
        # Bicep checks a resource whatever its `if`, so the public walk sees these two as well.
        pytest.param(
            "modules/network.bicep",
            "privateEndpointNetworkPolicies: 'Disabled'",
            "privateEndpointNetworkPolicies: 'Off'",
            "main.bicep:network>modules/network.bicep:network "
            "(Microsoft.Network/virtualNetworks@2025-09-01) "
            "properties.subnets[1].properties.privateEndpointNetworkPolicies: 'Off' is not one of",
            True,
            id="enum-in-the-network",
        ),
        pytest.param(
            "modules/storage-private-endpoint.bicep",
            "          privateLinkServiceId: account.id\n",
            "          privateLinkServiceID: account.id\n",
            "properties.privateLinkServiceConnections[0].properties.privateLinkServiceID: "
            "no such property in PrivateLinkServiceConnectionProperties "
            "(did you mean 'privateLinkServiceId'?)",
            True,
            id="property-of-a-private-endpoint",
        ),
        # The endpoint loops run over their sub-resources only when isolated: public, they are
        # empty and the misspelled sub-resource is never passed.
        pytest.param(
            MAIN,
            "  'blob'\n  'table'\n]",
            "  'blob'\n  'tables'\n]",
            "main.bicep:hostEndpoints params.groupId: 'tables' is not one of "
            "['blob', 'table', 'dfs'] (@allowed in modules/storage-private-endpoint.bicep)",
            False,
            id="sub-resource-outside-allowed",
        ),
    ],
)
def test_type_check_catches_broken_isolated_mode_resources(
    types: Types,
    tmp_path: Path,
    file: str,
    old: str,
    new: str,
    problem: str,
    public_too: bool,
) -> None:
    infra = copy_infra(tmp_path)
    edit(infra / file, old, new)
    isolated = run(types, infra, mode="isolated").problems
    assert any(problem in p for p in isolated), sorted(isolated)
    public = run(types, infra, mode="public").problems
    assert any(problem in p for p in public) == public_too, sorted(public)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        pytest.param(
            lambda r: r.update(eventDeliverySchema="EventGrid"),
            "properties.eventDeliverySchema: 'EventGrid' is not one of",
            id="schema",
        ),
        pytest.param(
            lambda r: r["filter"]["advancedFilters"][0].update(operatorType="StringsIn"),
            "properties.filter.advancedFilters[0].operatorType: 'StringsIn' is not one of",
            id="filter-operator",
        ),
        pytest.param(
            lambda r: r["filter"]["advancedFilters"][0].update(value="x"),
            "properties.filter.advancedFilters[0].value: no such property in "
            "StringInAdvancedFilter",
            id="filter-property",
        ),
        pytest.param(
            lambda r: r["retryPolicy"].update(maxDeliveryAttempts="30"),
            "properties.retryPolicy.maxDeliveryAttempts: '30' where IntegerType is expected",
            id="string-for-an-integer",
        ),
    ],
)
def test_type_check_reads_the_subscriptions_generated_from_the_json(
    types: Types, tmp_path: Path, change: Any, problem: str
) -> None:
    infra = copy_infra(tmp_path)
    routes_file = infra / "event-subscriptions.json"
    routes = json.loads(routes_file.read_text())
    change(routes["subscriptions"][1])
    routes_file.write_text(json.dumps(routes))
    problems = run(types, infra).problems
    assert any("eventSubscriptions" in p and problem in p for p in problems), sorted(problems)


def test_type_check_walks_files_only_through_main(types: Types, tmp_path: Path) -> None:
    infra = copy_infra(tmp_path)
    (infra / "modules" / "orphan.bicep").write_text(
        "resource x 'Microsoft.ManagedIdentity/userAssignedIdentities@2024-11-30' = {\n"
        "  name: 'x'\n  location: 'y'\n}\n"
    )
    assert "modules/orphan.bicep: not reached from main.bicep" in run(types, infra).problems


def test_type_check_fails_on_what_pycep_parser_cannot_read(types: Types, tmp_path: Path) -> None:
    infra = copy_infra(tmp_path)
    # A filtered loop is valid Bicep that pycep-parser 0.7.1 cannot parse.
    edit(
        infra / STORAGE,
        "  for containerName in containerNames: {",
        "  for containerName in containerNames: if (true) {",
    )
    with pytest.raises(bicep.Unresolved, match=r"pycep-parser cannot parse .*storage-account"):
        run(types, infra)
