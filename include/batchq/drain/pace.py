"""The drainer's pace: a concurrency limit found from the sink's own latency.

The real-time system rarely says "slow down" before it is already slow: it gets slower first. So the
drainer measures the round trip of every sink write (HTTP: the POST of a batch; SQL: the commit) and
keeps it within ``latency_tolerance`` × its **baseline** — the round trip the sink gives when lightly
loaded. The number of writes in flight across all of a drainer's threads is the control; the rate
follows from it (Little's law: rate = in-flight / round trip).

How it works (the ideas of Netflix concurrency-limits' Gradient2/Vegas and Envoy's adaptive-concurrency
gradient controller, sized for a drainer that has a handful of batches in flight, not thousands of
requests):

* Samples are gathered in **windows** of about one round trip: at least as many writes as the limit
  (every write in flight completed once), at least ``window_samples`` and ``window_min_s``. A window's
  round trip is the **median** of its samples: robust to one slow write on a loaded host.
* **Baseline** (Envoy's minRTT): measured by a **probe** — ``probe_samples`` writes at ``min_limit`` —
  at the start and every ``probe_interval_s``. A window with a lower round trip lowers it at once; a
  higher probe raises it only when the last ``baseline_history`` probes all agree
  (so a co-tenant's or another drainer's load during one probe cannot teach the drainer that "slow" is
  normal — that ratchet would starve the others).
* No slow start: below its capacity a downstream's latency does not move, so a multiplicative step
  (TCP's slow start) overshoots the knee by up to that factor for a whole round trip, which the
  foreground's p99 sees. The drain grows one write per round trip, from the first window on.
* **Gradient** (Gradient2/Envoy, with Vegas' queue estimate): when the window's round trip is within
  ``latency_tolerance`` × baseline, the limit grows by ``increase`` (additive); above it the limit is
  multiplied by ``baseline / rtt`` (never below half) — it drops back to the knee where the sink began to
  queue, removing the writes that only waited (Vegas: queue = limit × (1 − baseline/rtt)). So the
  limit saws between the knee and the tolerance, and the sink's latency stays within the tolerance. Additive increase with a proportional
  decrease is what makes several drainers sharing one downstream converge to equal shares (Chiu & Jain,
  as TCP flows do): they all see the same latency, so all shrink by the same factor and grow by the same
  step.
* **Loss**: explicit push-back (429/503/``Retry-After``), timeouts and 5xx shrink the limit by
  ``loss_backoff`` at once (Vegas/AIMD treat a drop the same way).

:class:`PaceController` is pure and clock-injectable (no threads, no sleeping): tests drive it with a
simulated downstream. :class:`ConcurrencyGate` enforces its limit on the drain threads.
"""

from __future__ import annotations

import math
import statistics
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

#: Default ``latency_tolerance``: the sink's round trip may grow to 1.2× its lightly-loaded baseline.
#: The foreground requests of a downstream that slows evenly with load (a CPU-bound service, a
#: database) see about the same factor; 1.2 keeps their p99 within 1.25× idle in bench/burst_isolation.py.
DEFAULT_LATENCY_TOLERANCE = 1.2


@dataclass(frozen=True)
class PaceState:
    """What the controller knows now (for metrics, progress lines and the Batch view).

    :param limit: writes allowed in flight at once (fractional; the gate admits ``floor(limit)``, ≥ 1).
    :param rtt_s: the last window's median round trip (``None`` before the first window).
    :param baseline_s: the lightly-loaded round trip it compares against (``None`` before the probe).
    :param probing: a baseline probe window is running (the limit is held at its minimum).
    :param windows: windows evaluated so far.
    :param losses: explicit push-back/timeouts/5xx seen so far.
    """

    limit: float
    rtt_s: float | None
    baseline_s: float | None
    probing: bool
    windows: int
    losses: int

    def to_dict(self) -> dict[str, float | int | bool | None]:
        return {
            "limit": round(self.limit, 2),
            "rtt_ms": None if self.rtt_s is None else round(self.rtt_s * 1000, 2),
            "baseline_ms": None if self.baseline_s is None else round(self.baseline_s * 1000, 2),
            "probing": self.probing,
            "windows": self.windows,
            "losses": self.losses,
        }


