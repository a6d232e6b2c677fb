"""``make run``: Azurite, the local event source on the standard blob port, and the functions.

Starts Azurite (state under ``.local/azurite``), the event source on 127.0.0.1:10000 in front
of it (so ``UseDevelopmentStorage=true``, the SDKs, Storage Explorer and ``az storage`` work
unchanged and every upload fires the functions), and the function host: ``func start`` when
Core Tools are on PATH, else the functions in this process. Uploads a few generated samples,
prints where their results landed, then logs one line per delivery until Ctrl-C or SIGTERM,
when it stops everything it started.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from urllib.parse import quote

from azure.core.exceptions import ResourceExistsError
from azure.storage.blob import BlobServiceClient, ContentSettings

from tools import azurite
from tools.eventsource import (
    EventSource,
    EventSourceConfig,
    InProcessTarget,
    PortInUseError,
    Report,
    RetryTiming,
    Target,
    WebhookTarget,
    check_port_free,
)
from tools.eventsource.targets import indexed_functions
from tools.routes import ROUTES_FILE, Route, Routes, load_routes

logger = logging.getLogger("local_loop")

ROOT = Path(__file__).resolve().parent.parent
DEVELOPMENT_STORAGE = "UseDevelopmentStorage=true"
STANDARD_BLOB_PORT = 10000
STORAGE_SETTINGS = ("AzureWebJobsStorage", "DATA_STORAGE")


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
    parser.add_argument("--verbose", action="store_true", help="debug logging")
    return parser.parse_args(argv)


@dataclass
class _Started:
    """Everything this run started, so that it can all be stopped."""

    azurite: azurite.Azurite | None = None
    source: EventSource | None = None
    host: subprocess.Popen[bytes] | None = None

    def stop(self) -> None:
        if self.host is not None:
            _stop_host(self.host)
            self.host = None
        if self.source is not None:
            self.source.stop()
            self.source = None
        if self.azurite is not None:
            self.azurite.stop()
            self.azurite = None


@dataclass
class _SampleWatch:
    """Collects the final fate of the sample uploads' deliveries."""

    blobs: set[str] = field(default_factory=set)
    finished: dict[str, str] = field(default_factory=dict)
    lock: threading.Condition = field(default_factory=threading.Condition)

    def __call__(self, report: Report) -> None:
        if report.final is None or report.delivery.blob not in self.blobs:
            return
        with self.lock:
            self.finished[report.delivery.blob] = report.final
            self.lock.notify_all()

    def wait(self, deadline: float) -> None:
        with self.lock:
            while not self.blobs <= self.finished.keys():
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                self.lock.wait(timeout=left)


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
    routes = load_routes(args.routes)
    mode = args.delivery
    if mode == "auto":
        mode = "func" if shutil.which("func") else "inprocess"
    if mode == "func" and shutil.which("func") is None:
        raise LocalLoopError("--delivery func: Azure Functions Core Tools (func) are not on PATH")
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

    try:
        with _interrupts.deferred():
            started.azurite = azurite.start(args.azurite_port or None, args.state_dir / "azurite")
    except RuntimeError as exc:
        raise LocalLoopError(str(exc)) from None
    target: Target
    if mode == "inprocess":
        # The functions run here and read their settings from this process's environment.
        os.environ.clear()
        os.environ.update(env)
        from handlers.context import reset_context

        reset_context()
        indexed_functions()
        target = InProcessTarget()
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
                start_new_session=True,  # its own group: stopped as a whole, see _stop_host
            )
        _say(f"started `func start` on port {args.functions_port} (pid {started.host.pid})")

    service = BlobServiceClient.from_connection_string(started.source.connection_string)
    _create_containers(service, routes, env)
    if not args.no_samples:
        watch = _SampleWatch()
        started.source.dispatcher.listeners.append(watch)
        uploaded = _upload_samples(service, routes, watch)
        _say(f"uploaded {len(uploaded)} samples; waiting for their deliveries ...")
        watch.wait(time.monotonic() + args.sample_timeout)
        started.source.dispatcher.listeners.remove(watch)
        _print_results(service, routes, env, uploaded, watch)

    connect = (
        DEVELOPMENT_STORAGE
        if args.blob_port == STANDARD_BLOB_PORT
        else started.source.connection_string
    )
    _say(
        f"local loop ready: blob endpoint {started.source.blob_url} (connect with {connect}); "
        f"functions: {target.description}; one line per delivery below; Ctrl-C stops"
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
        for name in STORAGE_SETTINGS:
            if env.get(name, "").strip() == DEVELOPMENT_STORAGE:
                env[name] = azurite.connection_string(blob_port)
    return env


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


def _create_containers(service: BlobServiceClient, routes: Routes, env: Mapping[str, str]) -> None:
    names = set(routes.containers.values())
    names |= {
        env[name]
        for name in ("THUMBNAIL_CONTAINER", "DISPATCH_LEDGER_CONTAINER", "DEADLETTER_CONTAINER")
        if env.get(name)
    }
    for name in sorted(names):
        with contextlib.suppress(ResourceExistsError):
            service.create_container(name)


def _route_for(routes: Routes, function: str) -> Route | None:
    return next((route for route in routes.subscriptions if route.function == function), None)


def sample_images() -> dict[str, tuple[bytes, str]]:
    """A few images the thumbnailer handles, generated now (no binaries in the repo)."""
    from PIL import Image, ImageDraw

    def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
        buffer = io.BytesIO()
        image.save(buffer, fmt, **options)
        return buffer.getvalue()

    landscape = Image.linear_gradient("L").resize((1600, 1000)).convert("RGB")
    ImageDraw.Draw(landscape).ellipse((600, 250, 1000, 650), fill=(240, 180, 40))
    badge = Image.new("RGBA", (600, 600), (0, 0, 0, 0))
    ImageDraw.Draw(badge).ellipse((50, 50, 550, 550), fill=(30, 120, 220, 255))
    poster = Image.new("RGB", (500, 800), (250, 250, 245))
    ImageDraw.Draw(poster).rectangle((50, 50, 450, 400), fill=(200, 30, 30))
    return {
        "samples/landscape.jpg": (encode(landscape, "JPEG", quality=90), "image/jpeg"),
        "samples/badge.png": (encode(badge, "PNG"), "image/png"),
        "samples/poster.gif": (encode(poster.convert("P"), "GIF"), "image/gif"),
    }


def _upload_samples(
    service: BlobServiceClient, routes: Routes, watch: _SampleWatch
) -> list[tuple[Route, str]]:
    uploads: list[tuple[Route, str, bytes, str]] = []
    images = _route_for(routes, "create_thumbnail")
    if images is not None:
        for name, (data, content_type) in sample_images().items():
            uploads.append((images, f"{images.folder}{name}", data, content_type))
    batch = _route_for(routes, "dispatch_batch_job")
    if batch is not None:
        rows = b"id,text\n1,hello\n2,world\n"
        uploads.append((batch, f"{batch.folder}sample-batch.csv", rows, "text/csv"))
    done = []
    for route, name, data, content_type in uploads:
        watch.blobs.add(f"{route.container}/{name}")
        service.get_blob_client(route.container, name).upload_blob(
            data, overwrite=True, content_settings=ContentSettings(content_type=content_type)
        )
        done.append((route, name))
    return done


def _print_results(
    service: BlobServiceClient,
    routes: Routes,
    env: Mapping[str, str],
    uploaded: list[tuple[Route, str]],
    watch: _SampleWatch,
) -> None:
    base = service.url.rstrip("/")
    lines = []
    for route, name in uploaded:
        blob = f"{route.container}/{name}"
        fate = watch.finished.get(blob, "still pending (see the delivery lines)")
        if route.function == "create_thumbnail":
            container = env.get("THUMBNAIL_CONTAINER", "thumbnails")
            thumbnail = f"{route.container}/{name}"
            found = _exists(service, container, thumbnail, deadline=time.monotonic() + 5)
            where = f"{base}/{container}/{quote(thumbnail)}" if found else "no thumbnail yet"
            lines.append(f"  {blob}: {fate}; thumbnail -> {where}")
        elif route.function == "dispatch_batch_job":
            if not env.get("BATCH_ENDPOINT_URI", "").strip():
                where = "dry-run (BATCH_ENDPOINT_URI unset): the job request is in the log above"
            else:
                ledger = env.get("DISPATCH_LEDGER_CONTAINER", "batch-dispatch")
                digest = hashlib.sha256(name.encode("utf-8")).hexdigest()
                prefix = f"{route.container}/{digest}/"
                records = [
                    item.name for item in service.get_container_client(ledger).list_blobs(prefix)
                ]
                where = (
                    ", ".join(f"{base}/{ledger}/{quote(record)}" for record in records)
                    or "no dispatch record yet"
                )
            lines.append(f"  {blob}: {fate}; dispatch -> {where}")
    dead = routes.containers.get("deadLetter")
    _say("samples:\n" + "\n".join(lines) + f"\n  dead-lettered events go to {base}/{dead}/")


def _exists(service: BlobServiceClient, container: str, name: str, deadline: float) -> bool:
    blob = service.get_blob_client(container, name)
    while True:
        if blob.exists():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)


