"""Write a thumbnail of a new image into the thumbnail container, exactly once per version.

The thumbnail of ``<container>/<blob>`` is ``<container>/<blob>`` in THUMBNAIL_CONTAINER: the
source path mirrored, whatever the output format (the Content-Type says which). So names never
collide, a page can compute a thumbnail's URL from its source's, and a new version whose
format differs (opaque to transparent under ``auto``, or after THUMBNAIL_FORMAT changed)
replaces the old thumbnail in place instead of leaving it behind under another name. Its
metadata records the source version (``source_etag``); every write is conditional on what was
read, so duplicate and concurrent deliveries of one event write once, and a stale event never
overwrites the thumbnail of a newer version.

With several THUMBNAIL_SIZES, the first size is the primary rendition, at the name above (so
adding sizes moves nothing already written); each other size ``N`` is at ``N/<container>/<blob>``.
All come from one download and one decode. Each rendition is checked and written on its own:
a delivery that failed after writing some makes only the rest. Every rendition also records
the fingerprint of the settings that shaped it (``settings_fingerprint``); one recorded
under other settings is stale and is made again, from the same source version.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial

from azure.core import MatchConditions
from azure.core.exceptions import (
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.storage.blob import BlobClient, BlobServiceClient, ContentSettings

from handlers import sources
from handlers.errors import (
    InvalidBlobError,
    NotAnImageError,
    StorageUnavailableError,
)
from handlers.events import MAX_BLOB_NAME, BlobCreated
from handlers.images import EMPTY, make_renditions
from handlers.memory import DecodeBudget, shared
from handlers.outcomes import Outcome
from handlers.renditions import Renditions, Shape
from handlers.settings import Settings
from handlers.storage import storage_errors, with_container

logger = logging.getLogger(__name__)

SOURCE_ETAG = "source_etag"
SOURCE_URL = "source_url"
FINGERPRINT = "settings_fingerprint"
BLURHASH = "blurhash"
SOURCE_WIDTH = "sourcewidth"
SOURCE_HEIGHT = "sourceheight"
_ATTEMPTS = 4


@dataclass(frozen=True)
class _Existing:
    etag: str
    source_version: str | None
    fingerprint: str | None = None


def thumbnail_name(container: str, blob_name: str, size: int | None = None) -> str:
    """Where the thumbnail of ``<container>/<blob_name>`` lives in THUMBNAIL_CONTAINER: the
    primary rendition (``size`` None) at the mirrored path, any other under ``<size>/``."""
    name = f"{container}/{blob_name}"
    return name if size is None else f"{size}/{name}"


def rendition_names(settings: Settings, container: str, blob_name: str) -> dict[int, str]:
    """Each THUMBNAIL_SIZES entry's thumbnail name, the primary's first."""
    primary, *others = settings.thumbnail.sizes
    names = {primary: thumbnail_name(container, blob_name)}
    names.update({size: thumbnail_name(container, blob_name, size) for size in others})
    return names


def made_from(
    service: BlobServiceClient, settings: Settings, container: str, blob_name: str
) -> str | None:
    """The source version (eTag, unquoted) the existing thumbnail was made from, or None when
    there is no thumbnail (or one without that record). Reads only; for "already done?"
    checks such as the backfill's: the version equal to the blob's current eTag means done
    (unless ``stale_renditions`` says the settings have changed since).
    """
    target = service.get_blob_client(
        settings.thumbnail_container, thumbnail_name(container, blob_name)
    )
    existing = _read_existing(target)
    return existing.source_version if existing is not None else None


def stale_renditions(
    service: BlobServiceClient, settings: Settings, container: str, blob_name: str, version: str
) -> list[str]:
    """The names of the renditions of ``version`` that are missing or were made under other
    settings (another fingerprint): what a delivery of its event would make again."""
    fingerprint = settings.thumbnail.fingerprint
    stale = []
    for name in rendition_names(settings, container, blob_name).values():
        existing = _read_existing(service.get_blob_client(settings.thumbnail_container, name))
        if not _is_done(existing, version, fingerprint):
            stale.append(name)
    return stale


def _is_done(existing: _Existing | None, version: str, fingerprint: str) -> bool:
    return (
        existing is not None
        and existing.source_version == version
        and existing.fingerprint == fingerprint
    )


def check_event(event: BlobCreated, settings: Settings) -> None:
    """Raise InvalidBlobError for what the event alone shows cannot be thumbnailed (name too
    long, too large, empty); the handler and the ops dry run ask this same question."""
    name = max(rendition_names(settings, event.container, event.blob_name).values(), key=len)
    if len(name) > MAX_BLOB_NAME:
        raise InvalidBlobError(
            f"thumbnail name {settings.thumbnail_container}/{name[:80]}... would have "
            f"{len(name)} characters; blob names are limited to {MAX_BLOB_NAME}"
        )
    if event.content_length is not None and event.content_length > settings.thumbnail_max_bytes:
        raise InvalidBlobError(
            f"blob has {event.content_length} bytes, over THUMBNAIL_MAX_BYTES "
            f"({settings.thumbnail_max_bytes}); not downloaded"
        )
    if event.content_length == 0:
        raise InvalidBlobError(EMPTY)


def create_thumbnail(
    event: BlobCreated,
    service: BlobServiceClient,
    settings: Settings,
    budget: DecodeBudget | None = None,
) -> Outcome:
    """Make and store every rendition of the blob version ``event`` announces that is not
    already there under the current settings; the decode takes its bytes from ``budget`` (by
    default the process's THUMBNAIL_DECODE_BUDGET_MB)."""
    check_event(event, settings)
    budget = budget or shared(settings.thumbnail_decode_budget_mb)
    output = settings.thumbnail
    fingerprint = output.fingerprint
    names = rendition_names(settings, event.container, event.blob_name)
    container = service.get_container_client(settings.thumbnail_container)
    targets = {size: container.get_blob_client(name) for size, name in names.items()}
    source = service.get_blob_client(event.container, event.blob_name)
    made: Renditions | None = None
    written: list[int] = []

    for _ in range(_ATTEMPTS):
        existing = {size: _read_existing(target) for size, target in targets.items()}
        pending = [
            size
            for size in output.sizes
            if size not in written and not _is_done(existing[size], event.version, fingerprint)
        ]
        if not pending:
            if made is None:
                return Outcome(
                    "duplicate",
                    f"thumbnail {names[output.sizes[0]]} already made from version "
                    f"{event.version}"
                    + (f" (+{len(names) - 1} renditions)" if len(names) > 1 else ""),
                )
            return _written(settings, made, names, written)
        if made is None:
            with sources.fetched(source, event, settings, budget) as fetched:
                if fetched is None:
                    return _superseded(event)
                try:
                    made = make_renditions(
                        fetched.data,
                        Shape(output.sizes, output.fit, output.aspect),
                        settings.thumbnail_max_pixels,
                        settings.thumbnail_format,
                        budget,
                        max_frames=settings.thumbnail_max_frames,
                        reserved=fetched.reserved,
                        blurhash=output.blurhash,
                    )
                except NotAnImageError as exc:
                    return Outcome("ignored", str(exc))
        elif not sources.is_current(source, event):
            return _superseded(event)
        metadata = {
            SOURCE_ETAG: event.version,
            SOURCE_URL: source.url,
            FINGERPRINT: fingerprint,
            SOURCE_WIDTH: str(made.upright_size[0]),
            SOURCE_HEIGHT: str(made.upright_size[1]),
        }
        if made.blurhash is not None:
            metadata[BLURHASH] = made.blurhash
        changed = False
        failed: Exception | None = None
        for size in pending:
            rendition = made.of(size)
            try:
                with_container(
                    container,
                    partial(
                        _upload,
                        targets[size],
                        rendition.data,
                        ContentSettings(
                            content_type=rendition.content_type,
                            cache_control=output.cache_control,
                        ),
                        metadata,
                        existing[size],
                    ),
                )
            except (ResourceExistsError, ResourceModifiedError):
                logger.info(
                    "event %s: thumbnail %s changed while we wrote it; reading it again",
                    event.event_id,
                    names[size],
                )
                changed = True
                continue
            except (StorageUnavailableError, HttpResponseError) as exc:
                # Write the other renditions still: the retry then makes only this one.
                failed = failed or exc
                continue
            written.append(size)
        if failed is not None:
            logger.warning(
                "event %s: %d of %d renditions written; the rest are retried",
                event.event_id,
                len(written),
                len(names),
            )
            raise failed
        if not changed:
            return _written(settings, made, names, written)
    raise StorageUnavailableError(
        f"thumbnail {names[output.sizes[0]]} kept changing under {_ATTEMPTS} attempts"
    )


def _written(
    settings: Settings, made: Renditions, names: dict[int, str], written: list[int]
) -> Outcome:
    """The outcome line: the primary rendition as before, then what else was written."""
    if not written:
        return Outcome(
            "duplicate", "another delivery wrote every rendition while this one made them"
        )
    primary = settings.thumbnail.sizes[0]
    shown = made.of(primary if primary in written else written[0])
    note = f"; {made.note}" if made.note else ""
    others = [
        f"{names[size]} {made.of(size).width}x{made.of(size).height}"
        for size in written
        if size != shown.size
    ]
    also = f"; also {', '.join(others)}" if others else ""
    return Outcome(
        "written",
        f"thumbnail {settings.thumbnail_container}/{names[shown.size]} "
        f"{shown.width}x{shown.height} {shown.content_type} from {made.source_format} "
        f"{made.source_size[0]}x{made.source_size[1]}{also}{note}",
    )


def _read_existing(target: BlobClient) -> _Existing | None:
    try:
        with storage_errors("reading the thumbnail's properties"):
            props = target.get_blob_properties()
    except ResourceNotFoundError:
        return None
    metadata = props.metadata or {}
    return _Existing(str(props.etag), metadata.get(SOURCE_ETAG), metadata.get(FINGERPRINT))


def _upload(
    target: BlobClient,
    data: bytes,
    content: ContentSettings,
    metadata: dict[str, str],
    existing: _Existing | None,
) -> None:
    with storage_errors("writing the thumbnail"):
        if existing is None:
            # Create only: a concurrent delivery that got there first makes this fail.
            target.upload_blob(data, overwrite=False, metadata=metadata, content_settings=content)
        else:
            target.upload_blob(
                data,
                overwrite=True,
                metadata=metadata,
                content_settings=content,
                etag=existing.etag,
                match_condition=MatchConditions.IfNotModified,
            )


def _superseded(event: BlobCreated) -> Outcome:
    return Outcome(
        "superseded",
        f"the blob changed after version {event.version}; "
        "the newer version's event makes its thumbnail",
    )
