"""Visibility heartbeat: keep the lease on every message this worker holds.

A message is held from receipt until it is deleted, dead-lettered or handed back. While held, the
:class:`LeaseKeeper` extends its visibility (one ``ChangeMessageVisibilityBatch`` call per ten due
messages) whenever ``fraction`` of the visibility timeout has passed since the last extension, so a job
longer than the timeout is not delivered to a second worker while the first still runs it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from batchq.sqs import change_visibility

log = logging.getLogger(__name__)


class Lease:
    """One held message and when its visibility was last set."""

    __slots__ = ("deadline", "lost", "message", "payload", "receive_count", "renewed_at", "state", "thread", "timeout_s")

    def __init__(self, message: dict[str, Any], renewed_at: float):
        self.message = message
        self.renewed_at = renewed_at
        self.state = "buffered"  # buffered → running → done, or running → timed_out (thread abandoned)
        self.lost = False
        # Set when its handler starts (the runner's handler-timeout watchdog reads them).
        self.payload: Any = None
        self.receive_count = 1
        self.timeout_s: float | None = None
        self.deadline: float | None = None
        self.thread: Any = None

    @property
    def message_id(self) -> str:
        return self.message["MessageId"]


class LeaseKeeper:
    """Extends the visibility of held messages from a background thread.

    :param client: boto3 SQS client.
    :param queue_url: the input queue.
    :param visibility_s: the visibility timeout the message got at receipt, and each extension's length.
    :param fraction: extend once this fraction of ``visibility_s`` has passed since the last renewal.
    :param on_extend: called with the number of messages extended (metrics).
    """

    def __init__(
        self,
        client: Any,
        queue_url: str,
        visibility_s: int,
        fraction: float = 0.5,
        on_extend: Callable[[int, int], None] | None = None,
    ):
        if not 0 < fraction < 1:
            raise ValueError(f"heartbeat fraction must be between 0 and 1, got {fraction}")
        self.client = client
        self.queue_url = queue_url
        self.visibility_s = max(1, int(visibility_s))
        self.fraction = fraction
        self.on_extend = on_extend
        self._leases: dict[int, Lease] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.extended = 0
        self.lost = 0

    @property
    def tick_s(self) -> float:
        # Check several times per renewal period so a renewal is never late by more than a quarter of it.
        return max(0.1, min(5.0, self.visibility_s * self.fraction / 4))

    def add(self, message: dict[str, Any]) -> Lease:
        lease = Lease(message, time.monotonic())
        with self._lock:
            self._leases[id(lease)] = lease
        return lease

    def remove(self, lease: Lease) -> None:
        with self._lock:
            self._leases.pop(id(lease), None)

    def all(self) -> list[Lease]:
        with self._lock:
            return list(self._leases.values())

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="batchq-heartbeat", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def renew_due(self, now: float | None = None) -> int:
        """Extend every lease whose renewal is due. Returns how many were extended."""
        now = time.monotonic() if now is None else now
        threshold = self.visibility_s * self.fraction
        with self._lock:
            due = [lease for lease in self._leases.values() if now - lease.renewed_at >= threshold]
        if not due:
            return 0
        failed = change_visibility(self.client, self.queue_url, [lease.message for lease in due], self.visibility_s)
        ok = 0
        with self._lock:
            for lease in due:
                if lease.message_id in failed:
                    if id(lease) in self._leases and not lease.lost:
                        # Still held but the lease is gone (expired before we renewed it): another worker
                        # may get the message too. At-least-once still holds; count it so it is visible.
                        lease.lost = True
                        self.lost += 1
                        log.warning("lost visibility lease on %s: %s", lease.message_id, failed[lease.message_id])
                    continue
                lease.renewed_at = now
                ok += 1
        self.extended += ok
        if self.on_extend is not None and (ok or failed):
            self.on_extend(ok, len(failed))
        return ok

    def _run(self) -> None:
        while not self._stop.wait(self.tick_s):
            try:
                self.renew_due()
            except Exception:
                log.exception("visibility heartbeat failed; retrying next tick")
