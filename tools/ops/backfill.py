"""Run the functions' handlers over blobs that already exist, as if they had just been created.

Each listed blob gets a BlobCreated event synthesized from its real properties (eTag,
content type, length) in the delivery schema of each route; only routes that match that
event get it, so the command does exactly what Event Grid would have delivered. The
handlers' own idempotency makes a second run write nothing; a checkpoint file makes an
interrupted run resume where it stopped.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import BlobProperties

from handlers.context import AppContext
from handlers.errors import ConfigurationError
from tools.ops import interrupts, state
from tools.ops.blobs import is_directory, listing_prefix, synthesize
from tools.ops.dry_run import Plan, verdict
from tools.ops.progress import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_TRANSIENT,
    EXIT_USAGE,
    Progress,
    Tally,
    counted,
)
from tools.ops.session import Session
from tools.routes import Route

logger = logging.getLogger(__name__)


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


@dataclass(frozen=True)
class _Item:
    """One blob and the (route, event) pairs it is offered to."""

    container: str
    name: str
    page: state.Page | None  # None: a blob retried from the checkpoint's retry list
    tasks: tuple[tuple[Route, dict[str, Any]], ...]


def checkpoint_key(
    ctx: AppContext, options: BackfillOptions, routes: list[Route]
) -> dict[str, Any]:
    """What identifies a backfill's arguments: a run with the same key resumes its checkpoint."""
    return {
        "command": "backfill",
        "account": ctx.account.blob_url,
        "container": options.container,
        "prefix": options.prefix,
        "routes": sorted(repr(route) for route in routes),
    }


class _Run:
    """Shared bookkeeping of one backfill: checkpoint, tally, progress, stop flag."""

    def __init__(self, tracker: state.Tracker, progress: Progress) -> None:
        self.tracker = tracker
        self.checkpoint = tracker.checkpoint
        self.tally = Tally()
        self.progress = progress
        self.listed = 0
        self.stop = threading.Event()
        self.stop_reason = ""

    def show(self, force: bool = False) -> None:
        self.progress.update(f"listed {self.listed}, {self.tally.brief()}", force=force)


def run_backfill(session: Session, options: BackfillOptions) -> int:
    """Backfill ``options.container``; messages go to ``session.err``, results to ``out``."""
    ctx, err = session.ctx, session.err
    selected = [
        route for route in session.routes.subscriptions if route.function in options.functions
    ]
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
    job = _Backfill(session, watching, options)
    if not job.container.exists():
        err.write(f"error: container {options.container} does not exist\n")
        return EXIT_USAGE
    if options.dry_run:
        return job.dry_run()
    try:
        with state.held(options.state_dir, job.stem, job.key) as path:
            return job.run(path)
    except RuntimeError as exc:
        err.write(f"error: {exc}\n")
        return EXIT_USAGE


