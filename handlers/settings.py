"""App settings: every name the code reads, its default, and the checks on its value.

Settings are read when the first event arrives, not at import, so the host can index the
functions without them; a bad value raises ConfigurationError naming the setting.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from urllib.parse import urlsplit

from handlers.batch_settings import RETIRED_INPUT_TYPE, BatchSettings, read_batch
from handlers.errors import ConfigurationError
from handlers.thumbnail_settings import ThumbnailOutput, one_of, read_output
from handlers.thumbnail_settings import whole_number as _integer

# Every setting the code reads, with what it is for. docs/settings.md, local.settings.json.sample
# and the Bicep app settings are checked against this table by the tests.
SETTINGS: dict[str, str] = {
    "DATA_STORAGE": "Connection string of the storage account that holds the blobs (local runs).",
    "DATA_STORAGE__blobServiceUri": "Identity-based alternative: the account's blob endpoint.",
    "DATA_STORAGE__accountName": "Identity-based alternative: the account name (public cloud).",
    "DATA_STORAGE__clientId": "Client id of the user-assigned identity used for storage.",
    "THUMBNAIL_CONTAINER": "Container the thumbnails are written to.",
    "THUMBNAIL_SIZE": "Longest side of a thumbnail in pixels (THUMBNAIL_SIZES' one-value form).",
    "THUMBNAIL_SIZES": "Longest sides of the renditions, comma-separated; the first is primary.",
    "THUMBNAIL_FIT": "contain (the whole image) or cover (cropped to THUMBNAIL_ASPECT by entropy).",
    "THUMBNAIL_ASPECT": "Width:height of a cover thumbnail, such as 1:1 or 16:9.",
    "THUMBNAIL_BLURHASH": "BlurHash components (such as 4x3) in the thumbnail's metadata; off.",
    "THUMBNAIL_CACHE_CONTROL": "Cache-Control of every thumbnail blob.",
    "THUMBNAIL_MAX_PIXELS": "Larger source images are refused (decompression-bomb guard).",
    "THUMBNAIL_MAX_BYTES": "Larger source blobs are refused without being downloaded.",
    "THUMBNAIL_FORMAT": "auto (JPEG, or PNG when transparent), webp, jpeg or png.",
    "THUMBNAIL_DECODE_BUDGET_MB": "Decoded image bytes the process holds at once; 0 turns it off.",
    "THUMBNAIL_MAX_FRAMES": "Frames kept of an animated GIF/WebP (the first ones); 1: a still.",
    "DISPATCH_LEDGER_CONTAINER": "Container of the batch dispatch ledger (one blob per version).",
    "DEADLETTER_CONTAINER": "Container Event Grid dead-letters into; never processed.",
    "BATCH_ENDPOINT_URI": "Scoring URI of the batch endpoint; unset means dry-run.",
    "BATCH_DEPLOYMENT": "Optional deployment name, sent as azureml-model-deployment.",
    "BATCH_INPUT_NAME": "Name of the job input that receives the blob or folder.",
    "BATCH_JOB_SCOPE": "file (a job per new file) or folder (a job per folder marker).",
    "BATCH_FOLDER_MARKER": "In folder scope, the blob whose creation starts the folder's job.",
    "BATCH_OUTPUT_URI": "Optional job output: a template with {path} and {job}.",
    "BATCH_OUTPUT_NAME": "Name of the job output BATCH_OUTPUT_URI is sent as.",
    "BATCH_TOKEN_SCOPE": "Scope of the bearer token for the batch endpoint.",
    "BATCH_TIMEOUT_SECONDS": "How long one request to the batch endpoint may take.",
    "BATCH_TRACK_SCHEDULE": "NCRONTAB schedule of track_batch_jobs (six fields, with seconds).",
    "AZURE_CLIENT_ID": "Client id of the user-assigned identity (DefaultAzureCredential).",
}

# The ways to name the data account; exactly one is used (the first that is set).
STORAGE_SETTINGS = (
    "DATA_STORAGE",
    "DATA_STORAGE__blobServiceUri",
    "DATA_STORAGE__accountName",
)

DEFAULTS: dict[str, str] = {
    "THUMBNAIL_CONTAINER": "thumbnails",
    "THUMBNAIL_SIZES": "128",  # THUMBNAIL_SIZE, its one-value form, has none of its own
    "THUMBNAIL_FIT": "contain",
    "THUMBNAIL_ASPECT": "1:1",
    "THUMBNAIL_BLURHASH": "4x3",
    "THUMBNAIL_CACHE_CONTROL": "public, max-age=31536000, immutable",
    "THUMBNAIL_MAX_PIXELS": "150000000",
    "THUMBNAIL_MAX_BYTES": "268435456",
    "THUMBNAIL_FORMAT": "auto",
    "THUMBNAIL_DECODE_BUDGET_MB": "1024",  # handlers.memory.INSTANCE_SIZING[2048]
    "THUMBNAIL_MAX_FRAMES": "100",
    "DISPATCH_LEDGER_CONTAINER": "batch-dispatch",
    "DEADLETTER_CONTAINER": "deadletter",
    "BATCH_INPUT_NAME": "input_data",
    "BATCH_JOB_SCOPE": "file",
    "BATCH_FOLDER_MARKER": "_SUCCESS",  # what Spark and Hadoop write when a folder is complete
    "BATCH_OUTPUT_NAME": "score",  # what model deployments call their output
    "BATCH_TOKEN_SCOPE": "https://ml.azure.com/.default",
    "BATCH_TIMEOUT_SECONDS": "30",
    "BATCH_TRACK_SCHEDULE": "0 */5 * * * *",
}

THUMBNAIL_FORMATS = ("auto", "webp", "jpeg", "png")
# Frames of an animation at most: each 128 px frame costs about 1-5 ms to decode and encode.
MAX_FRAMES_CEILING = 1000
# Pillow refuses any image over twice its MAX_IMAGE_PIXELS (89,478,485) whatever we allow.
PILLOW_PIXEL_CEILING = 178_956_970
_CONTAINER_NAME = re.compile(r"^(?=.{3,63}$)[a-z0-9]+(-[a-z0-9]+)*$")
_ACCOUNT_NAME = re.compile(r"^[a-z0-9]{3,24}$")


@dataclass(frozen=True)
class StorageSettings:
    """Where the data account is, and how to reach it."""

    connection_string: str | None
    account_url: str | None
    client_id: str | None


@dataclass(frozen=True)
class Settings:
    storage: StorageSettings
    thumbnail_container: str
    thumbnail: ThumbnailOutput  # renditions, fit, placeholder, headers
    thumbnail_max_pixels: int
    thumbnail_max_bytes: int
    thumbnail_format: str  # one of THUMBNAIL_FORMATS
    thumbnail_decode_budget_mb: int  # 0: no budget
    thumbnail_max_frames: int  # of an animated source; 1: the first frame only
    ledger_container: str
    deadletter_container: str
    batch: BatchSettings
    client_id: str | None

    @property
    def thumbnail_size(self) -> int:
        """The primary rendition's longest side (the one at the source's own name)."""
        return self.thumbnail.sizes[0]

    @property
    def output_containers(self) -> frozenset[str]:
        """Containers the app writes to; events for their blobs are never processed."""
        return frozenset(
            (self.thumbnail_container, self.ledger_container, self.deadletter_container)
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """Read and check every setting; raises ConfigurationError naming the bad one."""
        values = {name: value.strip() for name, value in env.items() if name in SETTINGS}
        values = {name: value for name, value in values.items() if value}

        def get(name: str) -> str:
            return values.get(name, DEFAULTS[name])

        output_names = {
            name: _container(name, get(name))
            for name in ("THUMBNAIL_CONTAINER", "DISPATCH_LEDGER_CONTAINER", "DEADLETTER_CONTAINER")
        }
        if len(set(output_names.values())) != len(output_names):
            raise ConfigurationError(
                "THUMBNAIL_CONTAINER",
                "THUMBNAIL_CONTAINER, DISPATCH_LEDGER_CONTAINER and DEADLETTER_CONTAINER "
                f"must differ, got {sorted(output_names.items())}",
            )
        thumbnail_format = _thumbnail_format(get("THUMBNAIL_FORMAT"))
        max_frames = _integer(
            "THUMBNAIL_MAX_FRAMES", get("THUMBNAIL_MAX_FRAMES"), 1, MAX_FRAMES_CEILING
        )
        return cls(
            storage=_storage(values),
            thumbnail_container=output_names["THUMBNAIL_CONTAINER"],
            thumbnail=read_output(values, get, thumbnail_format, max_frames),
            thumbnail_max_pixels=_integer(
                "THUMBNAIL_MAX_PIXELS", get("THUMBNAIL_MAX_PIXELS"), 1, PILLOW_PIXEL_CEILING
            ),
            thumbnail_max_bytes=_integer(
                "THUMBNAIL_MAX_BYTES", get("THUMBNAIL_MAX_BYTES"), 1, 4 * 1024**3
            ),
            thumbnail_format=thumbnail_format,
            thumbnail_decode_budget_mb=_integer(
                "THUMBNAIL_DECODE_BUDGET_MB", get("THUMBNAIL_DECODE_BUDGET_MB"), 0, 65536
            ),
            thumbnail_max_frames=max_frames,
            ledger_container=output_names["DISPATCH_LEDGER_CONTAINER"],
            deadletter_container=output_names["DEADLETTER_CONTAINER"],
            batch=_batch(env, values, get),
            client_id=values.get("AZURE_CLIENT_ID"),
        )


def _container(name: str, value: str) -> str:
    if not _CONTAINER_NAME.match(value):
        raise ConfigurationError(
            name,
            f"{value!r} is not a container name (3-63 lowercase letters, digits and "
            "single hyphens, starting and ending with a letter or digit)",
        )
    return value


def _thumbnail_format(value: str) -> str:
    return one_of("THUMBNAIL_FORMAT", value, THUMBNAIL_FORMATS)


def _storage(values: Mapping[str, str]) -> StorageSettings:
    client_id = values.get("DATA_STORAGE__clientId")
    if "DATA_STORAGE" in values:
        connection_string = values["DATA_STORAGE"]
        if connection_string != "UseDevelopmentStorage=true" and (
            "BlobEndpoint=" not in connection_string and "AccountName=" not in connection_string
        ):
            raise ConfigurationError(
                "DATA_STORAGE",
                "is not a storage connection string (expected UseDevelopmentStorage=true or "
                "one with AccountName= or BlobEndpoint=)",
            )
        return StorageSettings(connection_string, None, client_id)
    if "DATA_STORAGE__blobServiceUri" in values:
        uri = values["DATA_STORAGE__blobServiceUri"].rstrip("/")
        _check_url("DATA_STORAGE__blobServiceUri", uri)
        return StorageSettings(None, uri, client_id)
    if "DATA_STORAGE__accountName" in values:
        account = values["DATA_STORAGE__accountName"]
        if not _ACCOUNT_NAME.match(account):
            raise ConfigurationError(
                "DATA_STORAGE__accountName",
                f"{account!r} is not a storage account name (3-24 lowercase letters and digits)",
            )
        return StorageSettings(None, f"https://{account}.blob.core.windows.net", client_id)
    raise ConfigurationError(
        "DATA_STORAGE",
        "not set: set DATA_STORAGE (a connection string) or DATA_STORAGE__blobServiceUri or "
        "DATA_STORAGE__accountName (identity-based)",
    )


def _batch(
    env: Mapping[str, str], values: Mapping[str, str], get: Callable[[str], str]
) -> BatchSettings:
    retired = env.get(RETIRED_INPUT_TYPE, "").strip()
    batch = read_batch(
        {**values, RETIRED_INPUT_TYPE: retired} if retired else values, get, _check_url
    )
    return replace(batch, track_schedule=_schedule("BATCH_TRACK_SCHEDULE", batch.track_schedule))


_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_DAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
_CronField = tuple[str, int, int, tuple[str, ...]]
# NCRONTAB as the Functions host reads it: second, minute, hour, day, month, day of week.
_CRON_FIELDS: tuple[_CronField, ...] = (
    ("second", 0, 59, ()),
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day", 1, 31, ()),
    ("month", 1, 12, _MONTHS),
    ("day of week", 0, 6, _DAYS),
)
_CRON_PART = re.compile(r"^(\*|[0-9A-Za-z]+(?:-[0-9A-Za-z]+)?)(?:/([0-9]+))?$")


def _schedule(name: str, value: str) -> str:
    """A six-field NCRONTAB expression, checked field by field.

    The host resolves ``%BATCH_TRACK_SCHEDULE%`` itself and refuses a bad one only when it
    indexes the timer; checking here names the setting in the same error as every other one.
    """
    fields = value.split()
    if len(fields) != len(_CRON_FIELDS):
        raise ConfigurationError(
            name,
            f"{value!r} is not a six-field NCRONTAB schedule "
            "(second minute hour day month day-of-week, e.g. '0 */5 * * * *')",
        )
    for text, (what, low, high, names) in zip(fields, _CRON_FIELDS, strict=True):
        for part in text.split(","):
            problem = _cron_part(part, low, high, names)
            if problem:
                raise ConfigurationError(name, f"{value!r}: {what} field {text!r}: {problem}")
    return " ".join(fields)


def _cron_part(part: str, low: int, high: int, names: tuple[str, ...]) -> str | None:
    match = _CRON_PART.match(part)
    if match is None:
        return f"{part!r} is not *, a value, a range or a step"
    span, step = match[1], match[2]
    if step is not None and not 1 <= int(step) <= high - low + 1:
        return f"step {step} is outside 1..{high - low + 1}"
    if span == "*":
        return None
    for item in span.split("-"):
        if item.upper() in names:
            continue
        if not item.isdigit() or not low <= int(item) <= high:
            return f"{item!r} is outside {low}..{high}"
    return None


def _check_url(name: str, url: str) -> None:
    """Allow https anywhere and plain http only for loopback stand-ins."""
    parts = urlsplit(url)
    if not parts.hostname or parts.scheme not in ("http", "https"):
        raise ConfigurationError(name, f"{url!r} is not an http(s) URL")
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise ConfigurationError(
            name, f"{url!r} uses plain http; only https is allowed outside loopback hosts"
        )


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
