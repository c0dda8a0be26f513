"""The drain simulator: seeded, deterministic, event-driven (see the package docstring for the model)."""

from __future__ import annotations

import heapq
import math
import random
from dataclasses import dataclass
from typing import Any

from batchq.capacity.policies import (
    Observation,
    is_lambda,
    policy_floor,
    worker_prefetch,
)
from batchq.capacity.workload import Workload


@dataclass
class _Consumer:
    ready_at: float
    started_at: float
    slots: int
    busy: int = 0
    stopping: bool = False
    stopped_at: float | None = None
    batch_open_until: float = -math.inf
    batch_fill: int = 0
    warm: bool = False
    in_free: bool = False
    prefetch: int = 0  # messages held waiting for a free handler thread (the worker's prefetch)
    buffered: int = 0

    def can_receive(self) -> bool:
        # The runner's own refill rule (one implementation). Imported here, not at the top: the worker
        # package imports the SQS layer, which imports this package (as policies.worker_prefetch does).
        from batchq.worker.prefetch import should_receive

        return should_receive(self.slots + self.prefetch - self.busy - self.buffered, self.prefetch, self.buffered)


@dataclass
class RunResult:
    """One simulated run. ``curve``: ``(t, backlog, consumers)`` at every controller tick and at the end."""

    drain_s: float
    peak_backlog: int
    peak_consumers: int
    consumer_seconds: float
    busy_seconds: float
    invocations: int
    requests: dict[str, int]
    curve: list[tuple[float, int, int]]


_ARRIVE, _READY, _DONE, _TICK, _WINDOW = range(5)


