"""Domain exceptions, split by what Event Grid should do about them.

BlobEventError
├── PermanentError          retrying cannot help: log the reason, return normally
│   ├── InvalidEventError   the event JSON is malformed or names a blob we must not touch
│   ├── InvalidBlobError    the blob's name or bytes cannot be processed (corrupt, ...)
│   │   ├── NotAnImageError the bytes are no image at all: create_thumbnail ignores it
│   │   └── TooLargeToDecodeError  decoding it needs more than the whole decode budget
│   ├── SourceGoneError     the blob was deleted before we read it
│   ├── DispatchRejectedError  the batch endpoint refused the job (4xx other than 408/429)
│   └── OutcomeUnknownError    the endpoint may have started the job but never answered;
│                              posting again could start a second one
├── TransientError          retrying can help: raise, so Event Grid retries and dead-letters
│   ├── StorageUnavailableError  storage answered 5xx, timed out or dropped the connection
│   ├── DispatchUnavailableError the batch endpoint answered 408/429/5xx or was unreachable
│   ├── DecodeBusyError          other decodes held the decode budget for the whole wait
│   └── DispatchInProgressError  another delivery of the same blob version holds the claim
└── ConfigurationError      an app setting is missing or invalid: raise, so events wait in
                            Event Grid's retries (and then the dead-letter container)
                            until the setting is fixed
"""

from __future__ import annotations


class BlobEventError(Exception):
    """Base of every error this app raises on purpose."""


class PermanentError(BlobEventError):
    """Retrying the same event cannot succeed."""


class InvalidEventError(PermanentError):
    """The event is malformed, or names a blob outside the configured account."""


class InvalidBlobError(PermanentError):
    """The blob's name or content cannot be processed."""


class NotAnImageError(InvalidBlobError):
    """The blob is not an image in any supported format (a text file, a PDF, ...), rather than
    a broken one: not this app's to thumbnail, so it is ignored rather than failed."""


class TooLargeToDecodeError(InvalidBlobError):
    """Decoding the image needs more memory than THUMBNAIL_DECODE_BUDGET_MB allows at all."""


class SourceGoneError(PermanentError):
    """The blob no longer exists."""


class DispatchRejectedError(PermanentError):
    """The batch endpoint refused the request with a status that retrying will not change."""

    def __init__(self, message: str, status_code: int, body: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.body = body


class OutcomeUnknownError(PermanentError):
    """The endpoint may have started the job, but no answer came back.

    Permanent because posting again could start a second job: an operator checks the
    endpoint's jobs. Once the version is recorded as unknown, ``ledger_blob`` names the
    record to delete to dispatch it again, and the message says so.
    """

    def __init__(self, reason: str, ledger_blob: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.ledger_blob = ledger_blob

    def __str__(self) -> str:
        if self.ledger_blob is None:
            return self.reason
        return (
            f"{self.reason}; check the endpoint's jobs, then delete ledger blob "
            f"{self.ledger_blob} to dispatch again"
        )


class TransientError(BlobEventError):
    """A later retry of the same event may succeed."""


class StorageUnavailableError(TransientError):
    """Blob storage failed in a way that may pass."""


class DispatchUnavailableError(TransientError):
    """The batch endpoint (or its token endpoint) failed in a way that may pass."""


class DecodeBusyError(TransientError):
    """The decode budget stayed too full to take this image within the wait."""


class DispatchInProgressError(TransientError):
    """Another delivery of the same blob version is dispatching it right now."""


class ConfigurationError(BlobEventError):
    """An app setting is missing or invalid; the message names it."""

    def __init__(self, setting: str, problem: str) -> None:
        super().__init__(f"app setting {setting}: {problem}")
        self.setting = setting
