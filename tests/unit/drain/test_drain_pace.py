"""PaceController against a simulated downstream of known capacity, on a simulated clock.

The downstream is processor-sharing: up to ``capacity`` writes at once each take ``base_s``; beyond
that every write slows by ``in_flight / capacity`` (a CPU-bound service or a database: everyone in it
gets slower together, which is what the drainer's foreground neighbours feel too). Each drainer keeps
``floor(limit)`` writes in flight (as :class:`~batchq.drain.pace.ConcurrencyGate` does); a write's round
trip is fixed by the load when it starts.
"""

from __future__ import annotations

import heapq
import itertools
import math
import threading

import pytest
from batchq.drain.pace import DEFAULT_LATENCY_TOLERANCE, ConcurrencyGate, PaceController


class Downstream:
    """Discrete-event simulation of ``len(controllers)`` drainers writing to one downstream."""

    def __init__(self, capacity: float, base_s: float = 0.02):
        self.capacity, self.base_s = capacity, base_s
        self.now = 0.0
        self.in_flight = 0
        self.loss_above: float | None = None  # answer 503 when more than this many are in flight

    def clock(self) -> float:
        return self.now

    def rtt(self) -> float:
        return self.base_s * max(1.0, self.in_flight / self.capacity)

    def run(self, controllers: list[PaceController], until_s: float, *, on_step=None) -> list[list[tuple[float, float, int]]]:
        """Run until ``until_s``; returns per controller the (time, limit, completed writes) trace."""
        events: list[tuple[float, int, int, float, bool]] = []  # (end, seq, who, rtt, loss)
        own = [0] * len(controllers)
        done = [0] * len(controllers)
        trace: list[list[tuple[float, float, int]]] = [[] for _ in controllers]
        seq = 0
        self.in_flight = 0  # writes still running at the end of a previous run() are dropped with it

        def fill(i: int) -> None:
            nonlocal seq
            while own[i] < max(1, int(controllers[i].limit)):
                self.in_flight += 1
                own[i] += 1
                loss = self.loss_above is not None and self.in_flight > self.loss_above
                rtt = 0.002 if loss else self.rtt()
                heapq.heappush(events, (self.now + rtt, seq, i, rtt, loss))
                seq += 1

        for i in range(len(controllers)):
            fill(i)
        while events and self.now < until_s:
            end, _, i, rtt, loss = heapq.heappop(events)
            self.now = end
            controllers[i].on_sample(rtt, loss=loss, in_flight=own[i])
            self.in_flight -= 1
            own[i] -= 1
            done[i] += 0 if loss else 1
            trace[i].append((self.now, controllers[i].limit, done[i]))
            if on_step:
                on_step(self)
            fill(i)
        return trace


def controller(ds: Downstream, **kw) -> PaceController:
    kw.setdefault("max_limit", 64)
    kw.setdefault("probe_interval_s", 10.0)
    return PaceController(clock=ds.clock, **kw)


def settled(trace: list[tuple[float, float, int]], since: float) -> float:
    """Time-weighted mean limit from ``since`` on (the sawtooth's centre)."""
    pts = [(t, lim) for t, lim, _ in trace if t >= since]
    span = pts[-1][0] - pts[0][0]
    return sum(lim * (t2 - t1) for (t1, lim), (t2, _) in itertools.pairwise(pts)) / span


def throughput(trace: list[tuple[float, float, int]], t0: float, t1: float) -> float:
    inside = [(t, n) for t, _, n in trace if t0 <= t <= t1]
    return (inside[-1][1] - inside[0][1]) / (inside[-1][0] - inside[0][0])


@pytest.mark.parametrize("capacity", [4, 10, 24])
def test_limit_settles_within_20_percent_of_capacity(capacity):
    ds = Downstream(capacity)
    pc = controller(ds)
    [trace] = ds.run([pc], 60.0)
    mean = settled(trace, 20.0)
    assert 0.8 * capacity <= mean <= 1.2 * capacity, (capacity, mean)
    # and the latency the downstream sees stays near the tolerance, not far beyond it
    assert pc.state().rtt_s <= ds.base_s * (DEFAULT_LATENCY_TOLERANCE + 0.25)
    assert pc.state().baseline_s == pytest.approx(ds.base_s)


def test_halving_capacity_halves_the_limit_within_bounded_windows():
    ds = Downstream(20)
    pc = controller(ds)
    [trace] = ds.run([pc], 30.0)
    before = settled(trace, 15.0)
    assert 16 <= before <= 24
    windows_at_drop = pc.state().windows
    ds.capacity = 10  # a co-tenant takes half
    reached: list[int] = []

    def watch(_ds: Downstream) -> None:
        if not reached and pc.limit <= 0.6 * before:
            reached.append(pc.state().windows - windows_at_drop)

    [trace] = ds.run([pc], 60.0, on_step=watch)
    # Within 3 windows the limit is down to about half of where it was ...
    assert reached and reached[0] <= 3, reached
    # ... and it settles around the new capacity (±20 %).
    assert 8 <= settled(trace, 45.0) <= 12


