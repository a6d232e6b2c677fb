"""``make run``: Azurite, the local event source on the standard blob port, and the functions.

Starts Azurite (state under ``.local/azurite``), the event source on 127.0.0.1:10000 in front
of it (so ``UseDevelopmentStorage=true``, the SDKs, Storage Explorer and ``az storage`` work
unchanged and every upload fires the functions), and the function host: ``func start`` when
Core Tools are on PATH, else the functions in this process. Uploads a few samples, says where
their results landed, then logs each delivery until Ctrl-C or SIGTERM stops all it started.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from azure.core.exceptions import ResourceExistsError
from azure.storage.blob import BlobServiceClient

from handlers.errors import ConfigurationError
from handlers.settings import Settings
from tools import azurite, local_env
from tools.eventsource import (
    EventSource,
    EventSourceConfig,
    InProcessTarget,
    PortInUseError,
    RetryTiming,
    Target,
    WebhookTarget,
    check_port_free,
)
from tools.eventsource.targets import indexed_functions
from tools.local_batch import TIMER_FUNCTION, LocalBatch
from tools.processes import Interrupts, Watchdog, stop_group
from tools.routes import ROUTES_FILE, Routes, load_routes
from tools.samples import SampleWatch, describe_results, upload_samples
from tools.standins.functions_host import WEBHOOK_PATH, FunctionsHostStandIn

logger = logging.getLogger("local_loop")

ROOT = Path(__file__).resolve().parent.parent
DEVELOPMENT_STORAGE = "UseDevelopmentStorage=true"
STANDARD_BLOB_PORT = 10000
# Settings that may say UseDevelopmentStorage=true, which means port 10000: repointed at the
# event source when it listens elsewhere.
DEVELOPMENT_STORAGE_SETTINGS = ("AzureWebJobsStorage", "DATA_STORAGE")


class LocalLoopError(Exception):
    """Something the user has to fix before the loop can run; the message says what."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tools.local_loop",
        description="Run the functions locally against Azurite, fed by Event Grid-like events.",
    )
    parser.add_argument(
        "--blob-port",
        type=int,
        default=STANDARD_BLOB_PORT,
        help="port of the event source, the blob endpoint clients use (default 10000, what "
        "UseDevelopmentStorage=true means)",
    )
    parser.add_argument(
        "--azurite-port", type=int, default=0, help="Azurite's own port (default: a free one)"
    )
    parser.add_argument(
        "--functions-port", type=int, default=7071, help="port for `func start` (default 7071)"
    )
    parser.add_argument(
        "--delivery",
        choices=("auto", "func", "inprocess", "webhook"),
        default="auto",
        help="auto: `func start` when func is on PATH, else in-process; webhook: a host you "
        "started yourself at --webhook-url",
    )
    parser.add_argument(
        "--webhook-url",
        default=None,
        help="base URL of a running Functions host (with --delivery webhook)",
    )
    parser.add_argument(
        "--state-dir", type=Path, default=ROOT / ".local", help="Azurite data and event queue"
    )
    parser.add_argument(
        "--settings",
        type=Path,
        default=ROOT / "local.settings.json",
        help="created from local.settings.json.sample when missing",
    )
    parser.add_argument("--routes", type=Path, default=ROUTES_FILE, help="subscriptions file")
    parser.add_argument(
        "--time-scale",
        type=float,
        default=RetryTiming.time_scale,
        help="multiplies Event Grid's retry schedule and each time to live (default 0.1)",
    )
    parser.add_argument(
        "--max-retry-delay",
        type=float,
        default=RetryTiming.max_delay,
        help="longest wait between two attempts, seconds (default 60)",
    )
    parser.add_argument("--no-samples", action="store_true", help="upload no sample blobs")
    parser.add_argument(
        "--sample-timeout",
        type=float,
        default=120.0,
        help="how long to wait for the samples' results before carrying on (seconds)",
    )
    parser.add_argument(
        "--batch-endpoint",
        choices=("none", "local"),
        default="none",
        help="local: start a batch endpoint stand-in whose jobs walk to their end, and track "
        "them every few seconds; none (default): dry-run unless BATCH_ENDPOINT_URI is set",
    )
    parser.add_argument(
        "--job-seconds",
        type=float,
        default=9.0,
        help="with --batch-endpoint local: how long a job takes from Queued to its end",
    )
    parser.add_argument(
        "--track-seconds",
        type=float,
        default=2.0,
        help="with --batch-endpoint local: how often track_batch_jobs runs",
    )
    parser.add_argument("--verbose", action="store_true", help="debug logging")
    return parser.parse_args(argv)