class PaceController:
    """Adaptive concurrency limit from the sink's round-trip times (see the module docstring).

    :param latency_tolerance: how far the sink's round trip may rise above its baseline (1.2 = +20 %);
        the one knob. Lower is gentler on the downstream, higher drains faster.
    :param initial_limit: the limit after the first baseline probe.
    :param min_limit: the floor (and the limit a probe runs at).
    :param max_limit: the ceiling (the drainer's thread count).
    :param increase: additive growth per window within tolerance (writes in flight).
    :param loss_backoff: factor applied to the limit on push-back, a timeout or a 5xx.
    :param window_samples: fewest samples per window (a window also waits for ``limit`` samples).
    :param window_min_s: shortest window (seconds), so a fast sink is not judged on a few milliseconds.
    :param probe_interval_s: how often the baseline is re-measured (Envoy re-measures minRTT the same way).
    :param probe_samples: writes a probe measures.
    :param baseline_history: how many consecutive higher probes it takes to raise the baseline.
    :param clock: monotonic clock (seconds); injectable for tests.
    """

    def __init__(
        self,
        *,
        latency_tolerance: float = DEFAULT_LATENCY_TOLERANCE,
        initial_limit: float = 2.0,
        min_limit: float = 1.0,
        max_limit: float = 64.0,
        increase: float = 1.0,
        loss_backoff: float = 0.5,
        window_samples: int = 3,
        window_min_s: float = 0.05,
        probe_interval_s: float = 60.0,
        probe_samples: int = 3,
        baseline_history: int = 3,
        clock: Callable[[], float] = time.monotonic,
    ):
        if not (isinstance(latency_tolerance, (int, float)) and math.isfinite(latency_tolerance) and latency_tolerance > 1.0):
            raise ValueError(f"latency_tolerance must be a number > 1.0 (the sink's round trip may reach that × its baseline), got {latency_tolerance!r}")
        if not 1 <= min_limit <= max_limit:
            raise ValueError(f"need 1 <= min_limit <= max_limit, got {min_limit}, {max_limit}")
        if not 0 < loss_backoff < 1:
            raise ValueError(f"loss_backoff must be in (0, 1), got {loss_backoff}")
        if window_samples < 1 or baseline_history < 1:
            raise ValueError("window_samples and baseline_history must be >= 1")
        self.tolerance = float(latency_tolerance)
        self.min_limit, self.max_limit = float(min_limit), float(max_limit)
        self.initial_limit = min(max(float(initial_limit), self.min_limit), self.max_limit)
        self.increase, self.loss_backoff = increase, loss_backoff
        self.window_samples, self.window_min_s = window_samples, window_min_s
        self.probe_interval_s = probe_interval_s
        self.probe_samples = max(1, probe_samples)
        self._clock = clock
        # The drain starts with a probe (``probe_samples`` writes at ``min_limit``): the first baseline is
        # a lightly-loaded one even when the sink's capacity is below the initial limit.
        self._limit = self.min_limit
        self._baseline: float | None = None
        self._probes: deque[float] = deque(maxlen=baseline_history)
        self._probing = True
        self._next_probe = clock() + probe_interval_s
        self._resume_limit = self.initial_limit
        self._samples: list[float] = []
        self._window_start = clock()
        self._rtt: float | None = None
        self._windows = 0
        self._losses = 0

    # -- reading -----------------------------------------------------------------------------------------
    @property
    def limit(self) -> float:
        return self._limit

    def state(self) -> PaceState:
        return PaceState(self._limit, self._rtt, self._baseline, self._probing, self._windows, self._losses)

    # -- samples -----------------------------------------------------------------------------------------
    def on_sample(self, rtt_s: float, *, loss: bool = False, in_flight: int = 1) -> None:
        """One completed write: its round trip (seconds), whether the sink pushed back, timed out or
        failed with a 5xx (``loss``: the write did not count as done), and how many writes were in flight
        when it finished (itself included)."""
        now = self._clock()
        if loss:
            self._losses += 1
            if not self._probing:
                self._limit = max(self.min_limit, self._limit * self.loss_backoff)
            # A loss's round trip says nothing about queueing (it may be a fast 503): start a new window.
            self._samples.clear()
            self._window_start = now
            return
        if not math.isfinite(rtt_s) or rtt_s < 0:
            return
        if self._probing and in_flight > self.min_limit:
            return  # started before the probe lowered the limit: not a lightly-loaded round trip
        self._samples.append(rtt_s)
        if self._probing:
            if len(self._samples) >= self.probe_samples:
                self._close_window(now)
        elif len(self._samples) >= max(self.window_samples, int(self._limit)) and now - self._window_start >= self.window_min_s:
            self._close_window(now)

    def _close_window(self, now: float) -> None:
        rtt = statistics.median(self._samples)
        self._samples.clear()
        self._window_start = now
        self._rtt = rtt
        self._windows += 1
        if self._probing:
            self._end_probe(rtt, now)
            return
        if self._baseline is None or rtt < self._baseline:
            self._baseline = rtt  # a lighter moment than the probe saw: the true baseline is lower
        if rtt <= self.tolerance * self._baseline:
            new = self._limit + self.increase
        else:
            # Back to the estimated knee: the writes beyond it only queued (Vegas' queue estimate,
            # limit × (1 − baseline/rtt), taken off at once), never more than half at a time.
            new = self._limit * max(0.5, self._baseline / rtt)
        self._limit = min(self.max_limit, max(self.min_limit, new))
        if now >= self._next_probe:
            self._start_probe(now)

    def _start_probe(self, now: float) -> None:
        self._probing = True
        self._resume_limit = self._limit
        self._limit = self.min_limit

    def _end_probe(self, rtt: float, now: float) -> None:
        self._probes.append(rtt)
        if self._baseline is None or rtt < self._baseline:
            self._baseline = rtt
        elif len(self._probes) == self._probes.maxlen:
            # Only a rise every recent probe agrees on moves the baseline up (the sink really got slower:
            # a new region, a bigger payload), and then only to the lowest of them.
            self._baseline = max(self._baseline, min(self._probes))
        self._probing = False
        self._limit = self._resume_limit
        self._next_probe = now + self.probe_interval_s


