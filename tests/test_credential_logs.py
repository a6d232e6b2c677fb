"""A failed token request is one log line at WARNING or above, naming the credential that
failed and what to check; DefaultAzureCredential's whole chain is logged at DEBUG only."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

import pytest

from handlers.context import reset_context
from handlers.errors import DispatchUnavailableError
from handlers.pipeline import handle
from tools.standins import JobsEndpoint, ManagedIdentityEndpoint

pytestmark = [pytest.mark.azurite, pytest.mark.http]


def _no_identity() -> None:
    for name in list(os.environ):
        if name.startswith(("AZURE_", "MSI_", "IDENTITY_")):
            del os.environ[name]


def _lines(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    """The log as a handler with the default formatter writes it (tracebacks included),
    records at ``level`` or above."""
    formatter = logging.Formatter("%(levelname)s %(name)s: %(message)s")
    text = "\n".join(formatter.format(r) for r in caplog.records if r.levelno >= level)
    return text.splitlines()


def _one_failed_attempt(
    caplog: pytest.LogCaptureFixture, csv_event: Callable[[str], dict[str, Any]]
) -> None:
    event = csv_event("incoming/heart.csv")
    caplog.clear()
    with caplog.at_level(logging.DEBUG), pytest.raises(DispatchUnavailableError):
        handle("dispatch_batch_job", event)


def test_no_credential_at_all_is_one_line_naming_what_to_check(
    app_env: dict[str, str],
    jobs: JobsEndpoint,
    csv_event: Callable[[str], dict[str, Any]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    _no_identity()
    os.environ["BATCH_ENDPOINT_URI"] = jobs.scoring_uri
    reset_context()
    _one_failed_attempt(caplog, csv_event)

    (line,) = _lines(caplog, logging.WARNING)
    assert "outcome=retry" in line
    assert "no credential is set up" in line
    assert "ManagedIdentityCredential" in line and "managed identity" in line
    assert "az login" in line
    assert "Attempted credentials" not in line
    debug = "\n".join(_lines(caplog, logging.DEBUG))
    # The chain is still there for whoever turns DEBUG on.
    assert "Attempted credentials" in debug
    assert "AzureCliCredential" in debug
    assert not jobs.jobs


def test_a_refusing_identity_endpoint_is_one_line_naming_it(
    app_env: dict[str, str],
    jobs: JobsEndpoint,
    identity: ManagedIdentityEndpoint,
    csv_event: Callable[[str], dict[str, Any]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    _no_identity()
    env = identity.environment()
    env["IDENTITY_HEADER"] = "not-the-secret"  # the endpoint answers 400
    os.environ.update(env)
    os.environ["BATCH_ENDPOINT_URI"] = jobs.scoring_uri
    reset_context()
    _one_failed_attempt(caplog, csv_event)

    (line,) = _lines(caplog, logging.WARNING)
    assert "outcome=retry" in line
    assert "ManagedIdentityCredential failed: " in line  # the one that was meant to work
    assert "IDENTITY_HEADER" in line  # what to check
    assert "AzureCliCredential" not in line
    assert identity.token_requests  # it did ask