def _stop_host(process: subprocess.Popen[bytes]) -> None:
    """Stop `func start` and what it started (its own process group): SIGINT, as Ctrl-C in
    its terminal would, then SIGTERM, then SIGKILL."""
    for sig, wait in ((signal.SIGINT, 10.0), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
        # The host may leave its worker behind in the group for a moment.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        return


class _Interrupts:
    """SIGINT and SIGTERM raise KeyboardInterrupt, except inside ``deferred()``: there they
    are held until the block ends, so an interrupt cannot land between starting a child
    process and recording it, or cut the shutdown short. (Blocking the signals with
    pthread_sigmask instead would be inherited by the children.)"""

    def __init__(self) -> None:
        self.depth = 0
        self.pending = False

    def install(self) -> None:
        signal.signal(signal.SIGINT, self._handle)
        signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.depth:
            self.pending = True
            return
        raise KeyboardInterrupt

    @contextlib.contextmanager
    def deferred(self, *, then_raise: bool = True) -> Iterator[None]:
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1
        if self.depth == 0 and self.pending and then_raise:
            self.pending = False
            raise KeyboardInterrupt


_interrupts = _Interrupts()


def _say(message: str) -> None:
    print(message, flush=True)


if __name__ == "__main__":
    sys.exit(main())