class ConcurrencyGate:
    """Holds the drain threads to the controller's limit: ``with gate.slot():`` around each sink write.

    Thread-safe; one gate (and one controller) per drainer, shared by all its threads. The write's round
    trip is timed inside the slot and fed to the controller.

    :param controller: the :class:`PaceController` whose limit is enforced.
    :param clock: the clock the round trips are measured with.
    """

    def __init__(self, controller: PaceController, *, clock: Callable[[], float] = time.perf_counter):
        self.controller = controller
        self._clock = clock
        self._cond = threading.Condition()
        self.in_flight = 0

    def _allowed(self) -> int:
        return max(1, int(self.controller.limit))

    def acquire(self, stop: Callable[[], bool] | None = None) -> float:
        """Wait for a free slot; returns the seconds waited."""
        started = self._clock()
        with self._cond:
            while self.in_flight >= self._allowed():
                if stop is not None and stop():
                    break
                self._cond.wait(0.2)
            self.in_flight += 1
        return self._clock() - started

    def release(self, rtt_s: float, *, loss: bool = False, sample: bool = True) -> None:
        """Free the slot; ``sample`` feeds ``rtt_s`` (and ``loss``) to the controller."""
        with self._cond:
            if sample:
                self.controller.on_sample(rtt_s, loss=loss, in_flight=self.in_flight)
            self.in_flight -= 1
            self._cond.notify_all()

    def state(self) -> PaceState:
        with self._cond:
            return self.controller.state()
