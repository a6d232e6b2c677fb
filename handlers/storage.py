"""Small helpers that turn Azure SDK storage failures into this app's errors."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
)
from azure.storage.blob import ContainerClient

from handlers.credentials import CredentialFailedError
from handlers.errors import ConfigurationError, StorageUnavailableError

logger = logging.getLogger(__name__)

T = TypeVar("T")


def quoted_etag(etag: str) -> str:
    """ETags in conditions must be quoted, as the service returns them."""
    return etag if etag.startswith('"') else f'"{etag}"'


@contextmanager
def storage_errors(what: str) -> Iterator[None]:
    """Re-raise storage failures that a retry can fix as StorageUnavailableError.

    404/409/412 pass through untouched: callers decide what they mean. 401/403 are
    configuration (a missing role assignment), which Event Grid's retries can wait out.
    """
    try:
        yield
    except (ResourceNotFoundError, ResourceExistsError):
        raise
    except CredentialFailedError as exc:  # no token: its one line says what to check
        raise StorageUnavailableError(f"{what}: {exc}") from exc
    except HttpResponseError as exc:
        status = exc.status_code or 0
        if status == 412:
            raise
        if status in (401, 403):
            raise ConfigurationError(
                "DATA_STORAGE", f"{what}: storage refused access ({status} {_code(exc)})"
            ) from exc
        raise StorageUnavailableError(f"{what}: storage answered {status} {_code(exc)}") from exc
    except AzureError as exc:  # connection errors and timeouts
        raise StorageUnavailableError(f"{what}: {type(exc).__name__}: {exc}") from exc


def with_container(container: ContainerClient, action: Callable[[], T]) -> T:
    """Run ``action``; if the container does not exist yet, create it once and retry."""
    try:
        return action()
    except ResourceNotFoundError as exc:
        if _code(exc) != "ContainerNotFound":
            raise
    logger.info("container %s did not exist; creating it", container.container_name)
    try:
        with storage_errors(f"creating container {container.container_name}"):
            container.create_container()
    except ResourceExistsError:
        pass
    return action()


def _code(exc: HttpResponseError) -> str:
    """The storage error code (ContainerNotFound, ...) that the SDK sets on its errors."""
    return str(getattr(exc, "error_code", None) or "")
