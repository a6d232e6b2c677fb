"""A streaming HTTP/1.1 pass-through in front of Azurite that reports blob-creating writes.

Every request and response is relayed byte for byte: the request line and headers as the
client sent them, bodies copied in bounded chunks with their own framing (Content-Length,
chunked, or until close), so a multi-GB upload never sits in memory. Each client connection
keeps one upstream connection for its keep-alive lifetime. ``Expect: 100-continue`` goes to
Azurite, and the client gets Azurite's own interim or final answer.

When a blob-creating write (Put Blob, Put Block List, Copy Blob, Put Blob From URL) succeeds,
``on_write`` runs after Azurite's response head arrived and before it is relayed: a client
that saw the 2xx can rely on the event having been recorded.
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from email.message import Message
from http.client import HTTPMessage, parse_headers
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import BufferedIOBase
from typing import Any, cast
from urllib.parse import parse_qs, unquote, urlsplit

logger = logging.getLogger(__name__)

CHUNK = 256 * 1024
_MAX_LINE = 65536
# How long one client connection may stay idle between requests, and one upstream read.
IDLE_SECONDS = 120.0
UPSTREAM_SECONDS = 600.0


class PortInUseError(RuntimeError):
    """The port the pass-through should listen on is taken."""


@dataclass(frozen=True)
class BlobWrite:
    """A successful blob-creating request, as the pass-through saw it."""

    api: str  # PutBlob, PutBlockList, CopyBlob, PutBlobFromUrl
    account: str
    container: str
    blob_name: str
    request_headers: Message
    response_headers: Message
    status: int
    body_bytes: int  # request body bytes relayed (the blob's size for a block-blob Put Blob)


def classify(method: str, target: str, headers: Message) -> tuple[str, str, str, str] | None:
    """(api, account, container, blob) when the request would create a blob, else None."""
    if method != "PUT":
        return None
    parts = urlsplit(target)
    segments = parts.path.lstrip("/").split("/", 2)
    if len(segments) < 3 or not all(segments):
        return None
    account, container, encoded_blob = segments
    query = {key.lower(): values for key, values in parse_qs(parts.query).items()}
    comp = (query.get("comp") or [""])[0].lower()
    copy_source = headers.get("x-ms-copy-source")
    if comp == "blocklist":
        api = "PutBlockList"
    elif comp or "restype" in query:
        return None
    elif copy_source and headers.get("x-ms-blob-type"):
        api = "PutBlobFromUrl"
    elif copy_source:
        api = "CopyBlob"
    elif headers.get("x-ms-blob-type"):
        api = "PutBlob"
    else:
        return None
    return api, unquote(account), unquote(container), unquote(encoded_blob)


class _Reader:
    """Length-bounded copies between a buffered reader and a sending function."""

    @staticmethod
    def copy_exact(src: BufferedIOBase, send: Callable[[bytes], Any], length: int) -> int:
        left = length
        while left > 0:
            piece = src.read1(min(left, CHUNK))
            if not piece:
                raise ConnectionError(f"peer closed with {left} of {length} body bytes unsent")
            send(piece)
            left -= len(piece)
        return length

    @staticmethod
    def copy_chunked(src: BufferedIOBase, send: Callable[[bytes], Any]) -> int:
        """Relay a chunked body unchanged; returns the number of payload bytes."""
        total = 0
        while True:
            line = src.readline(_MAX_LINE + 1)
            if not line.endswith(b"\n"):
                raise ConnectionError("chunk size line missing or too long")
            send(line)
            size = int(line.split(b";", 1)[0].strip(), 16)
            if size == 0:
                while True:  # trailers end with an empty line
                    trailer = src.readline(_MAX_LINE + 1)
                    if not trailer:
                        raise ConnectionError("peer closed inside chunked trailers")
                    send(trailer)
                    if trailer in (b"\r\n", b"\n"):
                        return total
            _Reader.copy_exact(src, send, size + 2)  # the data and its CRLF
            total += size

    @staticmethod
    def copy_to_close(src: BufferedIOBase, send: Callable[[bytes], Any]) -> int:
        total = 0
        while piece := src.read1(CHUNK):
            send(piece)
            total += len(piece)
        return total


def _is_chunked(headers: Message) -> bool:
    return "chunked" in ",".join(headers.get_all("Transfer-Encoding") or []).lower()


def _content_length(headers: Message) -> int | None:
    value = headers.get("Content-Length")
    if value is None:
        return None
    return int(value.strip())


def _head_bytes(first_line: bytes, headers: Message) -> bytes:
    lines = [first_line.rstrip(b"\r\n")]
    lines += [f"{name}: {value}".encode("latin-1") for name, value in headers.items()]
    return b"\r\n".join(lines) + b"\r\n\r\n"


class _Upstream:
    """One connection to Azurite, kept for as long as the client's connection lives."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sock: socket.socket | None = None
        self.rfile: BufferedIOBase | None = None

    def ensure(self) -> bool:
        """Connect if needed; True when an existing connection is reused."""
        if self.sock is not None and not self._stale():
            return True
        self.close()
        self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=UPSTREAM_SECONDS)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.rfile = cast(BufferedIOBase, self.sock.makefile("rb", buffering=CHUNK))
        return False

    def _stale(self) -> bool:
        assert self.sock is not None
        readable, _, _ = select.select([self.sock], [], [], 0)
        # An idle keep-alive connection that is readable was closed by Azurite.
        return bool(readable)

    def send(self, data: bytes) -> None:
        assert self.sock is not None
        self.sock.sendall(data)

    def close(self) -> None:
        if self.rfile is not None:
            with contextlib.suppress(OSError):
                self.rfile.close()
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.close()
        self.sock = None
        self.rfile = None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = IDLE_SECONDS
    server: PassThrough
    raw_requestline: bytes

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.upstream = _Upstream(self.server.upstream_port)
        self.server.track(self.connection, add=True)

    def finish(self) -> None:
        self.upstream.close()
        self.server.track(self.connection, add=False)
        with contextlib.suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s %s", self.address_string(), format % args)

    def handle_expect_100(self) -> bool:
        # Azurite decides whether the body is welcome; see _relay.
        return True

    def _relay(self) -> None:
        try:
            self._relay_one()
        except (ConnectionError, TimeoutError, OSError, ValueError) as exc:
            logger.warning("pass-through %s %s failed: %s", self.command, self.path[:200], exc)
            self.close_connection = True
            self.upstream.close()

    do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = do_OPTIONS = do_PATCH = _relay

    def _relay_one(self) -> None:
        method = self.command
        target = self.raw_requestline.split(b" ")[1].decode("latin-1")
        head = _head_bytes(self.raw_requestline, self.headers)
        expects_continue = (
            self.headers.get("Expect", "").lower() == "100-continue"
            and self.request_version >= "HTTP/1.1"
        )
        try:
            reused = self.upstream.ensure()
        except OSError as exc:
            self._bad_gateway(f"Azurite on port {self.server.upstream_port} is unreachable: {exc}")
            return
        try:
            self.upstream.send(head)
        except OSError:
            if not reused:
                raise
            self.upstream.ensure()
            self.upstream.send(head)
        assert self.upstream.rfile is not None
        upstream_in = self.upstream.rfile

        status, reason_line, response_headers = 0, b"", HTTPMessage()
        body_bytes = 0
        if expects_continue:
            status, reason_line, response_headers = self._read_response_head(upstream_in)
            if status == 100:
                self.wfile.write(_head_bytes(reason_line, response_headers))
                status = 0
            else:
                # Refused before the body: the client may still send it, so this connection
                # cannot be reused for another request.
                self.close_connection = True
        if status == 0:
            body_bytes = self._relay_request_body()
            status, reason_line, response_headers = self._read_response_head(upstream_in)
            while 100 <= status < 200:
                self.wfile.write(_head_bytes(reason_line, response_headers))
                status, reason_line, response_headers = self._read_response_head(upstream_in)

        if 200 <= status < 300:
            self._report(method, target, status, response_headers, body_bytes)

        self.wfile.write(_head_bytes(reason_line, response_headers))
        if method == "HEAD" or status in (204, 304):
            pass
        elif _is_chunked(response_headers):
            _Reader.copy_chunked(upstream_in, self.wfile.write)
        elif (length := _content_length(response_headers)) is not None:
            _Reader.copy_exact(upstream_in, self.wfile.write, length)
        else:
            _Reader.copy_to_close(upstream_in, self.wfile.write)
            self.close_connection = True
            self.upstream.close()
            return
        if "close" in response_headers.get("Connection", "").lower():
            self.upstream.close()

    def _relay_request_body(self) -> int:
        if _is_chunked(self.headers):
            return _Reader.copy_chunked(self.rfile, self.upstream.send)
        length = _content_length(self.headers)
        if length:
            return _Reader.copy_exact(self.rfile, self.upstream.send, length)
        return 0

    @staticmethod
    def _read_response_head(src: BufferedIOBase) -> tuple[int, bytes, HTTPMessage]:
        line = src.readline(_MAX_LINE + 1)
        if not line:
            raise ConnectionError("Azurite closed the connection without answering")
        parts = line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/"):
            raise ConnectionError(f"not an HTTP response from Azurite: {line[:100]!r}")
        headers = parse_headers(src)
        return int(parts[1]), line, headers

    def _report(
        self, method: str, target: str, status: int, response_headers: Message, body_bytes: int
    ) -> None:
        found = classify(method, target, self.headers)
        if found is None:
            return
        api, account, container, blob_name = found
        write = BlobWrite(
            api, account, container, blob_name, self.headers, response_headers, status, body_bytes
        )
        try:
            self.server.on_write(write)
        except Exception:
            # The write itself succeeded; the client must still get Azurite's answer.
            logger.exception("could not record the event for %s %s/%s", api, container, blob_name)

    def _bad_gateway(self, message: str) -> None:
        body = message.encode()
        self.send_response(502, "Bad Gateway")
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True


