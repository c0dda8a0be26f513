"""The planner: many seeded runs summarised (drain p50/p95, peaks, curve, requests, cost, deadline) and the
smallest maximum that meets a deadline."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from batchq.capacity.cost import (
    PRICES_TAKEN,
    Overheads,
    Prices,
    idle_month_cost,
    run_cost,
    run_requests,
)
from batchq.capacity.simulate import RunResult, simulate_run
from batchq.capacity.workload import Workload
from batchq.monitor.lag import percentile


def _pct(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) through batchq's one percentile function (:mod:`batchq.monitor.lag`)."""
    value = percentile(sorted(values), q)
    if value is None:
        raise ValueError("no simulated runs to take a percentile of")
    return value


@dataclass
class Plan:
    """The planner's answer (``to_dict()`` is what ``--json`` prints)."""

    policy: str
    inputs: dict[str, Any]
    runs: int
    drain_p50_s: float
    drain_p95_s: float
    drain_max_s: float
    peak_backlog: int
    peak_consumers: int
    curve: list[tuple[float, int, int]]
    requests_per_run: dict[str, int]
    requests_per_payload: float
    cost_per_run: dict[str, float]
    cost_per_month: dict[str, float] | None = None
    deadline_s: float | None = None
    deadline_met: bool | None = None
    smallest_max_meeting_deadline: int | None = None
    #: the setting the searched maximum is (``max workers``, ``maximum concurrency``, ...)
    max_setting: str = ""

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["curve"] = [list(p) for p in self.curve]
        return out


#: ``progress(message)``: told what the planner is doing, at most every few seconds (the CLI prints it).
Progress = Callable[[str], None]


class _Ticker:
    """Calls ``progress`` with a message at most every ``every_s`` (a long simulation is never silent,
    and a short one prints almost nothing)."""

    def __init__(self, progress: Progress | None, every_s: float = 2.0):
        self.progress, self.every_s, self._last = progress, every_s, time.monotonic()

    def __call__(self, message: Callable[[], str], *, force: bool = False) -> None:
        now = time.monotonic()
        if self.progress is not None and (force or now - self._last >= self.every_s):
            self._last = now
            self.progress(message())


def simulate(workload: Workload, policy: Any, runs: int = 50, seed: int = 0,
             tick: Callable[[int], None] | None = None) -> list[RunResult]:
    """``runs`` seeded runs (seeds ``seed .. seed + runs - 1``); ``tick(done)`` after each."""
    if runs < 1:
        raise ValueError(f"runs must be >= 1, got {runs}")
    out = []
    for i in range(runs):
        out.append(simulate_run(workload, policy, seed + i))
        if tick is not None:
            tick(i + 1)
    return out


def smallest_max_meeting(workload: Workload, policy: Any, deadline_s: float, runs: int = 20, seed: int = 0,
                         upper: int | None = None, progress: Progress | None = None) -> int | None:
    """The smallest maximum (workers / replicas / tasks / concurrency / pollers) whose p95 drain time
    meets ``deadline_s``; ``None`` if even ``upper`` (default: the policy's current max × 4, at least
    64) does not. Bisection: more consumers never drain later in this model."""

    ticker = _Ticker(progress)

    def meets(m: int) -> bool:
        ticker(lambda: f"searching the smallest {policy.max_setting}: trying {m}", force=True)
        drains = [r.drain_s for r in simulate(workload, policy.with_max(m), runs, seed,
                                              lambda done: ticker(lambda: f"  {m}: {done}/{runs} runs"))]
        return _pct(drains, 95) <= deadline_s

    hi = upper or max(64, policy.max_knob * 4)
    if not meets(hi):
        return None
    lo = 1
    while lo < hi:
        mid = (lo + hi) // 2
        if meets(mid):
            hi = mid
        else:
            lo = mid + 1
    return policy.with_max(lo).max_knob  # a maximum below the policy's minimum is the minimum


def plan_capacity(
    workload: Workload,
    policy: Any,
    *,
    runs: int = 50,
    seed: int = 0,
    deadline_s: float | None = None,
    runs_per_month_: float | None = None,
    prices: Prices | None = None,
    overheads: Overheads | None = None,
    search: bool = True,
    progress: Progress | None = None,
) -> Plan:
    """Simulate ``runs`` runs and summarise: drain p50/p95, peaks, the median run's curve, requests and
    cost per run (and per month when ``runs_per_month_`` is given), the deadline verdict and the
    smallest maximum that meets it.

    :param progress: told what is being simulated, at most every 2 s (a large plan takes a while).
    """
    prices = prices or Prices()
    overheads = overheads or Overheads()
    ticker = _Ticker(progress)
    ticker(lambda: f"simulating {runs} runs of {workload.payloads} payloads under {policy.name}", force=True)
    started = time.monotonic()
    results = simulate(workload, policy, runs, seed,
                       lambda done: ticker(lambda: f"  {done}/{runs} runs ({time.monotonic() - started:.0f} s)"))
    drains = [r.drain_s for r in results]
    median_run = sorted(results, key=lambda r: r.drain_s)[len(results) // 2]
    requests = run_requests(median_run, workload, overheads)
    total_requests = sum(requests.values())
    cost = run_cost(policy, median_run, total_requests, prices)
    cost["total_usd"] = cost["sqs_usd"] + cost["compute_usd"]
    month = None
    if runs_per_month_ is not None:
        month_s = 30.4167 * 86400
        idle = idle_month_cost(policy, prices, max(0.0, month_s - runs_per_month_ * median_run.drain_s))
        month = {
            "runs": runs_per_month_,
            "runs_usd": cost["total_usd"] * runs_per_month_,
            "idle_requests": idle["idle_requests"],
            "idle_sqs_usd": idle["idle_requests"] * prices.sqs_per_million / 1e6,
            "idle_compute_usd": idle["idle_compute_usd"],
            "idle_consumers": idle["idle_consumers"],
        }
        month["total_usd"] = month["runs_usd"] + month["idle_sqs_usd"] + month["idle_compute_usd"]
    p95 = _pct(drains, 95)
    met = None if deadline_s is None else p95 <= deadline_s
    smallest = None
    if deadline_s is not None and search:
        # The same runs and seeds as the verdict above, so the two cannot disagree on the current maximum.
        smallest = smallest_max_meeting(workload, policy, deadline_s, runs=runs, seed=seed, progress=progress)
    inputs = {"payloads": workload.payloads, "service": workload.service.describe(),
              "fanout_rate": None if math.isinf(workload.fanout_rate) else workload.fanout_rate,
              "overhead_s": workload.overhead_s,
              "policy": {k: v for k, v in asdict(policy).items()}, "prices": asdict(prices),
              "prices_taken": PRICES_TAKEN}
    return Plan(
        policy=policy.name, inputs=inputs, runs=runs,
        drain_p50_s=_pct(drains, 50), drain_p95_s=p95, drain_max_s=max(drains),
        peak_backlog=max(r.peak_backlog for r in results), peak_consumers=max(r.peak_consumers for r in results),
        curve=median_run.curve, requests_per_run=requests,
        requests_per_payload=total_requests / workload.payloads, cost_per_run=cost, cost_per_month=month,
        deadline_s=deadline_s, deadline_met=met, smallest_max_meeting_deadline=smallest,
        max_setting=policy.max_setting,
    )
