"""The local stand-in for Event Grid on a storage account: Azurite emits no events, so a
pass-through in front of it sees each blob-creating write and delivers BlobCreated events.

    client ──► pass-through (proxy.py, the public blob port) ──► Azurite
                     │ successful Put Blob / Put Block List / Copy Blob / Put Blob From URL
                     ▼
               publisher.py: events shaped like Azure's, one per matching route (tools/routes.py)
                     ▼
               queue.py: SQLite under the state dir, survives restarts
                     ▼
               delivery.py: retries, dead-letters -> targets.py: ``func start`` or in-process
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from azure.storage.blob import BlobServiceClient

from tools import azurite
from tools.eventsource.delivery import DeadLetters, Dispatcher, Listener, Report, RetryTiming
from tools.eventsource.proxy import BlobWrite, PassThrough, PortInUseError, check_port_free
from tools.eventsource.publisher import Publisher
from tools.eventsource.queue import Delivery, DeliveryQueue
from tools.eventsource.targets import InProcessTarget, Result, Target, WebhookTarget
from tools.routes import Routes, load_routes

__all__ = [
    "BlobWrite",
    "Delivery",
    "EventSource",
    "EventSourceConfig",
    "InProcessTarget",
    "Listener",
    "PortInUseError",
    "Report",
    "Result",
    "RetryTiming",
    "Target",
    "WebhookTarget",
    "check_port_free",
]

logger = logging.getLogger(__name__)


@dataclass
class EventSourceConfig:
    port: int  # where clients connect (10000 = UseDevelopmentStorage=true); 0 picks a free one
    upstream_port: int  # where Azurite listens
    state_dir: Path  # the delivery queue lives here
    routes: Routes = field(default_factory=load_routes)
    timing: RetryTiming = field(default_factory=RetryTiming)
    workers: int = 4


class EventSource:
    """Pass-through, publisher, persistent queue and delivery workers, started together."""

    def __init__(self, config: EventSourceConfig, target: Target) -> None:
        self.config = config
        self.queue = DeliveryQueue(config.state_dir)
        upstream = BlobServiceClient.from_connection_string(
            azurite.connection_string(config.upstream_port)
        )
        self.dispatcher = Dispatcher(
            self.queue,
            target,
            DeadLetters(upstream, config.routes.containers["deadLetter"]),
            config.timing,
            config.workers,
        )
        self.proxy: PassThrough | None = None
        self.publisher: Publisher | None = None
        self._stopped = False

    @property
    def port(self) -> int:
        assert self.proxy is not None, "not started"
        return self.proxy.port

    @property
    def blob_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/{azurite.ACCOUNT}"

    @property
    def connection_string(self) -> str:
        return azurite.connection_string(self.port)

    def start(self) -> EventSource:
        try:
            # The proxy is told where to publish only once it knows its own port.
            self.proxy = PassThrough(self.config.port, self.config.upstream_port, self._on_write)
            self.publisher = Publisher(
                self.config.routes,
                self.queue,
                lambda account: f"http://127.0.0.1:{self.port}/{account}",
                self.config.upstream_port,
            )
            self.proxy.start()
            self.dispatcher.start()
        except BaseException:
            self.stop()
            raise
        pending = len(self.queue.pending())
        logger.info(
            "event source on %s -> Azurite on port %d; delivering %s%s",
            self.blob_url,
            self.config.upstream_port,
            self.dispatcher.target.description,
            f"; {pending} deliveries pending from an earlier run" if pending else "",
        )
        return self

    def _on_write(self, write: BlobWrite) -> None:
        assert self.publisher is not None
        self.publisher.on_write(write)

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        if self.proxy is not None:
            self.proxy.stop()
        self.dispatcher.stop()
        self.queue.close()

    def __enter__(self) -> EventSource:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
