"""Run the functions' handlers over blobs that already exist, as if they had just been created.

Each listed blob gets a BlobCreated event synthesized from its real properties (eTag,
content type, length) in the delivery schema of each route; only routes that match that
event get it, so the command does exactly what Event Grid would have delivered. The
handlers' own idempotency makes a second run write nothing; a checkpoint file makes an
interrupted run resume where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import BlobProperties

from handlers import batch_ledger, thumbnails
from handlers.context import AppContext
from handlers.errors import ConfigurationError, InvalidEventError
from handlers.events import BlobCreated, Ignored, parse_event
from handlers.outcomes import Outcome
from tools import events as event_builders
from tools.ops import state
from tools.ops.progress import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_TRANSIENT,
    EXIT_USAGE,
    Progress,
    Tally,
)
from tools.routes import Route, Routes

logger = logging.getLogger(__name__)

Handle = Callable[[str, object, AppContext | None], Outcome]

# Stable across runs, so a blob version's synthesized event has the same id every time.
_EVENT_NAMESPACE = uuid.UUID("6f1c7a52-3b0e-4f0f-9a7e-2d4c1b8e5a10")
_SAVE_EVERY_SECONDS = 1.0


@dataclass(frozen=True)
class BackfillOptions:
    container: str
    prefix: str
    functions: tuple[str, ...]
    dry_run: bool
    concurrency: int
    state_dir: Path
    restart: bool
    page_size: int


@dataclass
class _Page:
    """One page of the listing: the continuation token after it, and what is still running
    in it."""

    next: str | None
    pending: set[str] = field(default_factory=set)
    done: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class _Item:
    """One blob and the (route, event) pairs it is offered to."""

    container: str
    name: str
    page: _Page | None  # None: a blob retried from the checkpoint's retry list
    tasks: tuple[tuple[Route, dict[str, Any]], ...]


def state_file(
    state_dir: Path, ctx: AppContext, options: BackfillOptions, routes: list[Route]
) -> tuple[Path, dict[str, Any]]:
    """Where this backfill's checkpoint lives, and the key that identifies its arguments."""
    key: dict[str, Any] = {
        "command": "backfill",
        "account": ctx.account.blob_url,
        "container": options.container,
        "prefix": options.prefix,
        "routes": sorted(repr(route) for route in routes),
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return state_dir / f"backfill-{options.container}-{digest}.json", key


def listing_prefix(prefix: str, routes: list[Route]) -> str | None:
    """The narrowest listing prefix that still returns every blob a route could match.

    None when no route's folder is compatible with ``prefix``. A case-insensitive route
    (Event Grid's default) also matches ``Incoming/`` for folder ``incoming/``, so only the
    folder's leading characters without case narrow the listing.
    """
    candidates = []
    for route in routes:
        folder = route.folder if route.case_sensitive else _caseless_head(route.folder)
        if folder.startswith(prefix):
            candidates.append(folder)
        elif prefix.startswith(folder):
            candidates.append(prefix)
    if not candidates:
        return None
    common = candidates[0]
    for candidate in candidates[1:]:
        while not candidate.startswith(common):
            common = common[:-1]
    return common


def _caseless_head(text: str) -> str:
    for index, char in enumerate(text):
        if char.lower() != char.upper():
            return text[:index]
    return text


def synthesize(
    ctx: AppContext, route: Route, container: str, blob: BlobProperties
) -> dict[str, Any]:
    """The BlobCreated event Event Grid would have delivered to ``route`` for ``blob``."""
    etag = str(blob.etag)
    account = ctx.account
    settings = blob.content_settings
    blob_type = getattr(blob.blob_type, "value", blob.blob_type)
    return event_builders.blob_created(
        account=account.name,
        service_url=account.blob_url,
        container=container,
        blob_name=blob.name,
        etag=etag,
        # One event per file, as for a single upload; the listing cannot tell how it was made.
        api="PutBlob",
        content_type=(settings.content_type if settings else None) or "application/octet-stream",
        content_length=int(blob.size or 0),
        blob_type=str(blob_type or "BlockBlob"),
        schema=route.schema,
        event_id=str(
            uuid.uuid5(_EVENT_NAMESPACE, f"{route.function}|{container}/{blob.name}|{etag}")
        ),
        event_time=blob.last_modified,
    )


class _Run:
    """Shared bookkeeping of one backfill: checkpoint, tally, progress, stop flag."""

    def __init__(
        self, path: Path, checkpoint: state.Checkpoint, tally: Tally, progress: Progress
    ) -> None:
        self.path = path
        self.checkpoint = checkpoint
        self.tally = tally
        self.progress = progress
        self.pages: deque[_Page] = deque()
        # Finished blobs of a resumed checkpoint whose page has not been listed again yet.
        self.carried = set(checkpoint.done)
        self.listed = 0
        self.stop = threading.Event()
        self.stop_reason = ""
        self._lock = threading.Lock()
        self._saved_at = 0.0
        self._dirty = False

    def add_page(self, page: _Page) -> None:
        with self._lock:
            self.carried -= page.done
            self.pages.append(page)
            self._advance()

    def listing_finished(self) -> None:
        with self._lock:
            if not self.pages:
                self.checkpoint.listing_complete = True
                self._dirty = True

    def forget(self, name: str) -> None:
        """Drop a blob to retry that no longer exists."""
        with self._lock:
            self.checkpoint.retry.discard(name)
            self._dirty = True

    def finish(self, item: _Item, ok: bool) -> None:
        with self._lock:
            if ok:
                self.checkpoint.retry.discard(item.name)
            else:
                self.checkpoint.retry.add(item.name)
            if item.page is not None:
                item.page.pending.discard(item.name)
                if ok:
                    item.page.done.add(item.name)
                self._advance()
            self._dirty = True
            if time.monotonic() - self._saved_at >= _SAVE_EVERY_SECONDS:
                self._save()

    def _advance(self) -> None:
        """Drop finished pages from the front; the checkpoint then starts after them."""
        while self.pages and not self.pages[0].pending:
            page = self.pages.popleft()
            self.checkpoint.marker = page.next
            if page.next is None:
                self.checkpoint.listing_complete = True
        self.checkpoint.done = self.carried.union(*(page.done for page in self.pages))
        self._dirty = True

    def save(self) -> None:
        with self._lock:
            self._save()

    def _save(self) -> None:
        if self._dirty:
            state.save(self.path, self.checkpoint)
            self._dirty = False
        self._saved_at = time.monotonic()

    @property
    def complete(self) -> bool:
        with self._lock:
            return self.checkpoint.listing_complete and not self.pages and not self.checkpoint.retry

    def show(self, force: bool = False) -> None:
        self.progress.update(f"listed {self.listed}, {self.tally.brief()}", force=force)


def run_backfill(
    ctx: AppContext,
    routes: Routes,
    options: BackfillOptions,
    *,
    handle: Handle,
    out: TextIO,
    progress: Progress,
) -> int:
    """Backfill ``options.container``; messages go to ``progress.stream``, results to ``out``."""
    err = progress.stream
    selected = [route for route in routes.subscriptions if route.function in options.functions]
    watching = [route for route in selected if route.container.lower() == options.container]
    if not watching:
        err.write(
            f"error: no subscription for {', '.join(options.functions)} watches container "
            f"{options.container}; subscriptions: "
            + ", ".join(f"{r.name} ({r.function}: {r.subject_begins_with})" for r in selected)
            + "\n"
        )
        return EXIT_USAGE
    if options.container in ctx.settings.output_containers:
        err.write(f"error: {options.container} is one of this app's output containers\n")
        return EXIT_USAGE
    job = _Backfill(ctx, watching, options, handle=handle, out=out, progress=progress)
    if not job.container.exists():
        err.write(f"error: container {options.container} does not exist\n")
        return EXIT_USAGE
    if options.dry_run:
        return job.dry_run()
    try:
        with state.StateLock(job.path):
            return job.run()
    except RuntimeError as exc:
        err.write(f"error: {exc}\n")
        return EXIT_USAGE


class _Backfill:
    """One backfill of one container over the routes that watch it."""

    def __init__(
        self,
        ctx: AppContext,
        routes: list[Route],
        options: BackfillOptions,
        *,
        handle: Handle,
        out: TextIO,
        progress: Progress,
    ) -> None:
        self.ctx = ctx
        self.routes = routes
        self.options = options
        self.handle = handle
        self.out = out
        self.progress = progress
        self.err = progress.stream
        self.prefix = listing_prefix(options.prefix, routes)
        self.path, self.key = state_file(options.state_dir, ctx, options, routes)
        self.container = ctx.blob_service.get_container_client(options.container)

    def load_checkpoint(self) -> state.Checkpoint | None:
        if self.options.restart:
            return state.Checkpoint(key=self.key)
        try:
            found = state.load(self.path, self.key)
        except ValueError as exc:
            self.err.write(f"error: {exc}; use --restart to start over\n")
            return None
        if found is None:
            return state.Checkpoint(key=self.key)
        self.progress.write_line(
            f"resuming from {self.path}: {len(found.done)} blobs done in the current listing "
            f"page(s), {len(found.retry)} to retry"
            + (", listing complete" if found.listing_complete else "")
        )
        return found

    def items(self, run: _Run) -> Iterator[_Item]:
        """The blobs to offer: first those to retry, then the listing from the checkpoint on."""
        checkpoint = run.checkpoint
        container_name = self.options.container
        for name in sorted(checkpoint.retry):
            try:
                blob = self.container.get_blob_client(name).get_blob_properties()
            except ResourceNotFoundError:
                logger.info("%s/%s was deleted since it failed; not retried", container_name, name)
                run.forget(name)
                continue
            yield _Item(container_name, name, None, self.tasks(blob))
        if checkpoint.listing_complete or self.prefix is None:
            run.listing_finished()
            return
        skip = checkpoint.done | checkpoint.retry
        pages = self.container.list_blobs(
            name_starts_with=self.prefix or None,
            include=["metadata"],
            results_per_page=self.options.page_size,
        ).by_page(continuation_token=checkpoint.marker)
        for listed in pages:
            blobs = list(listed)
            page = _Page(next=getattr(pages, "continuation_token", None))
            items = []
            for blob in blobs:
                run.listed += 1
                if blob.name in skip:
                    page.done.add(blob.name)
                    continue
                if not blob.name.startswith(self.options.prefix) or _is_directory(blob):
                    continue
                tasks = self.tasks(blob)
                if tasks:
                    items.append(_Item(container_name, blob.name, page, tasks))
                    page.pending.add(blob.name)
            run.add_page(page)
            yield from items
            if page.next is None:
                break
        run.listing_finished()

    def tasks(self, blob: BlobProperties) -> tuple[tuple[Route, dict[str, Any]], ...]:
        """The routes whose filter matches the event synthesized for ``blob``, with it."""
        pairs = []
        for route in self.routes:
            event = synthesize(self.ctx, route, self.options.container, blob)
            if route.matches(event):
                pairs.append((route, event))
        return tuple(pairs)

    def work(self, run: _Run, item: _Item) -> None:
        """Handle one blob in a worker thread; Ctrl-C (BaseException) passes through."""
        ok = True
        for route, event in item.tasks:
            what = f"{route.function} {item.container}/{item.name}"
            try:
                outcome = self.handle(route.function, event, self.ctx)
            except ConfigurationError as exc:
                run.tally.transient_failure(what, exc)
                run.stop_reason = str(exc)
                run.stop.set()
                ok = False
            except Exception as exc:
                # handle() has logged it; the checkpoint keeps the blob for the next run.
                run.tally.transient_failure(what, exc)
                ok = False
            else:
                run.tally.outcome(what, outcome)
        run.finish(item, ok)
        run.show()

    def run(self) -> int:
        checkpoint = self.load_checkpoint()
        if checkpoint is None:
            return EXIT_USAGE
        run = _Run(self.path, checkpoint, Tally(), self.progress)
        self.progress.write_line(f"backfill {self.options.container}: checkpoint {self.path}")
        concurrency = self.options.concurrency
        interrupted = False
        pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="backfill")
        in_flight: set[Future[None]] = set()
        try:
            try:
                for item in self.items(run):
                    while len(in_flight) >= 2 * concurrency:
                        in_flight = _collect(in_flight, run)
                    if run.stop.is_set():
                        break
                    in_flight.add(pool.submit(self.work, run, item))
                while in_flight:
                    in_flight = _collect(in_flight, run)
            except KeyboardInterrupt:
                interrupted = True
            finally:
                # Work not started yet is dropped; its blobs stay pending in the checkpoint.
                pool.shutdown(wait=True, cancel_futures=True)
        except KeyboardInterrupt:  # a second Ctrl-C while the running handlers finish
            interrupted = True
        finally:
            self.progress.close()
            if run.complete:
                state.clear(self.path)
            else:
                run.save()
        return self.report(run, interrupted)

    def report(self, run: _Run, interrupted: bool) -> int:
        out, tally, path = self.out, run.tally, self.path
        out.write(f"backfill summary ({run.listed} blobs listed):\n")
        for line in tally.summary():
            out.write(f"  {line}\n")
        if interrupted:
            out.write(f"interrupted: progress saved in {path}; run the same command to resume\n")
            return EXIT_INTERRUPTED
        if run.stop.is_set():
            out.write(
                f"stopped: {run.stop_reason}\nfix the setting and run the same command to "
                f"resume (checkpoint {path})\n"
            )
            return EXIT_USAGE
        if tally.transient:
            out.write(
                f"{tally.transient} transient failures: run the same command again to retry "
                f"just those (checkpoint {path})\n"
            )
            return EXIT_TRANSIENT
        out.write("complete; checkpoint cleared\n")
        return EXIT_OK

    def dry_run(self) -> int:
        """List what a run would offer to which function and what is done; write nothing."""
        checkpoint = self.load_checkpoint()
        if checkpoint is None:
            return EXIT_USAGE
        # The dry run follows a saved checkpoint (it shows what a resume would do) but never
        # saves it.
        run = _Run(self.path, checkpoint, Tally(), self.progress)
        would = done = failing = 0
        for item in self.items(run):
            for route, event in item.tasks:
                verdict = _verdict(self.ctx, route.function, event)
                if verdict.startswith("already done"):
                    done += 1
                elif verdict.startswith("would fail"):
                    failing += 1
                else:
                    would += 1
                self.out.write(f"{verdict}: {route.function} {item.container}/{item.name}\n")
        self.out.write(
            f"dry run summary ({run.listed} blobs listed): would process {would}, "
            f"already done {done}, would fail {failing}; nothing was written\n"
        )
        return EXIT_OK


