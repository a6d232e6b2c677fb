"""Helpers for the duplicate, fault and bad-input suites: Event Grid's at-least-once delivery
(duplicates in a seeded random order, redelivery of whatever raised), outcome counting, and
a TCP proxy that drops storage on demand."""

from __future__ import annotations

import contextlib
import os
import random
import socket
import struct
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from handlers.context import reset_context
from handlers.outcomes import Outcome
from tools.standins import JobsEndpoint, ManagedIdentityEndpoint

# (function name, event payload): one invocation, as one Event Grid delivery makes it.
Invocation = tuple[str, dict[str, Any]]
Deliver = Callable[[str, dict[str, Any]], Outcome]


def with_duplicates(deliveries: Iterable[Invocation], copies: int, seed: int) -> list[Invocation]:
    """Each delivery ``copies`` times, in a seeded random order: about half of the events
    get their copies back to back (a thread pool runs them at the same moment), the others
    scattered through the run (most arrive after the first copy finished)."""
    rng = random.Random(seed)
    slots: list[list[Invocation]] = []
    for delivery in deliveries:
        if rng.random() < 0.5:
            slots.append([delivery] * copies)
        else:
            slots.extend([delivery] for _ in range(copies))
    rng.shuffle(slots)
    return [delivery for slot in slots for delivery in slot]


@dataclass
class RedeliveryReport:
    """What Event Grid would have seen: every attempt, and each one that raised."""

    attempts: int = 0
    rounds: int = 0
    raised: list[tuple[Invocation, BaseException]] = field(default_factory=list)
    returned: list[tuple[Invocation, Outcome]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def raised_types(self) -> Counter[str]:
        return Counter(type(exc).__name__ for _, exc in self.raised)


def run_round(
    deliveries: list[Invocation], deliver: Deliver, workers: int, report: RedeliveryReport
) -> list[Invocation]:
    """Deliver each once across ``workers`` threads; return the ones that raised."""
    failed: list[Invocation] = []

    def attempt(delivery: Invocation) -> None:
        try:
            outcome = deliver(*delivery)
        except Exception as exc:
            with report.lock:
                report.raised.append((delivery, exc))
                failed.append(delivery)
        else:
            with report.lock:
                report.returned.append((delivery, outcome))
        finally:
            with report.lock:
                report.attempts += 1

    with ThreadPoolExecutor(max_workers=workers) as pool:
        for future in [pool.submit(attempt, delivery) for delivery in deliveries]:
            future.result()
    report.rounds += 1
    return failed


def redeliver_until_done(
    failed: list[Invocation],
    deliver: Deliver,
    workers: int,
    report: RedeliveryReport,
    max_rounds: int,
) -> None:
    """Event Grid's retry: deliver again every event whose invocation raised, until each
    returns; fail the test if some still raise after ``max_rounds`` rounds."""
    for _ in range(max_rounds):
        if not failed:
            return
        failed = run_round(failed, deliver, workers, report)
    if failed:
        last = report.raised[-1][1]
        raise AssertionError(
            f"{len(failed)} deliveries still raised after {max_rounds} redelivery rounds; "
            f"last: {type(last).__name__}: {last}"
        )


def deliver_at_once(deliveries: list[Invocation], deliver: Deliver) -> list[Outcome]:
    """Each delivery on a thread of its own, all released at one moment (copies of one event
    that reach several instances together); their outcomes in the order given. Raises what
    any of them raised."""
    gate = threading.Barrier(len(deliveries))

    def attempt(delivery: Invocation) -> Outcome:
        gate.wait(timeout=60)
        return deliver(*delivery)

    with ThreadPoolExecutor(max_workers=len(deliveries)) as pool:
        futures = [pool.submit(attempt, delivery) for delivery in deliveries]
        return [future.result(timeout=60) for future in futures]


def outcomes_by_blob(report: RedeliveryReport, function: str) -> dict[str, Counter[str]]:
    """For each blob (``container/name``), how many of ``function``'s invocations came to
    each outcome status; invocations that raised are in ``report.raised`` instead."""
    counts: dict[str, Counter[str]] = {}
    for (name, payload), outcome in report.returned:
        if name == function:
            blob = payload["subject"].split("/containers/", 1)[1].replace("/blobs/", "/", 1)
            counts.setdefault(blob, Counter())[outcome.status] += 1
    return counts


def batch_environment(
    identity: ManagedIdentityEndpoint, endpoint: JobsEndpoint | str
) -> dict[str, str]:
    """Point the process at the local managed identity and a batch endpoint: the jobs
    stand-in, or any scoring URI (not dry-run)."""
    for name in list(os.environ):
        if name.startswith(("AZURE_", "MSI_", "IDENTITY_")):
            del os.environ[name]
    uri = endpoint if isinstance(endpoint, str) else endpoint.scoring_uri
    env = {**identity.environment(), "BATCH_ENDPOINT_URI": uri}
    os.environ.update(env)
    reset_context()
    return env


class FaultProxy:
    """A TCP pass-through to a local service that a test can break on demand: ``down()``
    cuts every open connection and resets each new one (as a storage front end that went
    away), ``up()`` passes traffic again. 127.0.0.1 only, on a free port; it closes itself
    after ``lifetime`` seconds if a test forgets to."""

    def __init__(self, upstream_port: int, lifetime: float = 300.0) -> None:
        self.upstream_port = upstream_port
        self.is_down = False
        self.connections = 0
        self.refused = 0
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._closed = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()
        self._timer = threading.Timer(lifetime, self.stop)
        self._timer.daemon = True
        self._timer.start()

    def down(self) -> None:
        with self._lock:
            self.is_down = True
            doomed = list(self._open)
            self._open.clear()
        for sock in doomed:
            _reset(sock)

    def up(self) -> None:
        with self._lock:
            self.is_down = False

    def stop(self) -> None:
        self._timer.cancel()
        self._closed.set()
        self.down()
        self._listener.close()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                if self.is_down:
                    self.refused += 1
                    _reset(client)
                    continue
                self.connections += 1
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=5)
            except OSError:
                _reset(client)
                continue
            upstream.settimeout(None)
            with self._lock:
                self._open.update((client, upstream))
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            with self._lock:
                self._open.discard(source)
                self._open.discard(sink)
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.close()


def _reset(sock: socket.socket) -> None:
    """Drop the connection: linger 0 makes the close a reset; shutdown wakes the pipe thread
    blocked reading it."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()


def reset_connection(port: int) -> None:
    """Connect to 127.0.0.1:``port``, send half a request line and reset the connection, as a
    client that gives up does."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(b"GET /devstoreacc")
    # Linger 0 makes the close a reset (no shutdown first: that would send a FIN).
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()
