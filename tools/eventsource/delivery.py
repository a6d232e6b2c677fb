"""Deliver queued events as Event Grid does: at least once, retried, then dead-lettered.

The targets are in ``targets.py``. Event Grid's retry schedule (10 s, 30 s,
1 min, 5 min, ...) and each subscription's time to live are multiplied by ``time_scale`` so a
local run does not wait hours; each wait is also capped at ``max_delay``. One log line per
delivery attempt.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from azure.core.exceptions import AzureError, ResourceExistsError
from azure.storage.blob import BlobServiceClient, ContentSettings

from tools import deadletter_format
from tools import events as builders
from tools.eventsource.queue import Delivery, DeliveryQueue
from tools.eventsource.targets import Result, Target

logger = logging.getLogger(__name__)

# Event Grid's documented best-effort schedule, in seconds, then every 12 hours.
EVENT_GRID_SCHEDULE = (10, 30, 60, 300, 600, 1800, 3600, 10800, 21600, 43200)
# Statuses Event Grid retries no sooner than this (seconds, before scaling).
MIN_DELAY_BY_STATUS = {401: 300, 404: 300, 408: 120, 503: 30}
# Not retried for Azure-resource destinations (an Azure Function is one): dead-lettered at once.
NOT_RETRIED = {
    400: "UndeliverableDueToHttpBadRequest",
    403: "UndeliverableDueToHttpForbidden",
    413: "UndeliverableDueToHttpRequestEntityTooLarge",
}
MAX_DELIVERY_ATTEMPTS_EXCEEDED = "MaxDeliveryAttemptsExceeded"
TIME_TO_LIVE_EXCEEDED = "TimeToLiveExceeded"
# How often a target that is down is looked at again; waiting for it costs no attempt.
PROBE_SECONDS = 0.5


@dataclass(frozen=True)
class RetryTiming:
    time_scale: float = 0.1
    max_delay: float = 60.0
    timeout: float = 30.0  # a response later than this is a failed attempt (not scaled)

    def delay(self, attempts: int, status: int | None) -> float:
        """Seconds to wait after the ``attempts``-th failed attempt."""
        base = EVENT_GRID_SCHEDULE[min(attempts, len(EVENT_GRID_SCHEDULE)) - 1]
        base = max(base, MIN_DELAY_BY_STATUS.get(status or 0, 0))
        return min(base * self.time_scale, self.max_delay)

    def ttl_seconds(self, minutes: int) -> float:
        return minutes * 60 * self.time_scale


class DeadLetters:
    """Writes dead-lettered events the way Event Grid does, into the dead-letter container."""

    def __init__(self, service: BlobServiceClient, container: str) -> None:
        self.service = service
        self.container = container
        self._created = False

    @staticmethod
    def document(delivery: Delivery) -> list[dict[str, Any]]:
        assert delivery.dead_letter_reason is not None
        attempts = deadletter_format.Attempts(
            reason=delivery.dead_letter_reason,
            attempts=delivery.attempts,
            last_outcome=delivery.last_outcome or "Undefined",
            last_status=delivery.last_status,
            publish_time=delivery.publish_time,
            last_attempt=delivery.last_attempt,
        )
        cloud_event = delivery.schema == builders.CLOUD_EVENT_SCHEMA
        return [deadletter_format.dead_lettered(delivery.event, attempts, cloud_event=cloud_event)]

    def write(self, delivery: Delivery) -> str:
        container = self.service.get_container_client(self.container)
        if not self._created:
            with contextlib.suppress(ResourceExistsError):
                container.create_container()
            self._created = True
        name = deadletter_format.blob_name(delivery.subscription, datetime.now(UTC))
        container.upload_blob(
            name,
            deadletter_format.encode(self.document(delivery)),
            content_settings=ContentSettings(content_type="application/json"),
        )
        return f"{self.container}/{name}"


@dataclass(frozen=True)
class Report:
    """What became of one attempt (or of the delivery), for listeners such as the local loop."""

    delivery: Delivery
    result: Result | None
    final: str | None  # "delivered", "dead-lettered", or None while retries remain


Listener = Callable[[Report], None]


class Dispatcher:
    """Worker threads that take due deliveries from the queue and attempt them."""

    def __init__(
        self,
        queue: DeliveryQueue,
        target: Target,
        dead_letters: DeadLetters,
        timing: RetryTiming,
        workers: int = 4,
    ) -> None:
        self.queue = queue
        self.target = target
        self.dead_letters = dead_letters
        self.timing = timing
        self.listeners: list[Listener] = []
        self._workers = workers
        self._busy: set[int] = set()
        self._wake = threading.Condition()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        queue.on_enqueue = self.wake

    def start(self) -> None:
        for number in range(self._workers):
            thread = threading.Thread(
                target=self._run, name=f"event-delivery-{number}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop taking work; an attempt still running stays queued and is made again later."""
        self._stopping.set()
        self.wake()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))

    def wake(self) -> None:
        with self._wake:
            self._wake.notify_all()

    def _run(self) -> None:
        while not self._stopping.is_set():
            with self._wake:
                due = self.queue.next_due(time.time(), self._busy)
                if not isinstance(due, Delivery):
                    wait = 1.0 if due is None else min(max(due - time.time(), 0.0), 1.0)
                    self._wake.wait(timeout=wait)
                    continue
                self._busy.add(due.id)
            try:
                self._handle(due)
            except Exception:
                logger.exception("delivery %s of event %s failed", due.id, due.event_id)
                self.queue.postpone(due, time.time() + PROBE_SECONDS)
            finally:
                with self._wake:
                    self._busy.discard(due.id)

    def _handle(self, delivery: Delivery) -> None:
        if self._stopping.is_set():
            return
        if delivery.dead_letter_reason is not None:
            self._dead_letter(delivery)
            return
        now = time.time()
        expiry = delivery.publish_time + self.timing.ttl_seconds(delivery.ttl_minutes)
        if now >= expiry:
            self._finish_undelivered(delivery, TIME_TO_LIVE_EXCEEDED)
            return
        if not self.target.available():
            # The host is not up yet: wait for it (until the time to live runs out).
            self.queue.postpone(delivery, min(now + PROBE_SECONDS, expiry))
            return
        result = self.target.deliver(delivery.function, delivery.event)
        attempted = replace(
            delivery,
            attempts=delivery.attempts + 1,
            last_outcome=result.outcome,
            last_status=result.status,
            last_attempt=time.time(),
        )
        if result.delivered:
            self.queue.remove(attempted)
            self._log(attempted, result, "delivered")
            self._tell(Report(attempted, result, "delivered"))
            return
        reason = NOT_RETRIED.get(result.status or 0)
        if reason is None and attempted.attempts >= attempted.max_attempts:
            reason = MAX_DELIVERY_ATTEMPTS_EXCEEDED
        if reason is not None:
            self._log(attempted, result, f"dead-lettering ({reason})")
            self._finish_undelivered(attempted, reason, result)
            return
        assert attempted.last_attempt is not None
        next_attempt = min(
            attempted.last_attempt + self.timing.delay(attempted.attempts, result.status), expiry
        )
        self.queue.record_failure(
            attempted,
            next_attempt=next_attempt,
            outcome=result.outcome,
            status=result.status,
            attempted_at=attempted.last_attempt,
        )
        self._log(attempted, result, f"retry in {next_attempt - time.time():.1f} s")
        self._tell(Report(attempted, result, None))

    def _finish_undelivered(
        self, delivery: Delivery, reason: str, result: Result | None = None
    ) -> None:
        over = replace(delivery, dead_letter_reason=reason)
        self.queue.record_failure(
            over,
            next_attempt=time.time(),
            outcome=over.last_outcome or "Undefined",
            status=over.last_status,
            attempted_at=over.last_attempt or time.time(),
            dead_letter_reason=reason,
        )
        self._dead_letter(over, result)

    def _dead_letter(self, delivery: Delivery, result: Result | None = None) -> None:
        try:
            where = self.dead_letters.write(delivery)
        except AzureError as exc:
            logger.warning(
                "event=%s subscription=%s could not be dead-lettered yet: %s",
                delivery.event_id,
                delivery.subscription,
                exc,
            )
            self.queue.postpone(delivery, time.time() + 5.0)
            return
        self.queue.remove(delivery)
        logger.warning(
            "event=%s subscription=%s blob=%s dead-lettered reason=%s attempts=%d -> %s",
            delivery.event_id,
            delivery.subscription,
            delivery.blob,
            delivery.dead_letter_reason,
            delivery.attempts,
            where,
        )
        self._tell(Report(delivery, result, "dead-lettered"))

    def _log(self, delivery: Delivery, result: Result, then: str) -> None:
        level = logging.INFO if result.delivered else logging.WARNING
        logger.log(
            level,
            "delivery event=%s subscription=%s blob=%s attempt=%d/%d outcome=%s status=%s %s%s",
            delivery.event_id,
            delivery.subscription,
            delivery.blob,
            delivery.attempts,
            delivery.max_attempts,
            result.outcome,
            result.status if result.status is not None else "-",
            then,
            f" detail={result.detail}" if result.detail and not result.delivered else "",
        )

    def _tell(self, report: Report) -> None:
        for listener in list(self.listeners):
            try:
                listener(report)
            except Exception:
                logger.exception("delivery listener failed")
