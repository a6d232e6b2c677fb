"""The threaded HTTP server every stand-in is built on.

Each listens on 127.0.0.1 on a free port (or a given one), serves from daemon threads,
records every request, counts the TCP connections it accepts, and shuts itself down after
``lifetime`` seconds if its owner forgets to.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

# Status, JSON body (None: empty), extra headers.
Answer = tuple[int, Any, dict[str, str]]


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    received: float = field(default_factory=time.monotonic)

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Scripted:
    """One canned answer, used instead of the normal behaviour for one request."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    # When set, the server does its normal work (e.g. creates the job) before answering late.
    then_normal: bool = False


class _CountingServer(ThreadingHTTPServer):
    """Counts accepted connections where they are accepted, so connection reuse shows, and
    keeps what went wrong while serving instead of printing tracebacks on stderr."""

    daemon_threads = True

    def __init__(self, port: int, handler: type[BaseHTTPRequestHandler]) -> None:
        self.accepted = 0
        self.errors: list[BaseException] = []
        self._lock = threading.Lock()
        super().__init__(("127.0.0.1", port), handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        connection = super().get_request()
        with self._lock:
            self.accepted += 1
        return connection

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exception()
        if exc is not None:
            with self._lock:
                self.errors.append(exc)

    def recorded_errors(self) -> list[BaseException]:
        with self._lock:
            return list(self.errors)


class StandIn:
    """Base: a threaded server with a request log and a queue of scripted answers.

    Subclasses implement ``answer``; a request is recorded before it is answered.
    """

    def __init__(self, lifetime: float = 600.0, port: int = 0) -> None:
        self.requests: list[Recorded] = []
        self.script: list[Scripted] = []
        self.lock = threading.Lock()
        self.server = _CountingServer(port, self._handler_class())
        self.port = int(self.server.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}"
        # A short poll: stop() waits for the serving loop to notice, once per stand-in.
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        self._timer = threading.Timer(lifetime, self.stop)
        self._timer.daemon = True
        self._timer.start()

    @property
    def connections(self) -> int:
        """How many TCP connections the server has accepted so far."""
        return self.server.accepted

    @property
    def errors(self) -> list[BaseException]:
        """What went wrong while serving (a client that reset its connection, ...): kept
        for the owner to look at, never printed."""
        return self.server.recorded_errors()

    def posts(self) -> list[Recorded]:
        with self.lock:
            return [request for request in self.requests if request.method == "POST"]

    def clear(self) -> None:
        """Forget the requests and the script (for a server shared between tests)."""
        with self.lock:
            self.requests.clear()
            self.script.clear()

    def answer(self, request: Recorded, scripted: Scripted | None) -> Answer:
        raise NotImplementedError

    def wait(self) -> None:
        """Block until the server is stopped (by ``stop`` or its lifetime)."""
        self._thread.join()

    def stop(self) -> None:
        self._timer.cancel()
        self.server.shutdown()
        self.server.server_close()

    def _take(self, request: Recorded) -> Scripted | None:
        with self.lock:
            self.requests.append(request)
            return self.script.pop(0) if self.script else None

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in separate writes; with Nagle's algorithm the body
            # waits for the client's delayed ACK (about 40 ms a request on loopback).
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                recorded = Recorded(
                    self.command,
                    parts.path,
                    parse_qs(parts.query),
                    dict(self.headers.items()),
                    body,
                )
                scripted = stand_in._take(recorded)
                status, payload, headers = stand_in.answer(recorded, scripted)
                if scripted is not None and scripted.delay:
                    time.sleep(scripted.delay)
                data = b"" if payload is None else json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            do_GET = _serve
            do_POST = _serve

        return Handler
