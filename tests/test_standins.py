"""The stand-ins themselves: what tests and benchmarks read from them has to be true."""

from __future__ import annotations

import pytest
import requests

from tests.support.faults import reset_connection
from tests.support.polling import poll
from tools.standins import JobsEndpoint, ManagedIdentityEndpoint

pytestmark = pytest.mark.http


def test_connections_are_counted_where_they_are_accepted(
    identity: ManagedIdentityEndpoint,
) -> None:
    url = identity.environment()["IDENTITY_ENDPOINT"]
    headers = {"X-IDENTITY-HEADER": identity.secret}
    params = {"resource": "https://ml.azure.com", "api-version": "2019-08-01"}
    with requests.Session() as session:
        for _ in range(3):
            session.get(url, params=params, headers=headers, timeout=5).raise_for_status()
    requests.get(url, params=params, headers=headers, timeout=5).raise_for_status()
    assert len(identity.token_requests) == 4
    assert identity.connections == 2  # one kept-alive session, one request on its own


def test_a_client_that_resets_is_recorded_not_printed(
    jobs: JobsEndpoint, capfd: pytest.CaptureFixture[str]
) -> None:
    reset_connection(jobs.port)
    (error,) = poll(lambda: jobs.errors, 5, "the reset to be recorded")
    assert isinstance(error, ConnectionResetError)
    assert capfd.readouterr().err == ""
