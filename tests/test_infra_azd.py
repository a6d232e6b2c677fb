"""infra/ follows the azd template conventions: names from abbreviations.json and azd's
resourceToken, the azd tags, UPPER_SNAKE outputs, Application Insights without local auth.
Each check is also run on a broken copy of infra/ to show it catches what it claims to."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from tests.support.infra import azd, bicep
from tests.support.infra.copies import copy_infra, edit
from tests.support.infra.schema import Types

pytestmark = pytest.mark.infra

ROOT = Path(__file__).resolve().parent.parent
MAIN = "main.bicep"
MONITORING = "modules/monitoring.bicep"
APP = "modules/function-app.bicep"


@pytest.fixture(scope="module")
def template() -> bicep.Template:
    return bicep.Template.load()


def azure_yaml_service() -> str:
    services = YAML(typ="safe").load((ROOT / "azure.yaml").read_text(encoding="utf-8"))["services"]
    assert len(services) == 1
    return str(next(iter(services)))


def test_resource_token_is_azds(template: bicep.Template) -> None:
    assert azd.check_resource_token(template) == []


def test_names_come_from_abbreviations_json_and_the_token(template: bicep.Template) -> None:
    assert azd.check_names(template) == []
    abbreviations = json.loads((bicep.INFRA / "abbreviations.json").read_text(encoding="utf-8"))
    assert abbreviations["webSitesFunctions"] == "func-"
    assert abbreviations["storageStorageAccounts"] == "st"  # storage names allow no hyphen


def test_every_resource_that_takes_tags_has_the_azd_tags(template: bicep.Template) -> None:
    assert azd.check_tags(template, Types(), azure_yaml_service()) == []


def test_outputs_are_named_as_azd_reads_them(template: bicep.Template) -> None:
    assert azd.check_outputs(template) == []


def test_application_insights_takes_telemetry_only_from_the_app_identity(
    template: bicep.Template,
) -> None:
    assert azd.check_application_insights(template) == []


def _tags(infra: Path) -> list[str]:
    return azd.check_tags(bicep.Template.load(infra), Types(), "api")


@pytest.mark.parametrize(
    ("file", "old", "new", "check", "problem"),
    [
        pytest.param(
            MAIN,
            "uniqueString(subscription().id, environmentName, location)",
            "uniqueString(resourceGroup().id, environmentName)",
            lambda infra: azd.check_resource_token(bicep.Template.load(infra)),
            "first argument is not subscription().id",
            id="token-from-the-resource-group",
        ),
        pytest.param(
            MAIN,
            "uniqueString(subscription().id, environmentName, location)",
            "uniqueString(subscription().id, environmentName)",
            lambda infra: azd.check_resource_token(bicep.Template.load(infra)),
            "not environmentName, location",
            id="token-without-location",
        ),
        pytest.param(
            MAIN,
            "'${abbrs.webSitesFunctions}${resourceToken}'",
            "'fn-${resourceToken}'",
            lambda infra: azd.check_names(bicep.Template.load(infra)),
            "names.functionApp: 'fn-${resourceToken}' is not",
            id="name-without-abbreviation",
        ),
        pytest.param(
            MAIN,
            "'${abbrs.webServerFarms}${resourceToken}'",
            "'${abbrs.serverFarm}${resourceToken}'",
            lambda infra: azd.check_names(bicep.Template.load(infra)),
            "abbrs.serverFarm is not in abbreviations.json",
            id="unknown-abbreviation",
        ),
        pytest.param(
            MAIN,
            "'${abbrs.webServerFarms}${resourceToken}'",
            "'${abbrs.webSitesFunctions}plan${resourceToken}'",
            lambda infra: azd.check_names(bicep.Template.load(infra)),
            "webServerFarms is used by no name",
            id="unused-abbreviation",
        ),
        pytest.param(
            MONITORING,
            "  location: location\n  tags: tags\n  kind: 'web'",
            "  location: location\n  kind: 'web'",
            _tags,
            "applicationInsights (Microsoft.Insights/components): tags None lack azd-env-name",
            id="component-untagged",
        ),
        pytest.param(
            MAIN,
            "var allTags = union(tags, { 'azd-env-name': environmentName })",
            "var allTags = tags",
            _tags,
            "lack azd-env-name",
            id="no-azd-env-name",
        ),
        pytest.param(
            MAIN,
            "'azd-service-name': 'api'",
            "'azd-service-name': 'web'",
            _tags,
            "azd-service-name is 'web', not 'api'",
            id="wrong-service-name",
        ),
        pytest.param(
            MAIN,
            "output AZURE_LOCATION string = location",
            "output azureLocation string = location",
            lambda infra: azd.check_outputs(bicep.Template.load(infra)),
            "output azureLocation is not UPPER_SNAKE",
            id="lower-case-output",
        ),
        pytest.param(
            MONITORING,
            "DisableLocalAuth: true",
            "DisableLocalAuth: false",
            lambda infra: azd.check_application_insights(bicep.Template.load(infra)),
            "accepts local (key) authentication",
            id="local-auth-on",
        ),
        pytest.param(
            APP,
            "'ClientId=${identityClientId};Authorization=AAD'",
            "'Authorization=AAD'",
            lambda infra: azd.check_application_insights(bicep.Template.load(infra)),
            "APPLICATIONINSIGHTS_AUTHENTICATION_STRING is 'Authorization=AAD'",
            id="auth-string-without-client",
        ),
        pytest.param(
            MAIN,
            "publisherPrincipalId: identity.properties.principalId",
            "publisherPrincipalId: deployer().objectId",
            lambda infra: azd.check_application_insights(bicep.Template.load(infra)),
            "not identity.properties.principalId",
            id="publisher-not-the-app",
        ),
        pytest.param(
            MONITORING,
            "var monitoringMetricsPublisherRoleId = '3913510d-42f4-4e42-8a64-420c390055eb'",
            "var monitoringMetricsPublisherRoleId = '43d0d8ad-25c7-4714-9337-8ba259a9fe05'",
            lambda infra: azd.check_application_insights(bicep.Template.load(infra)),
            "no Monitoring Metrics Publisher assignment",
            id="reader-instead-of-publisher",
        ),
    ],
)
def test_azd_checks_catch_broken_templates(
    tmp_path: Path,
    file: str,
    old: str,
    new: str,
    check: Callable[[Path], list[str]],
    problem: str,
) -> None:
    infra = copy_infra(tmp_path)
    edit(infra / file, old, new)
    problems = check(infra)
    assert any(problem in p for p in problems), problems