def test_recovery_after_the_co_tenant_leaves():
    ds = Downstream(10)
    pc = controller(ds)
    ds.run([pc], 30.0)
    ds.capacity = 20
    [trace] = ds.run([pc], 60.0)
    assert 16 <= settled(trace, 45.0) <= 24


def test_two_drainers_share_one_downstream_fairly():
    ds = Downstream(16)
    a, b = controller(ds, initial_limit=14), controller(ds, initial_limit=1)  # a starts big: no head start kept
    trace = ds.run([a, b], 120.0)
    ta, tb = throughput(trace[0], 60.0, 120.0), throughput(trace[1], 60.0, 120.0)
    total_capacity = 16 / ds.base_s
    # together within the downstream's capacity (at the tolerated latency) ...
    assert ta + tb <= total_capacity * 1.05
    # ... each within 20 % of half, nobody starved
    assert abs(ta - tb) / ((ta + tb) / 2) <= 0.2, (ta, tb)
    la, lb = settled(trace[0], 60.0), settled(trace[1], 60.0)
    assert 0.8 * 16 <= la + lb <= 1.3 * 16, (la, lb)


def test_three_drainers_joining_late_get_a_fair_share():
    ds = Downstream(24)
    cs = [controller(ds) for _ in range(3)]
    ds.run(cs[:1], 20.0)  # the first one has the downstream to itself
    trace = ds.run(cs, 140.0)
    rates = [throughput(tr, 80.0, 140.0) for tr in trace]
    mean = sum(rates) / 3
    assert min(rates) >= 0.8 * mean, rates


def test_loss_shrinks_the_limit_and_it_stays_below_the_loss_point():
    ds = Downstream(capacity=40)
    ds.loss_above = 8  # the sink answers 503 beyond 8 concurrent writes, long before it slows down
    pc = controller(ds)
    [trace] = ds.run([pc], 40.0)
    assert pc.state().losses > 0
    assert settled(trace, 20.0) <= 8 * 1.2


def test_baseline_is_not_raised_by_one_loaded_probe_but_follows_a_lasting_change():
    ds = Downstream(8)
    pc = controller(ds, probe_interval_s=5.0, baseline_history=3)
    ds.run([pc], 10.0)
    assert pc.state().baseline_s == pytest.approx(0.02)
    ds.base_s = 0.05  # the sink really got slower for good
    ds.run([pc], 14.0)
    assert pc.state().baseline_s == pytest.approx(0.02)  # one probe does not move it
    ds.run([pc], 60.0)
    assert pc.state().baseline_s == pytest.approx(0.05)


@pytest.mark.parametrize("bad", [1.0, 0.5, 0, -2, math.inf, math.nan])
def test_latency_tolerance_must_be_above_one(bad):
    with pytest.raises(ValueError, match="latency_tolerance"):
        PaceController(latency_tolerance=bad)


def test_gate_holds_threads_to_the_limit():
    clock = [0.0]
    pc = PaceController(initial_limit=2, max_limit=8, window_samples=1, window_min_s=0, probe_samples=1, clock=lambda: clock[0])
    gate = ConcurrencyGate(pc)
    assert pc.state().probing and pc.limit == 1  # the start-up probe: one write at a time
    gate.acquire()
    gate.release(0.01)  # the probe's sample: baseline 10 ms, limit back to the initial 2
    assert pc.state().baseline_s == 0.01 and pc.limit == 2
    gate.acquire()
    gate.acquire()
    entered = threading.Event()

    def third() -> None:
        gate.acquire()
        entered.set()

    t = threading.Thread(target=third)
    t.start()
    assert not entered.wait(0.3)  # two in flight: the limit
    gate.release(0.01)  # a slot frees: the third enters; the window needs a sample per write in flight
    assert entered.wait(2)
    t.join()
    assert gate.in_flight == 2 and pc.limit == 2
    gate.release(0.01)  # the window closes, no queueing: one more write allowed
    assert pc.limit == 3


def test_growth_is_one_write_per_round_trip_so_the_knee_is_never_overshot_by_much():
    ds = Downstream(40)
    pc = controller(ds, initial_limit=2)
    worst: list[float] = [0.0]

    def watch(d: Downstream) -> None:
        worst[0] = max(worst[0], d.in_flight / d.capacity)

    [trace] = ds.run([pc], 20.0, on_step=watch)
    reached = next(t for t, lim, _ in trace if lim >= 0.8 * 40)
    # ~32 windows of one round trip (20 ms, at least 50 ms) from 1 write in flight to 32: a few seconds ...
    assert reached <= 3.0, reached
    # ... and the downstream never saw more than the tolerance plus one step of load
    assert worst[0] <= DEFAULT_LATENCY_TOLERANCE + 2 / 40, worst[0]
