"""A token bucket that paces the drainer, and slows down when the sink pushes back.

Pure and clock-injectable so it can be tested without sleeping. Thread-safe: every drain thread shares
one bucket, so ``max_rate`` is the rate of the whole drainer, not of each thread.

``acquire(n)`` *reserves* ``n`` tokens and sleeps until the reservation is due (the bucket may go into
debt), so a batch larger than the burst still passes and the long-run rate is exact: after the initial
``burst``, tokens are handed out at exactly ``rate`` per second.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

#: Longest pause one back-pressure signal can impose (sinks cap their Retry-After lower).
MAX_PAUSE_S = 3600.0


class TokenBucket:
    """Rate limiter for results/s.

    :param rate: tokens per second; ``None`` means unlimited (back-pressure pauses still apply).
    :param burst: bucket capacity (tokens available at start and after idling). Defaults to one
        receive batch (10) so an idle drainer can write one batch at once, and no more.
    :param min_rate: floor for the adaptive rate when the sink pushes back.
    :param recover_step: after each accepted write the adaptive rate grows by this fraction of ``rate``
        (additive increase); back-pressure halves it (multiplicative decrease).
    :param clock: monotonic clock (seconds); injectable for tests.
    :param sleep: sleep function; injectable for tests.
    """

    def __init__(
        self,
        rate: float | None,
        *,
        burst: float = 10.0,
        min_rate: float | None = None,
        recover_step: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        if rate is not None and rate <= 0:
            raise ValueError(f"rate must be > 0 results/s (or None for unlimited), got {rate}")
        if burst < 1:
            raise ValueError(f"burst must be >= 1, got {burst}")
        self.rate = rate
        self.burst = float(burst)
        self.min_rate = min_rate if min_rate is not None else (max(rate / 20, 0.1) if rate else None)
        self.recover_step = recover_step
        self.current_rate = rate
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._tokens = self.burst
        self._last = clock()
        self._paused_until = 0.0
        self.backpressure_events = 0

    # -- pacing ------------------------------------------------------------------------------------------
    def reserve(self, n: int) -> float:
        """Take ``n`` tokens now (possibly into debt) and return how long the caller must wait."""
        if n < 0:
            raise ValueError("n must be >= 0")
        with self._lock:
            now = self._clock()
            pause = max(0.0, self._paused_until - now)
            if self.current_rate is None:
                return pause
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.current_rate)
            self._last = now
            self._tokens -= n
            debt_wait = -self._tokens / self.current_rate if self._tokens < 0 else 0.0
            return max(pause, debt_wait)

    def acquire(self, n: int = 1) -> float:
        """Block until ``n`` tokens are granted. Returns the time waited (seconds)."""
        wait = self.reserve(n)
        if wait > 0:
            self._sleep(wait)
        return wait

    # -- back-pressure -----------------------------------------------------------------------------------
    def backpressure(self, retry_after_s: float | None) -> None:
        """The sink said "slow down" (429/503): pause everyone for ``retry_after_s`` and halve the rate."""
        with self._lock:
            self.backpressure_events += 1
            now = self._clock()
            if retry_after_s and retry_after_s > 0:
                # A hostile or broken Retry-After (inf, NaN, a date in 9999) must never make an
                # unbounded sleep (OverflowError) or a pause that outlives any drain.
                pause = min(retry_after_s, MAX_PAUSE_S) if math.isfinite(retry_after_s) else MAX_PAUSE_S
                self._paused_until = max(self._paused_until, now + pause)
            if self.current_rate is not None:
                self.current_rate = max(self.min_rate or 0.1, self.current_rate / 2)
            # Drop accumulated burst: resuming at full burst would hit the sink with what it refused.
            self._tokens = min(self._tokens, 0.0)
            self._last = now

    def accepted(self) -> None:
        """The sink accepted a write: let the adaptive rate climb back towards ``rate``."""
        if self.rate is None or self.current_rate == self.rate:
            return
        with self._lock:
            self.current_rate = min(self.rate, (self.current_rate or self.rate) + self.rate * self.recover_step)
