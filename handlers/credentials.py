"""The process's Azure credential: DefaultAzureCredential, whose failures read as one line.

DefaultAzureCredential's error lists every credential it tried, a dozen lines or more, and
azure-identity logs that same text at WARNING before raising it. Repeated on every retry of
every event, that buries the one fact that matters. Here a failure becomes a single line
naming the credential that failed and what to check; the whole chain goes to DEBUG.
"""

from __future__ import annotations

import contextvars
import logging
import os
import re
from typing import Any

from azure.core.credentials import AccessToken, AccessTokenInfo, TokenRequestOptions
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import DefaultAzureCredential

logger = logging.getLogger(__name__)

# What to check for each credential this app is meant to run with (the others are named
# only when one of them is what failed).
_CHECK = {
    "EnvironmentCredential": "AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET (or "
    "AZURE_CLIENT_CERTIFICATE_PATH)",
    "WorkloadIdentityCredential": "AZURE_FEDERATED_TOKEN_FILE, AZURE_CLIENT_ID and AZURE_TENANT_ID",
    "ManagedIdentityCredential": "the app's managed identity (AZURE_CLIENT_ID names a "
    "user-assigned one), or IDENTITY_ENDPOINT and IDENTITY_HEADER of a local identity endpoint",
    "AzureCliCredential": "`az login` and `az account show`",
    "AzureDeveloperCliCredential": "`azd auth login`",
    "AzurePowerShellCredential": "`Connect-AzAccount`",
}
_NO_CREDENTIAL = (
    "on Azure, the app's managed identity (AZURE_CLIENT_ID names a user-assigned one); "
    "locally, `az login`, or `make run` and its .local/ops.env (IDENTITY_ENDPOINT and "
    "IDENTITY_HEADER)"
)
# Set by App Service and the Functions host (and the local identity stand-in): a managed
# identity is what is meant to answer, so its failure is the one to name.
_MANAGED_IDENTITY_SETTINGS = ("IDENTITY_ENDPOINT", "MSI_ENDPOINT")
_ATTEMPT = re.compile(r"^\t(\w+): (.*)$")
_CHAIN_FAILED = "failed to retrieve a token from the included credentials"
_MAX_REASON = 300

# Set while this module asks DefaultAzureCredential for a token: azure-identity's own WARNING
# with the chain is then dropped, since the caller logs the one line and this module the chain.
_asking: contextvars.ContextVar[bool] = contextvars.ContextVar("asking", default=False)


class CredentialFailedError(ClientAuthenticationError):
    """No token: ``str()`` is one line; ``chain`` is DefaultAzureCredential's full text."""

    def __init__(self, message: str, chain: str) -> None:
        super().__init__(message=message)
        self.chain = chain


class AppCredential:
    """A TokenCredential around DefaultAzureCredential that fails with one line."""

    def __init__(self, managed_identity_client_id: str | None = None) -> None:
        _install_filter()
        self._inner = DefaultAzureCredential(managed_identity_client_id=managed_identity_client_id)
        self._names = [type(c).__name__ for c in getattr(self._inner, "credentials", ())]

    def get_token(
        self,
        *scopes: str,
        claims: str | None = None,
        tenant_id: str | None = None,
        enable_cae: bool = False,
        **kwargs: Any,
    ) -> AccessToken:
        asking = _asking.set(True)
        try:
            return self._inner.get_token(
                *scopes, claims=claims, tenant_id=tenant_id, enable_cae=enable_cae, **kwargs
            )
        except ClientAuthenticationError as exc:
            raise self._failed(scopes, exc) from None
        finally:
            _asking.reset(asking)

    def get_token_info(
        self, *scopes: str, options: TokenRequestOptions | None = None
    ) -> AccessTokenInfo:
        asking = _asking.set(True)
        try:
            return self._inner.get_token_info(*scopes, options=options)
        except ClientAuthenticationError as exc:
            raise self._failed(scopes, exc) from None
        finally:
            _asking.reset(asking)

    def close(self) -> None:
        self._inner.close()

    def _failed(self, scopes: tuple[str, ...], exc: ClientAuthenticationError) -> Exception:
        chain = str(exc.message or exc)
        logger.debug("token request for %s failed: %s", " ".join(scopes), chain)
        meant = None
        if any(os.environ.get(name) for name in _MANAGED_IDENTITY_SETTINGS):
            meant = "ManagedIdentityCredential"
        return CredentialFailedError(summary(chain, self._names, meant), chain)


def summary(chain: str, names: list[str], meant: str | None = None) -> str:
    """One line for DefaultAzureCredential's failure text ``chain``; ``names`` are the
    credentials in its chain, in order; ``meant`` the one the environment sets up, if known.

    The chain moves past a credential that is unavailable and stops at the first one that
    fails outright, so when fewer were attempted than it holds, the last attempted is the
    one that failed; when all were attempted and none was meant, none was set up.
    """
    attempts = [(m.group(1), m.group(2)) for m in map(_ATTEMPT.match, chain.splitlines()) if m]
    if not attempts:
        return f"{_first_line(chain)} (check {_NO_CREDENTIAL})"
    name, reason = attempts[-1]
    if meant is not None and meant in dict(attempts):
        name, reason = meant, dict(attempts)[meant]
    if meant in dict(attempts) or (names and len(attempts) < len(names)):
        check = _CHECK.get(name, "its settings; the whole chain is logged at DEBUG")
        return f"{name} failed: {_short(reason)} (check {check})"
    return (
        f"no credential is set up ({len(attempts)} tried, all unavailable; "
        f"ManagedIdentityCredential: {_short(dict(attempts).get('ManagedIdentityCredential'))}; "
        f"AzureCliCredential: {_short(dict(attempts).get('AzureCliCredential'))}); "
        f"check {_NO_CREDENTIAL}"
    )


def _short(reason: str | None) -> str:
    if reason is None:
        return "not tried"
    line = " ".join(reason.split())
    return line if len(line) <= _MAX_REASON else line[: _MAX_REASON - 3] + "..."


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else "no token"


class _DropChainWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (_asking.get() and _CHAIN_FAILED in str(record.msg))


_filter = _DropChainWarning()


def _install_filter() -> None:
    # The record is created on this logger; a filter on a parent would not see it.
    chained = logging.getLogger("azure.identity._credentials.chained")
    if _filter not in chained.filters:
        chained.addFilter(_filter)
