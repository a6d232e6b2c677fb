"""Reading the source of a thumbnail: exactly the event's version, and for a large source
under a reservation in the decode budget taken before its download (handlers.memory)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from azure.core import MatchConditions
from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError
from azure.storage.blob import BlobClient

from handlers.errors import InvalidBlobError, SourceGoneError, StorageUnavailableError
from handlers.events import BlobCreated
from handlers.images import predicted_cost
from handlers.memory import DecodeBudget, MiB, megabytes
from handlers.renditions import Shape
from handlers.settings import Settings
from handlers.storage import quoted_etag, storage_errors

# Sources larger than this are reserved in the decode budget before their download, from
# what their first HEAD_BYTES say; 16 events at once hold at most 64 MiB of smaller ones.
PREDICT_ABOVE = 4 * MiB
# Enough for the header of every still format Pillow can open from a prefix: JPEG's
# segments before its frame header (EXIF and its thumbnail, ICC, MPF: 64 KiB each at most),
# PNG's chunks before IDAT, a tiled HEIC's item boxes.
HEAD_BYTES = 256 * 1024


@dataclass(frozen=True)
class Fetched:
    data: bytes
    reserved: int  # of the decode's own reservation, what the caller's already holds


@contextmanager
def fetched(
    source: BlobClient, event: BlobCreated, settings: Settings, budget: DecodeBudget
) -> Iterator[Fetched | None]:
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
        data = download(source, event, settings.thumbnail_max_bytes)
        yield None if data is None else Fetched(data, 0)
        return
    head = download(source, event, settings.thumbnail_max_bytes, length=HEAD_BYTES)
    if head is None:
        yield None
        return
    output = settings.thumbnail
    prediction = predicted_cost(
        head, Shape(output.sizes, output.fit, output.aspect), settings.thumbnail_max_pixels
    )
    if prediction is None:
        data = download(source, event, settings.thumbnail_max_bytes)
        yield None if data is None else Fetched(data, 0)
        return
    held = prediction.cost + length + download_buffers(length)
    with budget.reserve(held, f"{prediction.what} (a {megabytes(length)} file)"):
        data = download(source, event, settings.thumbnail_max_bytes)
        yield None if data is None else Fetched(data, prediction.cost)


def download_buffers(length: int) -> int:
    """What the storage SDK holds beside a blob's bytes while it downloads ``length`` of
    them: its first ranged GET (max_single_get_size, 32 MiB) and one chunk after it
    (max_chunk_get_size, 4 MiB)."""
    return min(length, 32 * MiB) + (4 * MiB if length > 32 * MiB else 0)


def download(
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
        if is_current(source, event):
            # The version is still there, so the condition failed for another reason:
            # let Event Grid try again rather than call the event superseded.
            raise StorageUnavailableError(
                f"the source refused a read of its current version {event.version} (412)"
            ) from None
        return None


def is_current(source: BlobClient, event: BlobCreated) -> bool:
    """Whether the source is still the event's version; raises SourceGoneError if deleted."""
    try:
        with storage_errors("reading the source's properties"):
            props = source.get_blob_properties()
    except ResourceNotFoundError:
        raise SourceGoneError(
            "the source blob was deleted before its thumbnail was written"
        ) from None
    return str(props.etag).strip('"') == event.version