@dataclass
class _Started:
    """Everything this run started, so that it can all be stopped, by us or, if we die,
    by the watchdog."""

    watchdog: Watchdog | None = None
    azurite: azurite.Azurite | None = None
    source: EventSource | None = None
    host: subprocess.Popen[bytes] | None = None
    webhook: FunctionsHostStandIn | None = None  # in-process mode: func start's webhook
    batch: LocalBatch | None = None
    ops_env: Path | None = None  # what a second shell reads; removed first, when stopping

    def guard(self, process: subprocess.Popen[bytes], *, group: bool = False) -> None:
        if self.watchdog is not None:
            self.watchdog.watch(process.pid, group=group)

    def stop(self) -> None:
        if self.ops_env is not None:
            local_env.remove(self.ops_env)
            if self.watchdog is not None:
                self.watchdog.removed(self.ops_env)
            self.ops_env = None
        if self.webhook is not None:
            self.webhook.stop()
            self.webhook = None
        if self.host is not None:
            stop_group(self.host)
            self._forget(self.host.pid)
            self.host = None
        if self.batch is not None:
            self.batch.stop()
            self.batch = None
        if self.source is not None:
            self.source.stop()
            self.source = None
        if self.azurite is not None:
            self.azurite.stop()
            self._forget(self.azurite.process.pid)
            self.azurite = None
        if self.watchdog is not None:
            self.watchdog.close()
            self.watchdog = None

    def _forget(self, pid: int) -> None:
        if self.watchdog is not None:
            self.watchdog.forget(pid)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    for noisy in ("azure", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    _interrupts.install()
    started = _Started()
    try:
        run(args, started)
    except KeyboardInterrupt:
        _say("stopping ...")
    except (LocalLoopError, PortInUseError) as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2
    finally:
        # A second Ctrl-C must not cut the shutdown short and leave processes behind.
        with _interrupts.deferred(then_raise=False):
            started.stop()
    _say("stopped: Azurite, the event source and the function host are down")
    return 0


def run(args: argparse.Namespace, started: _Started) -> None:
    mode = args.delivery
    if mode == "auto":
        mode = "func" if shutil.which("func") else "inprocess"
    if mode == "func" and shutil.which("func") is None:
        raise LocalLoopError("--delivery func: Azure Functions Core Tools (func) are not on PATH")
    if mode == "webhook" and args.batch_endpoint == "local":
        raise LocalLoopError(
            "--batch-endpoint local needs a host the loop starts (--delivery auto, func or "
            "inprocess): yours would not see the endpoint's settings"
        )
    if mode == "webhook" and not args.webhook_url:
        raise LocalLoopError("--delivery webhook needs --webhook-url (e.g. http://localhost:7071)")

    check_port_free(args.blob_port)
    if args.azurite_port:
        check_port_free(args.azurite_port)
    if mode == "func":
        try:
            check_port_free(args.functions_port)
        except PortInUseError as exc:
            raise LocalLoopError(
                f"{exc}; if that is a Functions host you started, use --delivery webhook "
                f"--webhook-url http://127.0.0.1:{args.functions_port}"
            ) from None
    values = _settings(args.settings)
    env = function_environment(values, os.environ, args.blob_port)
    if args.batch_endpoint == "local":
        with _interrupts.deferred():
            started.batch = LocalBatch.start(args.job_seconds, args.track_seconds)
        env = started.batch.environment(env)
        _say(f"started the {started.batch.describe()}")
    try:
        settings = Settings.from_env(env)
    except ConfigurationError as exc:
        raise LocalLoopError(f"{args.settings} (or the environment): {exc}") from None
    batch = settings.batch  # in folder scope the batch route takes markers only, as in Bicep
    marker = batch.folder_marker if batch.folder_scope else None
    routes = load_routes(args.routes, marker)

    with _interrupts.deferred():
        started.watchdog = Watchdog()
    try:
        with _interrupts.deferred():
            started.azurite = azurite.start(
                args.azurite_port or None, args.state_dir / "azurite", on_spawn=started.guard
            )
    except RuntimeError as exc:
        raise LocalLoopError(str(exc)) from None
    target: Target
    if mode == "inprocess":
        # The functions run here and read their settings from this process's environment.
        os.environ.clear()
        os.environ.update(env)
        from handlers.context import reset_context

        reset_context()
        functions = indexed_functions()
        target = InProcessTarget()
        if started.batch is not None:
            started.batch.run_timer(functions[TIMER_FUNCTION])
        started.webhook = _serve_webhook(args.functions_port)
    else:
        url = args.webhook_url or f"http://127.0.0.1:{args.functions_port}"
        target = WebhookTarget(url)
    config = EventSourceConfig(
        port=args.blob_port,
        upstream_port=started.azurite.port,
        state_dir=args.state_dir / "eventsource",
        routes=routes,
        timing=RetryTiming(time_scale=args.time_scale, max_delay=args.max_retry_delay),
    )
    with _interrupts.deferred():
        started.source = EventSource(config, target).start()
    if mode == "func":
        with _interrupts.deferred():
            started.host = subprocess.Popen(
                ["func", "start", "--port", str(args.functions_port)],
                cwd=ROOT,
                env=env,
                start_new_session=True,  # its own group: stopped as a whole, see stop_group
            )
            started.guard(started.host, group=True)
        _say(f"started `func start` on port {args.functions_port} (pid {started.host.pid})")

    service = BlobServiceClient.from_connection_string(started.source.connection_string)
    _create_containers(service, routes, settings)
    if not args.no_samples:
        watch = SampleWatch()
        started.source.dispatcher.listeners.append(watch)
        uploaded = upload_samples(service, routes, watch, marker)
        _say(f"uploaded {len(uploaded)} samples; waiting for their deliveries ...")
        watch.wait(time.monotonic() + args.sample_timeout)
        started.source.dispatcher.listeners.remove(watch)
        _say(describe_results(service, routes, settings, uploaded, watch))

    connect = (
        DEVELOPMENT_STORAGE
        if args.blob_port == STANDARD_BLOB_PORT
        else started.source.connection_string
    )
    ops_env = args.state_dir / "ops.env"
    with _interrupts.deferred():
        started.ops_env = ops_env
        if started.watchdog is not None:
            started.watchdog.remove(ops_env)
        local_env.write(ops_env, local_env.for_ops(env), f"make run (pid {os.getpid()})")
    _say(
        f"local loop ready: blob endpoint {started.source.blob_url} (connect with {connect}); "
        f"functions: {target.description}; settings for a second shell in {ops_env} "
        f'(`make ops ARGS="..."` reads it); one line per delivery below; Ctrl-C stops'
    )
    if started.batch is not None:
        _say('list the jobs: make ops ARGS="jobs" (or .venv/bin/python -m tools.ops jobs)')
    if started.webhook is not None:
        _say(
            f"the functions' Event Grid webhook, as `func start` serves it (test.http): "
            f"{started.webhook.url}{WEBHOOK_PATH}?functionName=<function>"
        )
    while True:
        if started.host is not None and started.host.poll() is not None:
            raise LocalLoopError(f"`func start` exited with {started.host.returncode}")
        time.sleep(0.5)


def function_environment(
    values: Mapping[str, str], environ: Mapping[str, str], blob_port: int
) -> dict[str, str]:
    """The function host's environment: local.settings.json Values, with variables already
    set in the environment winning (as Core Tools do), and development storage pointed at
    the event source when it is not on the standard port."""
    env = {name: str(value) for name, value in values.items()}
    env.update(environ)
    if blob_port != STANDARD_BLOB_PORT:
        for name in DEVELOPMENT_STORAGE_SETTINGS:
            if env.get(name, "").strip() == DEVELOPMENT_STORAGE:
                env[name] = azurite.connection_string(blob_port)
    return env


def _serve_webhook(port: int) -> FunctionsHostStandIn | None:
    """In-process mode answers what `func start` would on its port, so test.http and other
    webhook clients work without Core Tools; a port already taken only costs that."""
    try:
        with _interrupts.deferred():
            return FunctionsHostStandIn(port, lifetime=30 * 24 * 3600.0)  # stopped with the run
    except OSError as exc:
        _say(f"not serving the functions' webhook on port {port} ({exc.strerror or exc})")
        return None


def _settings(path: Path) -> dict[str, str]:
    if not path.exists():
        sample = ROOT / "local.settings.json.sample"
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(sample, path)
        _say(f"created {path} from {sample.name}")
    try:
        values = json.loads(path.read_text(encoding="utf-8"))["Values"]
    except (ValueError, KeyError) as exc:
        raise LocalLoopError(f"{path} is not a local.settings.json with Values: {exc}") from None
    if not isinstance(values, dict):
        raise LocalLoopError(f"{path}: Values is not an object")
    return {str(name): str(value) for name, value in values.items()}


def _create_containers(service: BlobServiceClient, routes: Routes, settings: Settings) -> None:
    """The containers the routes name and the ones the functions write to."""
    for name in sorted(set(routes.containers.values()) | settings.output_containers):
        with contextlib.suppress(ResourceExistsError):
            service.create_container(name)


_interrupts = Interrupts()


def _say(message: str) -> None:
    print(message, flush=True)


if __name__ == "__main__":
    sys.exit(main())
