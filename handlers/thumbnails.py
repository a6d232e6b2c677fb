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
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.storage.blob import BlobClient, BlobServiceClient, ContentSettings

from handlers.errors import (
    InvalidBlobError,
    NotAnImageError,
    SourceGoneError,
    StorageUnavailableError,
)
from handlers.events import MAX_BLOB_NAME, BlobCreated
from handlers.images import EMPTY, make_renditions, predicted_cost
from handlers.memory import DecodeBudget, MiB, megabytes, shared
from handlers.outcomes import Outcome
from handlers.renditions import Renditions, Shape
from handlers.settings import Settings
from handlers.storage import quoted_etag, storage_errors, with_container

logger = logging.getLogger(__name__)

SOURCE_ETAG = "source_etag"
SOURCE_URL = "source_url"
FINGERPRINT = "settings_fingerprint"
BLURHASH = "blurhash"
SOURCE_WIDTH = "sourcewidth"
SOURCE_HEIGHT = "sourceheight"
_ATTEMPTS = 4
# Sources larger than this are reserved in the decode budget before their download, from
# what their first HEAD_BYTES say; 16 events at once hold at most 64 MiB of smaller ones.
PREDICT_ABOVE = 4 * MiB
# Enough for the header of every still format Pillow can open from a prefix: JPEG's
# segments before its frame header (EXIF and its thumbnail, ICC, MPF: 64 KiB each at most),
# PNG's chunks before IDAT, a tiled HEIC's item boxes.
HEAD_BYTES = 256 * 1024


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
            with _fetched(source, event, settings, budget) as fetched:
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
        elif not _is_current(source, event):
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
            written.append(size)
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


@dataclass(frozen=True)
class _Fetched:
    data: bytes
    reserved: int  # of the decode's own reservation, what the caller's already holds


@contextmanager
def _fetched(
    source: BlobClient, event: BlobCreated, settings: Settings, budget: DecodeBudget
) -> Iterator[_Fetched | None]:
    """The event's version of the source (None when the blob has changed since), downloaded
    under a reservation in ``budget`` when it is large.

    A source over PREDICT_ABOVE bytes has its header read first (HEAD_BYTES); when that
    tells the decode's cost, the decode, the file's bytes and the download's buffers are
    reserved together before the rest is downloaded, and held until the thumbnail is made.
    A burst of large images then waits (and, after the budget's wait, fails transiently)
    without holding their files in memory meanwhile, and an image that cannot fit is refused
    before its download. Smaller sources, and formats whose cost needs the whole file, are
    downloaded first and reserve their decode alone.
    """
    length = event.content_length
    if not budget.enabled or length is None or length <= PREDICT_ABOVE:
        data = _download(source, event, settings.thumbnail_max_bytes)
        yield None if data is None else _Fetched(data, 0)
        return
    head = _download(source, event, settings.thumbnail_max_bytes, length=HEAD_BYTES)
    if head is None:
        yield None
        return
    output = settings.thumbnail
    prediction = predicted_cost(
        head, Shape(output.sizes, output.fit, output.aspect), settings.thumbnail_max_pixels
    )
    if prediction is None:
        data = _download(source, event, settings.thumbnail_max_bytes)
        yield None if data is None else _Fetched(data, 0)
        return
    held = prediction.cost + length + download_buffers(length)
    with budget.reserve(held, f"{prediction.what} (a {megabytes(length)} file)"):
        data = _download(source, event, settings.thumbnail_max_bytes)
        yield None if data is None else _Fetched(data, prediction.cost)


def download_buffers(length: int) -> int:
    """What the storage SDK holds beside a blob's bytes while it downloads ``length`` of
    them: its first ranged GET (max_single_get_size, 32 MiB) and one chunk after it
    (max_chunk_get_size, 4 MiB)."""
    return min(length, 32 * MiB) + (4 * MiB if length > 32 * MiB else 0)


def _download(
    source: BlobClient, event: BlobCreated, max_bytes: int, length: int | None = None
) -> bytes | None:
    """The bytes of exactly the event's version (its first ``length`` only, when given), or
    None when the blob has changed since."""
    try:
        with storage_errors("downloading the source blob"):
            downloader = source.download_blob(
                offset=0 if length else None,
                length=length,
                etag=quoted_etag(event.etag),
                match_condition=MatchConditions.IfNotModified,
            )
            if length is None and downloader.size > max_bytes:
                raise InvalidBlobError(
                    f"blob has {downloader.size} bytes, over THUMBNAIL_MAX_BYTES ({max_bytes})"
                )
            return downloader.readall()
    except ResourceNotFoundError:
        raise SourceGoneError("the source blob was deleted before it could be read") from None
    except ResourceModifiedError:
        # 412 also answers a conditional read of a blob that no longer exists: tell the two
        # apart (a deleted source raises SourceGoneError).
        if _is_current(source, event):
            # The version is still there, so the condition failed for another reason:
            # let Event Grid try again rather than call the event superseded.
            raise StorageUnavailableError(
                f"the source refused a read of its current version {event.version} (412)"
            ) from None
        return None


def _is_current(source: BlobClient, event: BlobCreated) -> bool:
    """Whether the source is still the event's version; raises SourceGoneError if deleted."""
    try:
        with storage_errors("reading the source's properties"):
            props = source.get_blob_properties()
    except ResourceNotFoundError:
        raise SourceGoneError(
            "the source blob was deleted before its thumbnail was written"
        ) from None
    return str(props.etag).strip('"') == event.version


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
