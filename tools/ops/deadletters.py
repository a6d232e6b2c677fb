"""Replay the events Event Grid dead-lettered, then move each handled blob to the archive.

Event Grid writes ``<SUBSCRIPTION NAME IN UPPER CASE>/<yyyy>/<m>/<d>/<h>/<guid>.json`` blobs
(UTC, not zero-padded) into DEADLETTER_CONTAINER, each a JSON array of the original events
with dead-letter fields added. A blob whose events all reached a final outcome (processed,
already done or failed permanently) moves to ``archive/<original name>`` in the same
container; a blob with any transient failure, or with an outcome that only a setting decided
(``Outcome.final`` false: a dry-run dispatch), stays where it is for the next replay.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from azure.core import MatchConditions
from azure.core.exceptions import AzureError, ResourceModifiedError, ResourceNotFoundError
from azure.storage.blob import BlobPrefix, ContainerClient, ContentSettings

from handlers.errors import ConfigurationError
from handlers.outcomes import Outcome
from tools.deadletter_format import MalformedError, parse_blob, parse_name
from tools.ops import interrupts
from tools.ops.dry_run import Plan, verdict
from tools.ops.progress import (
    EXIT_INTERRUPTED,
    EXIT_MALFORMED,
    EXIT_OK,
    EXIT_TRANSIENT,
    EXIT_USAGE,
    Tally,
    counted,
)
from tools.ops.session import Session
from tools.routes import Route, Routes

logger = logging.getLogger(__name__)

# Lower case on purpose: Event Grid upper-cases subscription names, so no subscription's
# dead letters can ever land under this prefix.
ARCHIVE_PREFIX = "archive/"
_MAX_BLOB_BYTES = 64 * 1024 * 1024
_HOUR = timedelta(hours=1)


@dataclass(frozen=True)
class ReplayOptions:
    subscription: str | None
    since: datetime | None
    dry_run: bool


def parse_since(text: str) -> datetime:
    """An ISO date or time; without an offset it is UTC."""
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{text!r} is not an ISO date or time (2025-03-01 or 2025-03-01T10:30Z)"
        ) from None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def archive_name(name: str) -> str:
    return ARCHIVE_PREFIX + name


def _dead_letters(
    container: ContainerClient, subscription: Route | None
) -> Iterator[tuple[str, int]]:
    """(name, size) of every blob outside the archive, one subscription folder at a time.

    Walking the top level first means the archive, which only grows, is never listed.
    """
    if subscription is not None:
        prefixes = [f"{subscription.name.upper()}/"]
    else:
        prefixes = []
        for entry in container.walk_blobs(delimiter="/"):
            if isinstance(entry, BlobPrefix):
                if entry.name != ARCHIVE_PREFIX:
                    prefixes.append(entry.name)
            else:
                yield entry.name, int(entry.size or 0)
    for prefix in prefixes:
        for blob in container.list_blobs(name_starts_with=prefix):
            yield blob.name, int(blob.size or 0)


def run_replay(session: Session, options: ReplayOptions) -> int:
    """Replay what ``options`` selects; messages go to ``session.err``, results to ``out``."""
    selected: Route | None = None
    if options.subscription is not None:
        try:
            selected = session.routes.by_name(options.subscription)
        except KeyError as exc:
            session.err.write(f"error: {exc.args[0]}\n")
            return EXIT_USAGE
    return _Replay(session, options).run(selected)


class _Replay:
    def __init__(self, session: Session, options: ReplayOptions) -> None:
        self.ctx = ctx = session.ctx
        self.routes = session.routes
        self.options = options
        self.handle = session.handle
        self.out = session.out
        self.progress = session.progress
        self.container = ctx.blob_service.get_container_client(ctx.settings.deadletter_container)
        self.tally = Tally()
        self.blobs: Counter[str] = Counter()  # what became of each dead-letter blob

    def run(self, selected: Route | None) -> int:
        interrupted = False
        try:
            for name, size in _dead_letters(self.container, selected):
                interrupts.check()
                self.progress.update(f"{self.blobs.total()} blobs, {self.tally.brief()}")
                where = f"{self.container.container_name}/{name}"
                try:
                    parsed = parse_name(name)
                    # The hour in the name is when the events were dead-lettered; keep a
                    # blob whose hour reaches past --since.
                    since = self.options.since
                    if since is not None and parsed.hour + _HOUR <= since:
                        continue
                    route = _route(self.routes, parsed.subscription)
                except MalformedError as exc:
                    self.blobs["malformed"] += 1
                    self.out.write(f"malformed, left in place: {where}: {exc}\n")
                    continue
                verdict = self.replay(name, size, route)
                self.blobs[verdict] += 1
                if verdict == "stopped":
                    break
        except ResourceNotFoundError:
            self.out.write(
                f"container {self.container.container_name} does not exist: nothing to replay\n"
            )
        except KeyboardInterrupt:
            interrupted = True
        finally:
            self.progress.close()
        return self.report(interrupted)

    def replay(self, name: str, size: int, route: Route) -> str:
        """Replay one dead-letter blob; return what became of it for the summary."""
        where = f"{self.container.container_name}/{name}"
        if size > _MAX_BLOB_BYTES:
            self.out.write(f"malformed, left in place: {where}: {size} bytes is too large\n")
            return "malformed"
        try:
            downloader = self.container.get_blob_client(name).download_blob()
            data = downloader.readall()
        except ResourceNotFoundError:
            return "gone"  # another replay archived it since the listing
        etag = str(downloader.properties.etag)
        try:
            dead = parse_blob(data)
        except MalformedError as exc:
            self.out.write(f"malformed, left in place: {where}: {exc}\n")
            return "malformed"
        if self.options.dry_run:
            # The backfill's read-only verdict: what a setting keeps from being final now.
            for event in dead.events:
                found = verdict(self.ctx, route.function, event)
                if found.plan is Plan.NOT_FINAL:
                    self.out.write(
                        f"would leave in place {where}: {route.function} {found.detail}\n"
                    )
                    return "would leave in place"
            self.out.write(
                f"would replay {where}: {len(dead.events)} event(s) to {route.function} "
                f"({dead.reason}), then move it to {archive_name(name)}\n"
            )
            return "would replay"
        logger.info(
            "replaying %s: %d event(s) to %s (%s)",
            where,
            len(dead.events),
            route.function,
            dead.reason,
        )
        transient = False
        waiting: Outcome | None = None  # an outcome that is not final: the letter stays
        for event in dead.events:
            what = f"{route.function} {event.get('subject', '?')} (from {name})"
            try:
                outcome = self.handle(route.function, event, self.ctx)
            except ConfigurationError as exc:
                self.tally.transient_failure(what, exc)
                self.out.write(f"left in place: {where}: {exc}\n")
                return "stopped"
            except Exception as exc:
                # handle() has logged it; the blob stays for the next replay.
                self.tally.transient_failure(what, exc)
                transient = True
            else:
                self.tally.outcome(what, outcome)
                if not outcome.final:
                    waiting = outcome
        if transient:
            self.out.write(f"left in place: {where}: an event failed transiently\n")
            return "left in place"
        if waiting is not None:
            self.out.write(
                f"left in place: {where}: {route.function} came to {waiting.status} only, "
                f"because of app setting {waiting.setting} (not final)\n"
            )
            return "not final"
        return self.archive(name, data, etag, route)

    def archive(self, name: str, data: bytes, etag: str, route: Route) -> str:
        """Copy to the archive, then delete the original only if it is what was replayed."""
        where = f"{self.container.container_name}/{name}"
        target = archive_name(name)
        try:
            self.container.get_blob_client(target).upload_blob(
                data,
                overwrite=True,
                content_settings=ContentSettings(content_type="application/json"),
                metadata={
                    "replayed_at": datetime.now(UTC).isoformat(timespec="seconds"),
                    "replayed_to": route.function,
                    "deadletter_etag": etag.strip('"'),
                },
            )
            self.container.get_blob_client(name).delete_blob(
                etag=etag, match_condition=MatchConditions.IfNotModified
            )
        except ResourceNotFoundError:
            pass  # a concurrent replay moved it first; the archive holds the same bytes
        except ResourceModifiedError:
            self.out.write(f"replayed, left in place: {where} changed while it was replayed\n")
            return "left in place"
        except AzureError as exc:
            self.out.write(f"replayed, left in place: {where}: archiving failed: {exc}\n")
            return "left in place"
        self.out.write(
            f"replayed and archived: {where} -> {self.container.container_name}/{target}\n"
        )
        return "archived"

    def report(self, interrupted: bool) -> int:
        out, blobs, tally = self.out, self.blobs, self.tally
        if self.options.dry_run:
            out.write(
                "dry run summary: would replay "
                f"{counted(blobs['would replay'], 'dead-letter blob')}, "
                f"would leave in place {blobs['would leave in place']}, "
                f"malformed {blobs['malformed']}; nothing was written\n"
            )
            return EXIT_OK
        out.write(
            f"replay summary: dead-letter blobs archived {blobs['archived']}, "
            f"left in place {blobs['left in place'] + blobs['stopped'] + blobs['not final']}, "
            f"malformed {blobs['malformed']}\n"
        )
        for line in tally.summary():
            out.write(f"  {line}\n")
        if interrupted:
            out.write("interrupted: blobs not archived yet stay in place; run it again\n")
            return EXIT_INTERRUPTED
        if blobs["stopped"]:
            out.write("stopped: an app setting is wrong (see the failures above)\n")
            return EXIT_USAGE
        if blobs["not final"]:
            out.write(
                f"not final: {counted(blobs['not final'], 'dead-letter blob')} "
                f"{'stays' if blobs['not final'] == 1 else 'stay'} in place until "
                f"{', '.join(sorted(tally.settings))} is set; then replay again\n"
            )
            return EXIT_USAGE
        if tally.transient or blobs["left in place"]:
            return EXIT_TRANSIENT
        if blobs["malformed"]:
            return EXIT_MALFORMED
        return EXIT_OK


def _route(routes: Routes, subscription: str) -> Route:
    try:
        return routes.by_name(subscription)
    except KeyError:
        raise MalformedError(
            f"no subscription named {subscription!r} in the routes file; was it renamed or removed?"
        ) from None