def _is_directory(blob: BlobProperties) -> bool:
    """ADLS Gen2 lists directories as empty blobs; Event Grid sends no BlobCreated for them."""
    return (blob.metadata or {}).get("hdi_isfolder") == "true"


def _collect(in_flight: set[Future[None]], run: _Run) -> set[Future[None]]:
    """Wait a little for running work; re-raise what escaped it (Ctrl-C)."""
    finished, remaining = wait(in_flight, timeout=0.2, return_when=FIRST_COMPLETED)
    for future in finished:
        future.result()
    run.show()
    return remaining


def _verdict(ctx: AppContext, function: str, event: dict[str, Any]) -> str:
    """'would process', 'already done (...)' or 'would fail (...)', reading only."""
    try:
        parsed = parse_event(event, ctx.account)
    except InvalidEventError as exc:
        return f"would fail ({exc})"
    if isinstance(parsed, Ignored):
        return f"would be ignored ({parsed.reason})"
    if function == "create_thumbnail":
        return _thumbnail_verdict(ctx, parsed)
    if function == "dispatch_batch_job":
        return _batch_verdict(ctx, parsed)
    return "would process"


def _thumbnail_verdict(ctx: AppContext, event: BlobCreated) -> str:
    settings = ctx.settings
    name = thumbnails.thumbnail_name(event.container, event.blob_name)
    blob = ctx.blob_service.get_blob_client(settings.thumbnail_container, name)
    try:
        props = blob.get_blob_properties()
    except ResourceNotFoundError:
        return "would process"
    made_from = (props.metadata or {}).get(thumbnails.SOURCE_ETAG)
    if made_from == event.version:
        return f"already done (thumbnail {settings.thumbnail_container}/{name})"
    return f"would process (replaces thumbnail made from {made_from})"


def _batch_verdict(ctx: AppContext, event: BlobCreated) -> str:
    settings = ctx.settings
    if settings.batch.endpoint_uri is None:
        return "would process (BATCH_ENDPOINT_URI unset: the handler only logs the request)"
    name = batch_ledger.ledger_name(event)
    ledger = ctx.blob_service.get_blob_client(settings.ledger_container, name)
    found = batch_ledger.read_ledger(ledger)
    if found is None:
        return "would process"
    record, _ = found
    return f"already done (ledger {settings.ledger_container}/{name}: {record.get('status')})"