class _Backfill:
    """One backfill of one container over the routes that watch it."""

    def __init__(self, session: Session, routes: list[Route], options: BackfillOptions) -> None:
        self.ctx = ctx = session.ctx
        self.routes = routes
        self.options = options
        self.handle = session.handle
        self.out = session.out
        self.progress = session.progress
        self.err = session.err
        self.prefix = listing_prefix(options.prefix, routes)
        self.stem = f"backfill-{options.container}"
        self.key = checkpoint_key(ctx, options, routes)
        self.container = ctx.blob_service.get_container_client(options.container)

    def load_checkpoint(self, path: Path | None) -> state.Checkpoint | None:
        if self.options.restart or path is None:
            return state.Checkpoint(key=self.key)
        try:
            found = state.load(path, self.key)
        except ValueError as exc:
            self.err.write(f"error: {exc}; use --restart to start over\n")
            return None
        if found is None:
            return state.Checkpoint(key=self.key)
        self.progress.write_line(
            f"resuming from {path}: {len(found.done)} blobs done in the current listing "
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
                run.tracker.forget(name)
                continue
            yield _Item(container_name, name, None, self.tasks(blob))
        if checkpoint.listing_complete or self.prefix is None:
            run.tracker.listing_finished()
            return
        skip = checkpoint.done | checkpoint.retry
        pages = self.container.list_blobs(
            name_starts_with=self.prefix or None,
            include=["metadata"],
            results_per_page=self.options.page_size,
        ).by_page(continuation_token=checkpoint.marker)
        for listed in pages:
            blobs = list(listed)
            page = state.Page(next=getattr(pages, "continuation_token", None))
            items = []
            for blob in blobs:
                run.listed += 1
                if blob.name in skip:
                    page.done.add(blob.name)
                    continue
                if not blob.name.startswith(self.options.prefix) or is_directory(blob):
                    continue
                tasks = self.tasks(blob)
                if tasks:
                    items.append(_Item(container_name, blob.name, page, tasks))
                    page.pending.add(blob.name)
            run.tracker.add_page(page)
            yield from items
            if page.next is None:
                break
        run.tracker.listing_finished()

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
                # Not final (a setting decided it): the checkpoint keeps the blob to do.
                ok = ok and outcome.final
        run.tracker.finish(item.name, item.page, ok)
        run.show()

    def run(self, path: Path) -> int:
        checkpoint = self.load_checkpoint(path)
        if checkpoint is None:
            return EXIT_USAGE
        run = _Run(state.Tracker(path, checkpoint), self.progress)
        self.progress.write_line(f"backfill {self.options.container}: checkpoint {path}")
        concurrency = self.options.concurrency
        interrupted = False
        pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="backfill")
        in_flight: set[Future[None]] = set()
        try:
            try:
                for item in self.items(run):
                    interrupts.check()
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
            if run.tracker.complete:
                state.clear(path)
            else:
                run.tracker.save()
        return self.report(run, path, interrupted)

    def report(self, run: _Run, path: Path, interrupted: bool) -> int:
        out, tally = self.out, run.tally
        out.write(f"backfill summary ({counted(run.listed, 'blob')} listed):\n")
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
        if tally.not_final:
            out.write(
                f"not final: {counted(tally.not_final, 'event')} came to an outcome that only "
                f"{', '.join(sorted(tally.settings))} decided; set it and run the same command "
                f"to do them (checkpoint {path})\n"
            )
            return EXIT_USAGE
        if tally.transient:
            out.write(
                f"{counted(tally.transient, 'transient failure')}: run the same command again "
                f"to retry just those (checkpoint {path})\n"
            )
            return EXIT_TRANSIENT
        out.write("complete; checkpoint cleared\n")
        return EXIT_OK

    def dry_run(self) -> int:
        """List what a run would offer to which function and what is done; write nothing."""
        checkpoint = self.load_checkpoint(state.find(self.options.state_dir, self.stem, self.key))
        if checkpoint is None:
            return EXIT_USAGE
        # The dry run follows a saved checkpoint (it shows what a resume would do) but never
        # saves it.
        run = _Run(state.Tracker(None, checkpoint), self.progress)
        plans: Counter[Plan] = Counter()
        unchecked = 0
        for item in self.items(run):
            for route, event in item.tasks:
                found = verdict(self.ctx, route.function, event)
                plans[found.plan] += 1
                unchecked += not found.content_checked
                self.out.write(f"{found}: {route.function} {item.container}/{item.name}\n")
        # An event the handler would ignore is a final decision, counted as processed as a
        # real run counts it.
        would = plans[Plan.PROCESS] + plans[Plan.IGNORE] + plans[Plan.STALE]
        # Thumbnails of the current version made under other settings: a real run redoes them.
        stale = f" ({plans[Plan.STALE]} of them stale)" if plans[Plan.STALE] else ""
        # Failures found from the event alone are counted; those only decoding would find
        # are not, and a bare number would claim they were looked for.
        fail = f"would fail {plans[Plan.FAIL]}" + (" + not checked" if unchecked else "")
        self.out.write(
            f"dry run summary ({counted(run.listed, 'blob')} listed): would process {would}"
            f"{stale}, "
            f"already done {plans[Plan.DONE]}, {fail}, "
            f"would stay to do {plans[Plan.NOT_FINAL]}; nothing was written\n"
        )
        if unchecked:
            self.out.write(
                f"not checked: the content of {counted(unchecked, 'blob')} (a dry run does not "
                "download or decode them; one that is corrupt fails only in the real run)\n"
            )
        if not_final := plans[Plan.NOT_FINAL]:
            self.out.write(
                f"not final: {counted(not_final, 'event')} "
                f"{'depends' if not_final == 1 else 'depend'} on a setting that is not set (see "
                "their lines); a real run keeps them in its checkpoint and exits 2\n"
            )
        return EXIT_OK


def _collect(in_flight: set[Future[None]], run: _Run) -> set[Future[None]]:
    """Wait a little for running work; re-raise what escaped it (Ctrl-C)."""
    interrupts.check()
    finished, remaining = wait(in_flight, timeout=0.2, return_when=FIRST_COMPLETED)
    for future in finished:
        future.result()
    run.show()
    return remaining