def simulate_run(workload: Workload, policy: Any, seed: int = 0, *, max_time_s: float = 7 * 86400) -> RunResult:
    """Simulate one run of ``workload`` under ``policy`` (deterministic for a given ``seed``)."""
    rng = random.Random(seed)
    lam = is_lambda(policy)
    ctrl = policy.controller()
    n = workload.payloads
    events: list[tuple[float, int, int, int, Any]] = []
    seq = 0

    def push(t: float, kind: int, data: Any = None) -> None:
        nonlocal seq
        seq += 1
        heapq.heappush(events, (t, kind, seq, 0, data))

    # Fan-out: ten per SendMessageBatch call, spaced at the fan-out rate.
    sent = 0
    while sent < n:
        k = min(10, n - sent)
        sent += k
        push(0.0 if math.isinf(workload.fanout_rate) else (sent - k) / workload.fanout_rate, _ARRIVE, k)
    push(0.0, _TICK)

    # The policy's floor is running before the run starts (warm): it costs idle time, not start-up.
    prefetch = worker_prefetch(policy, workload.service)
    consumers: list[_Consumer] = [_Consumer(ready_at=0.0, started_at=0.0, slots=policy.slots, warm=True, prefetch=prefetch)
                                  for _ in range(policy_floor(policy))]
    visible = in_flight = done = 0
    receives = result_sends = deletes = 0.0
    invocations = running_invocations = 0
    busy_seconds = 0.0
    peak_backlog = peak_consumers = peak_busy = 0
    curve: list[tuple[float, int, int]] = []
    window_armed = False
    last_t = 0.0
    idle_poll_seconds = 0.0
    now = 0.0
    wait_s = float(getattr(policy, "wait_seconds", 20.0))

    def active() -> list[_Consumer]:
        return [c for c in consumers if not c.stopping]

    # Ready consumers that may have a free slot (a stack; stale entries are dropped when met), so a
    # dispatch costs what it hands out, not the number of consumers (Lambda runs up to thousands).
    free: list[_Consumer] = []

    def make_free(c: _Consumer) -> None:
        if not c.in_free and not c.stopping and c.can_receive():
            c.in_free = True
            free.append(c)

    for c in consumers:
        make_free(c)

    def start_buffered(c: _Consumer, t: float) -> None:
        nonlocal busy_seconds
        while c.buffered and c.busy < c.slots:
            duration = workload.service.draw(rng) + workload.overhead_s
            c.buffered -= 1
            c.busy += 1
            busy_seconds += duration
            push(t + duration, _DONE, (c, 1))

    def dispatch(t: float, flush_window: bool) -> None:
        nonlocal visible, in_flight, receives, invocations, busy_seconds, window_armed, running_invocations
        while visible > 0 and free:
            c = free[-1]
            if c.stopping or not c.can_receive():
                free.pop()
                c.in_free = False
                continue
            while visible > 0 and c.can_receive():
                if lam:
                    if visible < policy.batch_size and policy.batching_window_s > 0 and not flush_window \
                            and sent_all_at > t:
                        if not window_armed:
                            window_armed = True
                            push(t + policy.batching_window_s, _WINDOW)
                        return
                    k = min(policy.batch_size, visible)
                    visible -= k
                    in_flight += k
                    receives += math.ceil(k / 10)
                    duration = sum(workload.service.draw(rng) + workload.overhead_s for _ in range(k))
                    if not c.warm:
                        duration += policy.cold_start_s  # first invocation of a new environment
                        c.warm = True
                    c.busy += 1
                    invocations += 1
                    running_invocations += 1
                    busy_seconds += duration
                    push(t + duration, _DONE, (c, k))
                else:
                    k = min(10, visible, c.slots + c.prefetch - c.busy - c.buffered)
                    visible -= k
                    in_flight += k
                    receives += 1
                    c.buffered += k
                    start_buffered(c, t)

    sent_all_at = 0.0 if math.isinf(workload.fanout_rate) else (n - min(10, n)) / workload.fanout_rate

    while events:
        now, kind, _, _, data = heapq.heappop(events)
        if now > max_time_s:
            raise ValueError(f"the run does not drain within {max_time_s:.0f}s of simulated time: check the policy's "
                             "minimum and maximum (scale to zero with nothing to wake it?)")
        # Consumers with a free slot long-poll an empty queue: SQS requests that carry nothing.
        if visible == 0 and not lam:
            idle_poll_seconds += (now - last_t) * sum(1 for c in free if not c.stopping and c.busy + c.buffered < c.slots + c.prefetch)
        last_t = now
        if kind == _ARRIVE:
            visible += data
        elif kind == _READY:
            make_free(data)
        elif kind == _WINDOW:
            window_armed = False
        elif kind == _DONE:
            c, k = data
            c.busy -= 1 if lam else k
            running_invocations -= 1 if lam else 0
            in_flight -= k
            done += k
            if lam:
                result_sends += math.ceil(k / 10)
                deletes += math.ceil(k / 10)
            elif c.batch_fill > 0 and now <= c.batch_open_until and c.batch_fill < 10:
                c.batch_fill += 1
            else:
                # A new batch call for results (and one for deletes); it waits batch_wait_s for company.
                result_sends += 1
                deletes += 1
                c.batch_fill = 1
                c.batch_open_until = now + policy.batch_wait_s
            if not lam:
                start_buffered(c, now)
                if c.busy == 0:
                    c.batch_fill = 0  # the worker flushes at once when nothing else is running
            make_free(c)
            if c.stopping and c.busy == 0 and c.stopped_at is None:
                c.stopped_at = now
            if done >= n:
                break
        elif kind == _TICK:
            current = len(active())
            target = ctrl.target(Observation(now, visible, in_flight, current))
            if target > current:
                for _ in range(target - current):
                    ready = now + (0.0 if lam else policy.startup_s)
                    consumers.append(c := _Consumer(ready_at=ready, started_at=now, slots=policy.slots, prefetch=prefetch))
                    push(ready, _READY, c)
            elif target < current:
                # Not-yet-ready ones first, then the newest (as the supervisor stops newest first).
                for c in sorted(active(), key=lambda c: (c.ready_at <= now, c.started_at))[: current - target]:
                    c.stopping = True
                    # SIGTERM: a worker hands back what it prefetched at once (visibility 0).
                    visible += c.buffered
                    in_flight -= c.buffered
                    c.buffered = 0
                    if c.busy == 0:
                        c.stopped_at = now
            peak_consumers = max(peak_consumers, len(active()))
            curve.append((round(now, 3), visible + in_flight, len(active())))
            push(now + ctrl.interval_s, _TICK)
        if events and events[0][0] == now and kind != _WINDOW:
            continue  # take every event of this instant first: slots freed together are refilled together
        dispatch(now, flush_window=kind == _WINDOW)
        peak_backlog = max(peak_backlog, visible + in_flight)
        if lam:
            peak_busy = max(peak_busy, running_invocations)

    drain = now
    curve.append((round(drain, 3), 0, len(active())))
    consumer_seconds = sum(((c.stopped_at if c.stopped_at is not None else drain) - c.started_at) for c in consumers)
    empty_receives = 0 if lam else int(idle_poll_seconds / wait_s)  # one long poll per wait per idle consumer
    send_chunk = max(1, math.ceil(10 * workload.payload_bytes / 65536))
    result_chunk = max(1, math.ceil(10 * workload.result_bytes / 65536))
    requests = {
        "fanout_send": math.ceil(n / 10) * send_chunk,
        "receive": int(receives) * send_chunk,
        "empty_receive": empty_receives,
        "result_send": int(result_sends) * result_chunk,
        "delete": int(deletes),
    }
    if lam:
        peak_consumers = peak_busy  # the ESM's level is a limit; what ran concurrently is what counts
    return RunResult(drain, peak_backlog, peak_consumers, consumer_seconds, busy_seconds, invocations, requests, curve)
