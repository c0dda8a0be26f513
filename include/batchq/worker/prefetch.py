"""Adaptive prefetch: hold only as many messages as this worker can start within a short horizon.

A prefetched message is invisible to every other worker while it waits, so the depth of the buffer is a
trade-off. Short jobs want a deep buffer: ReceiveMessage, SendMessageBatch and DeleteMessageBatch then
carry up to ten messages per call instead of one or two, which is what lets many one-thread processes
share an endpoint. Long jobs want a shallow one: a worker that hoards ten 5-minute jobs starves the
other workers of a scaled-out pool at the end of a run. :func:`prefetch_limit` picks the depth from the
observed handler duration, and :class:`DurationAverage` supplies that duration.
"""

from __future__ import annotations

import math
import threading

from batchq import limits


def should_receive(free: int, prefetch: int, buffered: int) -> bool:
    """The refill rule: ask SQS for more when a whole prefetch's worth of slots is free (receives then
    carry up to ten messages, and result sends and deletes follow the receive size), or when the
    handlers are about to starve (nothing buffered) and at least one slot is free.

    Refilling at half the buffer instead cost 0.80 SQS requests per payload against 0.62-0.64 this way
    at the same run time (``bench/requests_per_payload.py``, 1,000 payloads). The worker's receiver and
    the capacity simulator both call this, so the planner models the runner's real behaviour.

    :param free: handler slots + prefetch depth − messages held (running or buffered).
    :param prefetch: the current prefetch depth (:func:`prefetch_limit`).
    :param buffered: messages received and waiting for a handler.
    """
    return free >= min(limits.MAX_BATCH_ENTRIES, max(1, prefetch)) or (free >= 1 and buffered == 0)


def prefetch_limit(
    concurrency: int,
    avg_handler_s: float | None,
    horizon_s: float = 1.0,
    cap: int = limits.MAX_BATCH_ENTRIES,
) -> int:
    """Messages to hold waiting for a handler (on top of the ``concurrency`` running ones).

    ``ceil(concurrency × horizon_s / avg_handler_s)`` — what the handlers can start within
    ``horizon_s`` — clamped to ``[concurrency, max(concurrency, cap)]``. ``concurrency`` is the floor
    (the fixed rule this replaces), so jobs as long as the horizon or longer, an unknown duration
    (``None``) and ``horizon_s == 0`` all give ``concurrency``.

    :param concurrency: handler threads (≥ 1).
    :param avg_handler_s: typical handler duration in seconds; ``None`` while not yet known.
    :param horizon_s: longest a prefetched message should wait for a handler; 0 disables adapting.
    :param cap: most messages to prefetch when jobs are short (one ReceiveMessage call takes ten).
    """
    if concurrency < 1:
        raise ValueError(f"concurrency must be >= 1, got {concurrency}")
    if horizon_s < 0 or cap < 0:
        raise ValueError(f"horizon_s and cap must be >= 0, got {horizon_s} and {cap}")
    if avg_handler_s is None or horizon_s == 0:
        return concurrency
    upper = max(concurrency, cap)
    if avg_handler_s <= 0:
        return upper  # handlers that take no measurable time: anything fetched starts at once
    # round() first: 1.0 / 0.02 is 50.000000000000004 in floats, and must not become 51.
    startable = math.ceil(round(concurrency * horizon_s / avg_handler_s, 9))
    return min(upper, max(concurrency, startable))


class DurationAverage:
    """Exponentially weighted moving average of handler durations (thread-safe).

    :param alpha: weight of each new sample (0 < alpha ≤ 1).
    :param min_samples: :attr:`value` stays ``None`` until this many samples were added, so one quick
        first job cannot open a deep buffer on a queue of long ones.
    """

    def __init__(self, alpha: float = 0.2, min_samples: int = 3):
        if not 0 < alpha <= 1 or min_samples < 1:
            raise ValueError(f"need 0 < alpha <= 1 and min_samples >= 1, got {alpha} and {min_samples}")
        self.alpha = alpha
        self.min_samples = min_samples
        self._avg = 0.0
        self._count = 0
        self._lock = threading.Lock()

    def add(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError(f"a duration cannot be negative, got {seconds}")
        with self._lock:
            self._count += 1
            if self._count == 1:
                self._avg = seconds
            elif self._count <= self.min_samples:
                self._avg += (seconds - self._avg) / self._count  # plain mean until the EWMA has a base
            else:
                self._avg += self.alpha * (seconds - self._avg)

    @property
    def count(self) -> int:
        return self._count

    @property
    def value(self) -> float | None:
        """The average, or ``None`` while fewer than ``min_samples`` durations are known."""
        with self._lock:
            return self._avg if self._count >= self.min_samples else None
