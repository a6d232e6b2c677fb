"""An HTTP pass-through in front of Azurite that records every request, so tests and
benchmarks count what the code asked storage for where storage sees it (listings, reads of
given blobs), not where the code says it asked."""

from __future__ import annotations

import http.client
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from tools import azurite

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "upgrade", "trailer"}


@dataclass(frozen=True)
class Seen:
    method: str
    path: str  # decoded: /<account>/<container>/<blob name>
    query: dict[str, list[str]]
    range: str | None = None  # the x-ms-range (or Range) header of a ranged read

    @property
    def is_listing(self) -> bool:
        return self.method == "GET" and self.query.get("comp") == ["list"]

    def blob(self, container: str) -> str | None:
        """The blob name this request is about, when it is a blob of ``container``."""
        prefix = f"/{azurite.ACCOUNT}/{container}/"
        return self.path.removeprefix(prefix) if self.path.startswith(prefix) else None


class CountingProxy:
    """Forwards to Azurite on ``upstream_port``; ``seen`` lists each request it passed on."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.seen: list[Seen] = []
        # Called with each request before it is passed on: a test can act between what the
        # code read and what it writes (e.g. a second writer changing a blob meanwhile).
        self.before_forward: Callable[[Seen], None] | None = None
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def connection_string(self) -> str:
        return azurite.connection_string(self.port)

    @property
    def blob_url(self) -> str:
        """The account's URL through the proxy, as blob URLs in events name it."""
        return f"http://127.0.0.1:{self.port}/{azurite.ACCOUNT}"

    def clear(self) -> None:
        with self._lock:
            self.seen.clear()

    def requests(self) -> list[Seen]:
        with self._lock:
            return list(self.seen)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True
            upstream: http.client.HTTPConnection | None = None

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                parts = urlsplit(self.path)
                ranged = self.headers.get("x-ms-range") or self.headers.get("Range")
                seen = Seen(self.command, unquote(parts.path), parse_qs(parts.query), ranged)
                with proxy._lock:
                    proxy.seen.append(seen)
                if proxy.before_forward is not None:
                    proxy.before_forward(seen)
                if self.upstream is None:
                    self.upstream = http.client.HTTPConnection(
                        "127.0.0.1", proxy.upstream_port, timeout=60
                    )
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
                self.upstream.request(self.command, self.path, body=body, headers=headers)
                response = self.upstream.getresponse()
                data = response.read()
                self.send_response_only(response.status, response.reason)
                for name, value in response.getheaders():
                    if name.lower() not in _HOP_BY_HOP and name.lower() != "content-length":
                        self.send_header(name, value)
                if self.command == "HEAD":
                    self.send_header("Content-Length", response.getheader("Content-Length", "0"))
                else:
                    self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

        return Handler


@contextmanager
def counting_proxy(service: azurite.Azurite) -> Iterator[CountingProxy]:
    port = int(urlsplit(service.blob_url).port or 0)
    proxy = CountingProxy(port)
    try:
        yield proxy
    finally:
        proxy.stop()