class PassThrough(ThreadingHTTPServer):
    """The listening side: 127.0.0.1 only, one thread per client connection."""

    daemon_threads = True
    block_on_close = False

    def __init__(
        self, port: int, upstream_port: int, on_write: Callable[[BlobWrite], None]
    ) -> None:
        self.upstream_port = upstream_port
        self.on_write = on_write
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        check_port_free(port)
        try:
            super().__init__(("127.0.0.1", port), _Handler)
        except OSError as exc:
            raise PortInUseError(_port_message(port, exc)) from None
        self.port = int(self.server_address[1])

    def track(self, connection: socket.socket, *, add: bool) -> None:
        with self._connections_lock:
            if add:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that drops its connection is routine for a local proxy: one log line,
        where socketserver would print a traceback on stderr."""
        exc = sys.exception()
        host, port = client_address[:2]
        if isinstance(exc, ConnectionError):
            logger.info("pass-through: client %s:%s went away: %s", host, port, exc)
        else:
            logger.error("pass-through: connection from %s:%s failed", host, port, exc_info=exc)

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self.shutdown()
            self._thread.join(timeout=5)
        self.server_close()
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


def check_port_free(port: int) -> None:
    """Raise PortInUseError when something already answers on 127.0.0.1:``port``."""
    if port == 0:
        return
    with socket.socket() as probe:
        probe.settimeout(0.5)
        if probe.connect_ex(("127.0.0.1", port)) == 0:
            raise PortInUseError(_port_message(port, None))


def _port_message(port: int, exc: OSError | None) -> str:
    why = f" ({exc.strerror})" if exc is not None else ""
    return (
        f"port {port} on 127.0.0.1 is already in use{why}: stop what listens there (another "
        "Azurite or local loop?) or choose another port"
    )
