"""Command line of ``python -m tools.ops``: arguments, logging, settings, exit status."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
)

from handlers import pipeline
from handlers.context import AppContext
from handlers.errors import ConfigurationError, TransientError
from tools import local_env
from tools.ops.backfill import BackfillOptions, run_backfill
from tools.ops.deadletters import ReplayOptions, parse_since, run_replay
from tools.ops.jobs import JobsOptions, run_jobs
from tools.ops.progress import EXIT_TRANSIENT, EXIT_USAGE, Progress, ProgressLogHandler
from tools.ops.session import Handle, Session
from tools.ops.state import default_state_dir
from tools.routes import ROUTES_FILE, load_routes

FUNCTIONS = tuple(pipeline.HANDLERS)
MAX_CONCURRENCY = 64


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--routes",
        type=Path,
        default=ROUTES_FILE,
        help="event subscriptions file (default: infra/event-subscriptions.json)",
    )
    common.add_argument(
        "-v", "--verbose", action="store_true", help="log one line per event outcome"
    )
    parser = argparse.ArgumentParser(
        prog="python -m tools.ops",
        description="Operators' commands for the blob event functions (docs/operations.md). "
        "Storage and batch settings come from the same environment variables as the app; "
        "variables the environment does not set are read from the file a running `make run` "
        "writes (.local/ops.env, or the one OPS_ENV_FILE names; empty: none).",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    backfill = commands.add_parser(
        "backfill",
        parents=[common],
        help="run the handlers over blobs that already exist",
        description="Offer every existing blob of a container to the functions whose "
        "subscription would have matched it. Idempotent and resumable.",
    )
    backfill.add_argument("--container", required=True, help="container to backfill")
    backfill.add_argument("--prefix", default="", help="only blobs whose name starts with this")
    backfill.add_argument(
        "--target",
        choices=(*FUNCTIONS, "all"),
        default="all",
        help="which function to run (default: all)",
    )
    backfill.add_argument(
        "--dry-run", action="store_true", help="list what would be processed; write nothing"
    )
    backfill.add_argument(
        "--concurrency", type=int, default=4, help="blobs handled at once (default: 4)"
    )
    backfill.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help=f"where the checkpoint lives (default: {default_state_dir()})",
    )
    backfill.add_argument(
        "--restart", action="store_true", help="ignore a saved checkpoint and start over"
    )
    backfill.add_argument(
        "--page-size",
        type=int,
        default=1000,
        help="blobs per listing page, the unit of the checkpoint (default: 1000)",
    )

    replay = commands.add_parser(
        "replay-deadletters",
        parents=[common],
        help="replay Event Grid's dead-lettered events and archive them",
        description="Run each dead-lettered event through its subscription's function; "
        "move each fully handled dead-letter blob to archive/<name>.",
    )
    replay.add_argument("--subscription", help="only this event subscription's dead letters")
    replay.add_argument(
        "--since",
        help="only blobs dead-lettered in or after this UTC hour (ISO date or time)",
    )
    replay.add_argument(
        "--dry-run", action="store_true", help="list what would be replayed; write nothing"
    )

    jobs = commands.add_parser(
        "jobs",
        parents=[common],
        help="list batch jobs and their latest status; track or resubmit them",
        description="List the batch jobs in the dispatch ledger (blob, job, dispatch time, "
        "latest status). --refresh runs one track_batch_jobs pass first; --resubmit-failed "
        "offers each Failed, Canceled or NotFound job's blob version again.",
    )
    jobs.add_argument(
        "--status",
        action="append",
        default=[],
        help="only jobs with this latest status (Running, Failed, dispatching, ...); repeatable",
    )
    jobs.add_argument("--since", help="only jobs dispatched at or after this ISO date or time")
    jobs.add_argument("--open", action="store_true", help="only jobs not known to be final")
    jobs.add_argument(
        "--refresh", action="store_true", help="ask the endpoint about open jobs first"
    )
    jobs.add_argument(
        "--resubmit-failed",
        action="store_true",
        help="start a new job for each Failed, Canceled or NotFound one (one per version, "
        "even when two operators run this at once)",
    )
    jobs.add_argument(
        "--dry-run", action="store_true", help="with --resubmit-failed: list, post nothing"
    )
    return parser


def main(
    argv: Sequence[str] | None = None,
    *,
    handle: Handle = pipeline.handle,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Run one command; return its exit status. ``handle`` is replaceable for tests."""
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    args = _parser().parse_args(argv)
    try:
        # Into os.environ: DefaultAzureCredential reads the identity endpoint from there.
        loaded = local_env.load(os.environ)
    except (OSError, ValueError) as exc:
        err.write(f"error: cannot read {local_env.path()}: {exc}\n")
        return EXIT_USAGE
    if loaded is not None:
        source = loaded[0]
        shown = source.relative_to(Path.cwd()) if source.is_relative_to(Path.cwd()) else source
        err.write(f"settings from {shown} (make run); the environment's own win\n")
    try:
        ctx = AppContext.from_env(os.environ)
    except ConfigurationError as exc:
        err.write(f"error: {exc}\n")
        return EXIT_USAGE
    batch = ctx.settings.batch
    try:
        # As deployed for these settings: in folder scope the batch route takes markers only.
        routes = load_routes(args.routes, batch.folder_marker if batch.folder_scope else None)
    except (OSError, ValueError, KeyError) as exc:
        err.write(f"error: cannot read routes from {args.routes}: {exc}\n")
        return EXIT_USAGE
    progress = Progress(err, args.command, enabled=not args.dry_run and args.command != "jobs")
    session = Session(ctx, routes, handle, out, progress)
    with _logging(progress, args.verbose):
        try:
            if args.command == "backfill":
                if not 1 <= args.concurrency <= MAX_CONCURRENCY:
                    err.write(f"error: --concurrency must be 1..{MAX_CONCURRENCY}\n")
                    return EXIT_USAGE
                if not 1 <= args.page_size <= 5000:
                    err.write("error: --page-size must be 1..5000\n")
                    return EXIT_USAGE
                functions = FUNCTIONS if args.target == "all" else (args.target,)
                options = BackfillOptions(
                    container=args.container,
                    prefix=args.prefix,
                    functions=functions,
                    dry_run=args.dry_run,
                    concurrency=args.concurrency,
                    state_dir=args.state_dir or default_state_dir(),
                    restart=args.restart,
                    page_size=args.page_size,
                )
                return run_backfill(session, options)
            if args.command == "jobs":
                try:
                    since = None if args.since is None else parse_since(args.since)
                except ValueError as exc:
                    err.write(f"error: --since: {exc}\n")
                    return EXIT_USAGE
                if args.dry_run and not args.resubmit_failed:
                    err.write("error: --dry-run goes with --resubmit-failed\n")
                    return EXIT_USAGE
                jobs = JobsOptions(
                    statuses=frozenset(status.lower() for status in args.status),
                    since=since,
                    open_only=args.open,
                    refresh=args.refresh,
                    resubmit_failed=args.resubmit_failed,
                    dry_run=args.dry_run,
                )
                return run_jobs(ctx, jobs, out, err)
            try:
                since = None if args.since is None else parse_since(args.since)
            except ValueError as exc:
                err.write(f"error: --since: {exc}\n")
                return EXIT_USAGE
            replay = ReplayOptions(args.subscription, since, args.dry_run)
            return run_replay(session, replay)
        except ConfigurationError as exc:
            err.write(f"error: {exc}\n")
            return EXIT_USAGE
        except TransientError as exc:  # the handlers' read-only checks (a dry run)
            err.write(f"error: {exc}\n")
            return EXIT_TRANSIENT
        except ResourceNotFoundError as exc:
            err.write(f"error: not found: {_first_line(exc)}\n")
            return EXIT_USAGE
        except ClientAuthenticationError as exc:
            # Raised both for "no credential" (az login missing) and for a 403 from storage.
            err.write(
                f"error: storage refused or no credential: {_first_line(exc)}\n"
                "identity-based access needs `az login` (or a managed identity) and the "
                "Storage Blob Data Contributor role on the account\n"
            )
            return EXIT_USAGE
        except HttpResponseError as exc:
            if exc.status_code in (401, 403):
                err.write(f"error: storage refused access: {_first_line(exc)}\n")
                return EXIT_USAGE
            err.write(f"error: storage answered {exc.status_code}: {_first_line(exc)}\n")
            return EXIT_TRANSIENT
        except AzureError as exc:
            err.write(f"error: storage: {type(exc).__name__}: {_first_line(exc)}\n")
            return EXIT_TRANSIENT


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


@contextmanager
def _logging(progress: Progress, verbose: bool) -> Iterator[None]:
    """Log records go through the progress line, so neither tears the other; outcome lines
    (INFO) only with -v, failures always."""
    root = logging.getLogger()
    handler = ProgressLogHandler(progress)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    saved_level = root.level
    azure_logger = logging.getLogger("azure")
    saved_azure = azure_logger.level
    root.addHandler(handler)
    root.setLevel(logging.INFO if verbose else logging.WARNING)
    # The SDKs log every HTTP request at INFO; the outcome lines are the ones worth reading.
    azure_logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(saved_level)
        azure_logger.setLevel(saved_azure)
