"""Capacity planning: one scaling rule per policy and a seeded, deterministic drain simulator.

Pure (no I/O, no Airflow): ``batchq plan-capacity`` feeds inputs in and prints what comes out, and the
local supervisor (:mod:`batchq.worker.supervisor`) scales with :class:`LocalScaling` from here, so the
planner's ``local`` policy *is* the supervisor's rule, not a copy of it.

The model, in one paragraph: payloads arrive on the input queue at the fan-out rate (ten per
SendMessageBatch). Consumers appear when a policy's controller asks for them, after a start-up time,
and each holds ``slots`` messages at once (worker threads; a Lambda environment holds one batch).
A free slot takes visible messages at once (receives return up to ten); a message keeps its slot for
its service time (drawn from a :class:`ServiceTime`) plus a per-message overhead (the SQS round trips,
an input calibrated per endpoint). The run is drained when every payload has been processed. Every
policy is simulated ``runs`` times with different seeds; the p50/p95 of the drain time is the answer.

Policy timings follow the documented behaviour of each scaler (docs/capacity.md lists the sources and
the simplifications); prices are inputs with defaults taken on :data:`PRICES_TAKEN`, never fetched.
"""

from __future__ import annotations

import heapq
import math
import random
import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import date, timedelta
from typing import Any, Protocol

# ---------------------------------------------------------------------------------------- local rule


def desired_workers(backlog: int, backlog_per_worker: int, min_workers: int = 0, max_workers: int = 1) -> int:
    """The autoscaling rule: ``ceil(backlog / backlog_per_worker)`` clamped to ``[min, max]``.

    The same rule KEDA's ``aws-sqs-queue`` scaler (``queueLength``) and ECS target tracking on
    "backlog per task" apply; ``backlog`` should include in-flight messages so running work is not
    scaled away.
    """
    if backlog_per_worker < 1:
        raise ValueError(f"backlog_per_worker must be >= 1, got {backlog_per_worker}")
    if min_workers < 0 or max_workers < min_workers:
        raise ValueError(f"need 0 <= min_workers <= max_workers, got {min_workers}..{max_workers}")
    return max(min_workers, min(max_workers, math.ceil(max(backlog, 0) / backlog_per_worker)))


@dataclass
class ScaleState:
    """Pure scale-down damping: remembers since when the target has been below the current size."""

    cooldown_s: float
    below_since: float | None = None

    def target(self, desired: int, current: int, now: float) -> int:
        """How many workers to run now, given the rule's ``desired`` and the ``current`` count."""
        if desired >= current:
            self.below_since = None
            return desired
        if self.below_since is None:
            self.below_since = now
        if now - self.below_since >= self.cooldown_s:
            self.below_since = None
            return desired
        return current


@dataclass
class LocalScaling:
    """The ``batchq workers`` supervisor's rule: :func:`desired_workers` on ``visible + in_flight``,
    scale-up at once, scale-down after the lower target held for ``cooldown_s``.

    :param backlog_per_worker: B in ``ceil(backlog / B)``.
    :param min_workers: floor.
    :param max_workers: ceiling.
    :param cooldown_s: how long a lower target must hold before workers are stopped.
    """

    backlog_per_worker: int
    min_workers: int
    max_workers: int
    cooldown_s: float
    state: ScaleState = field(init=False)

    def __post_init__(self) -> None:
        desired_workers(0, self.backlog_per_worker, self.min_workers, self.max_workers)  # validates
        self.state = ScaleState(self.cooldown_s)

    def target(self, visible: int, in_flight: int, current: int, now: float) -> tuple[int, int]:
        """``(desired, target)``: the rule's answer and what to run now after damping."""
        desired = desired_workers(visible + in_flight, self.backlog_per_worker, self.min_workers, self.max_workers)
        return desired, self.state.target(desired, current, now)


# ------------------------------------------------------------------------------------ service time


@dataclass(frozen=True)
class ServiceTime:
    """Per-payload processing time (seconds): a constant, a log-normal, or observed samples.

    :param constant_s: every payload takes this long.
    :param mu: log-normal location (``ln`` of the median).
    :param sigma: log-normal shape.
    :param samples: observed durations (e.g. from a previous run's ledger), drawn with replacement.
    """

    constant_s: float | None = None
    mu: float | None = None
    sigma: float | None = None
    samples: tuple[float, ...] = ()

    @classmethod
    def constant(cls, seconds: float) -> ServiceTime:
        if not seconds > 0:
            raise ValueError(f"seconds per payload must be > 0, got {seconds}")
        return cls(constant_s=float(seconds))

    @classmethod
    def lognormal(cls, mu: float, sigma: float) -> ServiceTime:
        if sigma < 0:
            raise ValueError(f"sigma must be >= 0, got {sigma}")
        return cls(mu=float(mu), sigma=float(sigma))

    @classmethod
    def from_percentiles(cls, p50: float, p95: float) -> ServiceTime:
        """A log-normal through the given median and 95th percentile."""
        if not 0 < p50 <= p95:
            raise ValueError(f"need 0 < p50 <= p95, got p50={p50}, p95={p95}")
        return cls.lognormal(math.log(p50), math.log(p95 / p50) / 1.6448536269514722)

    @classmethod
    def empirical(cls, samples: Sequence[float]) -> ServiceTime:
        kept = tuple(float(s) for s in samples if s is not None and s >= 0)
        if not kept:
            raise ValueError("no usable durations (need at least one started/finished pair)")
        return cls(samples=kept)

    def draw(self, rng: random.Random) -> float:
        if self.constant_s is not None:
            return self.constant_s
        if self.samples:
            return self.samples[rng.randrange(len(self.samples))]
        assert self.mu is not None and self.sigma is not None
        return rng.lognormvariate(self.mu, self.sigma)

    @property
    def mean_s(self) -> float:
        if self.constant_s is not None:
            return self.constant_s
        if self.samples:
            return statistics.fmean(self.samples)
        assert self.mu is not None and self.sigma is not None
        return math.exp(self.mu + self.sigma**2 / 2)

    def describe(self) -> str:
        if self.constant_s is not None:
            return f"constant {self.constant_s:g}s"
        if self.samples:
            return f"empirical, {len(self.samples)} samples, mean {self.mean_s:.3g}s"
        return f"log-normal median {math.exp(self.mu or 0):.3g}s sigma {self.sigma:.3g} (mean {self.mean_s:.3g}s)"


# ------------------------------------------------------------------------------------------ policies


@dataclass(frozen=True)
class Observation:
    """What a controller sees at a tick: the input queue's counts and the consumers it has."""

    now: float
    visible: int
    in_flight: int
    consumers: int  # requested (starting + ready), not stopping


class Controller(Protocol):
    """A policy's scaling state machine. ``target`` returns how many consumers to have from now."""

    interval_s: float

    def target(self, obs: Observation) -> int: ...


@dataclass(frozen=True)
class LocalPolicy:
    """``batchq workers``: processes of ``concurrency`` threads; the rule is :class:`LocalScaling`.

    :param startup_s: from ``Popen`` to the first receive (interpreter + imports + GetQueueAttributes).
    """

    name = "local"
    max_workers: int = 4
    min_workers: int = 0
    backlog_per_worker: int = 100
    concurrency: int = 4
    poll_interval_s: float = 5.0
    cooldown_s: float = 30.0
    startup_s: float = 2.0
    wait_seconds: float = 20.0
    batch_wait_s: float = 0.05
    prefetch: int | None = None
    prefetch_horizon_s: float = 1.0

    @property
    def slots(self) -> int:
        return self.concurrency

    @property
    def max_knob(self) -> int:
        return self.max_workers

    def with_max(self, n: int) -> LocalPolicy:
        return replace(self, max_workers=max(n, self.min_workers))

    def controller(self) -> Controller:
        return _LocalController(self)


class _LocalController:
    def __init__(self, p: LocalPolicy):
        self.interval_s = p.poll_interval_s
        self.rule = LocalScaling(p.backlog_per_worker, p.min_workers, p.max_workers, p.cooldown_s)

    def target(self, obs: Observation) -> int:
        return self.rule.target(obs.visible, obs.in_flight, obs.consumers, obs.now)[1]


@dataclass(frozen=True)
class KedaPolicy:
    """KEDA ``aws-sqs-queue`` ScaledObject driving an HPA.

    KEDA activates 0 → 1 at its ``polling_interval_s`` and returns to 0 after ``cooldown_s`` of an
    empty queue; the HPA, every ``hpa_sync_s``, wants ``ceil((visible + in_flight) / queue_length)``
    (``scaleOnInFlight`` is KEDA's default), scales up by at most ``max(scale_up_pods,
    scale_up_percent% of current)`` per period (the HPA default policy) and down only to the highest
    wish of the last ``stabilization_down_s``.
    """

    name = "keda"
    max_replicas: int = 10
    min_replicas: int = 0
    queue_length: int = 100
    concurrency: int = 4
    polling_interval_s: float = 30.0
    hpa_sync_s: float = 15.0
    scale_up_pods: int = 4
    scale_up_percent: float = 100.0
    stabilization_down_s: float = 300.0
    cooldown_s: float = 300.0
    startup_s: float = 30.0
    wait_seconds: float = 20.0
    batch_wait_s: float = 0.05
    prefetch: int | None = None
    prefetch_horizon_s: float = 1.0

    @property
    def slots(self) -> int:
        return self.concurrency

    @property
    def max_knob(self) -> int:
        return self.max_replicas

    def with_max(self, n: int) -> KedaPolicy:
        return replace(self, max_replicas=max(n, self.min_replicas, 1))

    def controller(self) -> Controller:
        return _KedaController(self)


class _KedaController:
    def __init__(self, p: KedaPolicy):
        self.p = p
        self.interval_s = min(p.hpa_sync_s, p.polling_interval_s)
        self.next_activation = 0.0
        self.next_hpa = 0.0
        self.empty_since: float | None = None
        self.wishes: list[tuple[float, int]] = []
        self.current = p.min_replicas

    def target(self, obs: Observation) -> int:
        p = self.p
        metric = obs.visible + obs.in_flight
        current = obs.consumers
        if obs.now >= self.next_activation:
            self.next_activation = obs.now + p.polling_interval_s
            if metric > 0:
                self.empty_since = None
                if current == 0:
                    current = 1
            elif current > p.min_replicas:
                if self.empty_since is None:
                    self.empty_since = obs.now
                if obs.now - self.empty_since >= p.cooldown_s:
                    self.wishes.clear()
                    return p.min_replicas
        if current == 0 or obs.now < self.next_hpa:
            return current
        self.next_hpa = obs.now + p.hpa_sync_s
        wish = max(1, p.min_replicas, min(p.max_replicas, math.ceil(metric / p.queue_length)))
        self.wishes.append((obs.now, wish))
        self.wishes = [(t, w) for t, w in self.wishes if obs.now - t <= p.stabilization_down_s]
        if wish > current:
            step = max(p.scale_up_pods, math.ceil(current * p.scale_up_percent / 100))
            return min(wish, current + step)
        return max(w for _, w in self.wishes) if wish < current else current


@dataclass(frozen=True)
class EcsPolicy:
    """ECS service target tracking on a "backlog per task" metric published every minute.

    Scale-out happens after ``alarm_datapoints`` consecutive one-minute datapoints above the target
    (CloudWatch's high alarm for target tracking), to ``ceil(backlog / backlog_per_task)``, at most once
    per ``scale_out_cooldown_s``. Scale-in (15 datapoints below) ends a run's tasks; it only matters
    for cost, modelled as ``scale_in_after_s`` of an empty queue.
    """

    name = "ecs"
    max_tasks: int = 10
    min_tasks: int = 1
    backlog_per_task: int = 100
    concurrency: int = 4
    metric_period_s: float = 60.0
    alarm_datapoints: int = 3
    scale_out_cooldown_s: float = 300.0
    scale_in_after_s: float = 900.0
    startup_s: float = 60.0
    wait_seconds: float = 20.0
    batch_wait_s: float = 0.05
    prefetch: int | None = None
    prefetch_horizon_s: float = 1.0

    @property
    def slots(self) -> int:
        return self.concurrency

    @property
    def max_knob(self) -> int:
        return self.max_tasks

    def with_max(self, n: int) -> EcsPolicy:
        return replace(self, max_tasks=max(n, self.min_tasks, 1))

    def controller(self) -> Controller:
        return _EcsController(self)


class _EcsController:
    def __init__(self, p: EcsPolicy):
        self.p = p
        self.interval_s = p.metric_period_s
        self.above = 0
        self.last_out = -math.inf
        self.empty_since: float | None = None

    def target(self, obs: Observation) -> int:
        p = self.p
        backlog = obs.visible + obs.in_flight
        current = obs.consumers
        per_task = backlog / max(current, 1)
        self.above = self.above + 1 if per_task > p.backlog_per_task else 0
        if backlog == 0:
            self.empty_since = obs.now if self.empty_since is None else self.empty_since
            if obs.now - self.empty_since >= p.scale_in_after_s:
                return p.min_tasks
        else:
            self.empty_since = None
        if self.above >= p.alarm_datapoints and obs.now - self.last_out >= p.scale_out_cooldown_s:
            want = min(p.max_tasks, max(p.min_tasks, math.ceil(backlog / p.backlog_per_task)))
            if want > current:
                self.last_out = obs.now
                self.above = 0
                return want
        return max(current, p.min_tasks)


@dataclass(frozen=True)
class LambdaPolicy:
    """Lambda behind an SQS event source mapping, standard (automatic) scaling.

    Concurrency starts at ``initial`` (five concurrent batches) and, each minute the queue still has
    visible messages, grows by ``ramp_per_min`` (300) up to ``cap``: the smallest of 1,250 (the ESM's
    own limit), the function's reserved concurrency and the ESM's ``MaximumConcurrency``. One
    concurrency unit runs one batch of up to ``batch_size`` messages, one after the other (the adapter
    processes a batch's records in order), so it holds its slot for the sum of their service times.

    :param batching_window_s: ``MaximumBatchingWindowInSeconds``: a poller with fewer than
        ``batch_size`` messages waits up to this long for more.
    """

    name = "lambda"
    maximum_concurrency: int | None = None
    reserved_concurrency: int | None = None
    batch_size: int = 10
    batching_window_s: float = 0.0
    initial: int = 5
    ramp_per_min: int = 300
    esm_limit: int = 1250
    memory_mb: int = 1024
    cold_start_s: float = 0.0
    idle_pollers: int = 5

    @property
    def cap(self) -> int:
        return min(x for x in (self.esm_limit, self.reserved_concurrency, self.maximum_concurrency) if x is not None)

    @property
    def slots(self) -> int:
        return 1

    @property
    def max_knob(self) -> int:
        return self.cap

    def with_max(self, n: int) -> LambdaPolicy:
        return replace(self, maximum_concurrency=n)

    def controller(self) -> Controller:
        return _RampController(min(self.initial, self.cap), self.ramp_per_min, self.cap)


@dataclass(frozen=True)
class LambdaProvisionedPolicy(LambdaPolicy):
    """Lambda ESM in provisioned mode: ``min_pollers`` event pollers always ready, each good for up to
    ``invocations_per_poller`` (10) concurrent invocations; scaling adds up to 1,000 concurrency a
    minute up to ``max_pollers`` × 10 (and the function's limits). Pollers are billed per hour (EPU)."""

    name = "lambda-provisioned"
    min_pollers: int = 2
    max_pollers: int = 200
    invocations_per_poller: int = 10
    ramp_per_min: int = 1000
    esm_limit: int = 20000

    @property
    def cap(self) -> int:
        limits = (self.esm_limit, self.max_pollers * self.invocations_per_poller, self.reserved_concurrency,
                  self.maximum_concurrency)
        return min(x for x in limits if x is not None)

    @property
    def max_knob(self) -> int:
        return self.max_pollers

    @property
    def idle_pollers_count(self) -> int:
        return self.min_pollers

    def with_max(self, n: int) -> LambdaProvisionedPolicy:
        return replace(self, max_pollers=max(n, self.min_pollers))

    def controller(self) -> Controller:
        initial = min(self.min_pollers * self.invocations_per_poller, self.cap)
        return _RampController(initial, self.ramp_per_min, self.cap)


class _RampController:
    """ESM concurrency: a start value, then ``+ramp`` each minute that still sees visible messages."""

    interval_s = 60.0

    def __init__(self, initial: int, ramp: int, cap: int):
        self.level = initial
        self.ramp = ramp
        self.cap = cap
        self.started = False

    def target(self, obs: Observation) -> int:
        if not self.started:
            self.started = True  # the first tick sets the initial level; the ramp counts from there
            return self.level
        if obs.visible > 0:
            self.level = min(self.cap, self.level + self.ramp)
        return self.level


Policy = LocalPolicy | KedaPolicy | EcsPolicy | LambdaPolicy
POLICIES: dict[str, type] = {
    "local": LocalPolicy, "keda": KedaPolicy, "ecs": EcsPolicy, "lambda": LambdaPolicy,
    "lambda-provisioned": LambdaProvisionedPolicy,
}


def is_lambda(policy: Any) -> bool:
    return isinstance(policy, LambdaPolicy)


def worker_prefetch(policy: Any, service: ServiceTime) -> int:
    """What a ``batchq worker`` holds beyond its running handlers: the fixed ``--prefetch``, or the
    runner's own adaptive rule (:func:`batchq.worker.prefetch.prefetch_limit`) at the mean service time."""
    if is_lambda(policy):
        return 0
    if policy.prefetch is not None:
        return policy.prefetch
    from batchq.worker.prefetch import prefetch_limit  # lazy: the worker package imports the SQS layer

    return prefetch_limit(policy.concurrency, service.mean_s, policy.prefetch_horizon_s)


def policy_floor(policy: Any) -> int:
    """Consumers a policy keeps between runs (Lambda standard keeps none: its pollers are AWS's)."""
    if isinstance(policy, LambdaProvisionedPolicy):
        return 0  # pollers are not function concurrency; the controller's first tick sets the level
    if isinstance(policy, LambdaPolicy):
        return 0
    return int(getattr(policy, "min_workers", getattr(policy, "min_replicas", getattr(policy, "min_tasks", 0))))


# ------------------------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class Workload:
    """One run to plan.

    :param payloads: messages the run fans out.
    :param service: per-payload processing time.
    :param fanout_rate: messages/s the fan-out puts on the queue (``inf``: all at once).
    :param overhead_s: per-message SQS overhead a slot spends besides the handler (receive, result
        send, delete round trips shared by a batch): ~0 on AWS for long jobs, tens of ms on moto.
    :param payload_bytes: average body size (SQS bills each 64 KiB of a request as one request).
    :param result_bytes: average result size.
    """

    payloads: int
    service: ServiceTime
    fanout_rate: float = math.inf
    overhead_s: float = 0.0
    payload_bytes: int = 600
    result_bytes: int = 800

    def __post_init__(self) -> None:
        if self.payloads < 1:
            raise ValueError(f"payloads must be >= 1, got {self.payloads}")
        if not self.fanout_rate > 0:
            raise ValueError(f"fan-out rate must be > 0 messages/s, got {self.fanout_rate}")
        if self.overhead_s < 0:
            raise ValueError(f"overhead must be >= 0, got {self.overhead_s}")


# ------------------------------------------------------------------------------------------ simulator


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
        # The runner's refill rule: a useful batch (half the prefetch, at most ten) is free, or the
        # handlers are about to starve (nothing buffered) and at least one slot is free.
        free = self.slots + self.prefetch - self.busy - self.buffered
        return free >= min(10, max(1, -(-self.prefetch // 2))) or (free >= 1 and self.buffered == 0)


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
    receives = result_sends = deletes = empty_polls_x = 0.0
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
    if not lam:
        empty_polls_x = idle_poll_seconds / wait_s
    send_chunk = max(1, math.ceil(10 * workload.payload_bytes / 65536))
    result_chunk = max(1, math.ceil(10 * workload.result_bytes / 65536))
    requests = {
        "fanout_send": math.ceil(n / 10) * send_chunk,
        "receive": int(receives) * send_chunk,
        "empty_receive": int(empty_polls_x),
        "result_send": int(result_sends) * result_chunk,
        "delete": int(deletes),
    }
    if lam:
        peak_consumers = peak_busy  # the ESM's level is a limit; what ran concurrently is what counts
    return RunResult(drain, peak_backlog, peak_consumers, consumer_seconds, busy_seconds, invocations, requests, curve)


# ---------------------------------------------------------------------------------------- schedule


def _cron_field(spec: str, lo: int, hi: int, names: dict[str, int] | None = None) -> set[int]:
    out: set[int] = set()
    for part in spec.split(","):
        step = 1
        if "/" in part:
            part, step_s = part.split("/", 1)
            step = int(step_s)
        if names:
            for name, value in names.items():
                part = part.lower().replace(name, str(value))
        if part == "*":
            a, b = lo, hi
        elif "-" in part:
            a_s, b_s = part.split("-", 1)
            a, b = int(a_s), int(b_s)
        else:
            a = b = int(part)
            if step > 1:
                b = hi
        if not (lo <= a <= hi and lo <= b <= hi + (1 if hi == 6 else 0)):
            raise ValueError(f"cron field {spec!r} out of range {lo}-{hi}")
        out.update(x % 7 if hi == 6 else x for x in range(a, b + 1, step))
    return out


_PRESETS = {"@hourly": "0 * * * *", "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@weekly": "0 0 * * 0",
            "@monthly": "0 0 1 * *", "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *"}
_DOW = {n: i for i, n in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))}
_MON = {n: i + 1 for i, n in enumerate(("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"))}


def runs_per_month(schedule: str) -> float:
    """Average runs per month (a year's matches / 12) of a five-field cron expression or preset."""
    expr = _PRESETS.get(schedule.strip(), schedule.strip())
    fields = expr.split()
    if len(fields) != 5:
        raise ValueError(f"schedule {schedule!r} is not a five-field cron expression or a preset like @daily")
    try:
        minutes = _cron_field(fields[0], 0, 59)
        hours = _cron_field(fields[1], 0, 23)
        doms = _cron_field(fields[2], 1, 31)
        months = _cron_field(fields[3], 1, 12, _MON)
        dows = _cron_field(fields[4], 0, 6, _DOW)
    except ValueError as exc:
        raise ValueError(f"schedule {schedule!r}: {exc}") from None
    dom_any, dow_any = fields[2] == "*", fields[4] == "*"
    per_day = len(minutes) * len(hours)
    days = 0
    d = date(2027, 1, 1)  # a non-leap year; the average month is what a budget needs
    for _ in range(365):
        if d.month in months:
            dom_ok, dow_ok = d.day in doms, (d.isoweekday() % 7) in dows
            # cron: when both day fields are restricted, either may match
            if (dom_ok or dow_ok) if not (dom_any or dow_any) else (dom_ok and dow_ok):
                days += 1
        d += timedelta(days=1)
    return days * per_day / 12


# -------------------------------------------------------------------------------------------- prices

#: When the default prices were taken (us-east-1 list prices, from AWS's public pricing pages as known
#: on that date; they are inputs — check them against your account before budgeting).
PRICES_TAKEN = "2026-11-30"


@dataclass(frozen=True)
class Prices:
    """Unit prices, USD. Defaults: us-east-1 list prices as of :data:`PRICES_TAKEN` (free tiers ignored).

    :param sqs_per_million: standard queue requests (each 64 KiB chunk of a request is one request).
    :param lambda_gb_second: x86 duration.
    :param lambda_per_million: invocations.
    :param lambda_epu_hour: provisioned-mode event poller unit, per hour (estimate; verify).
    :param consumer_hour: one worker process / pod / ECS task for an hour (default: a Fargate task of
        1 vCPU and 2 GB: 0.04048 + 2 × 0.004445).
    """

    sqs_per_million: float = 0.40
    lambda_gb_second: float = 0.0000166667
    lambda_per_million: float = 0.20
    lambda_epu_hour: float = 0.00925
    consumer_hour: float = 0.04937


# ------------------------------------------------------------------------------------------- planning


@dataclass(frozen=True)
class Overheads:
    """SQS requests outside the workers: the drainer and the sensors.

    :param drain_per_call: results the drainer reads (and deletes) per call.
    :param sensor_poke_s: seconds between the drain sensor's GetQueueAttributes pokes (input + DLQ).
    :param sensor_queues: queues each poke reads.
    """

    drain_per_call: int = 10
    sensor_poke_s: float = 30.0
    sensor_queues: int = 2


def _pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    pos = (len(ordered) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def _run_requests(r: RunResult, workload: Workload, overheads: Overheads) -> dict[str, int]:
    req = dict(r.requests)
    drain_calls = math.ceil(workload.payloads / overheads.drain_per_call)
    req["drain_receive"] = drain_calls
    req["drain_delete"] = drain_calls
    req["sensor"] = math.ceil(r.drain_s / overheads.sensor_poke_s) * overheads.sensor_queues
    return req


def _compute_cost(policy: Any, r: RunResult, requests: int, prices: Prices) -> dict[str, float]:
    sqs = requests * prices.sqs_per_million / 1e6
    if is_lambda(policy):
        gb_s = r.busy_seconds * policy.memory_mb / 1024
        compute = gb_s * prices.lambda_gb_second + r.invocations * prices.lambda_per_million / 1e6
        if isinstance(policy, LambdaProvisionedPolicy):
            # Pollers above the minimum while the run lasts (the minimum is a monthly fixed cost).
            extra = max(0, math.ceil(r.peak_consumers / policy.invocations_per_poller) - policy.min_pollers)
            compute += extra * r.drain_s / 3600 * prices.lambda_epu_hour
        return {"sqs_usd": sqs, "compute_usd": compute, "lambda_gb_seconds": gb_s, "lambda_invocations": r.invocations}
    return {"sqs_usd": sqs, "compute_usd": r.consumer_seconds / 3600 * prices.consumer_hour,
            "consumer_hours": r.consumer_seconds / 3600}


def _idle_month(policy: Any, prices: Prices, month_s: float) -> dict[str, float]:
    """What the policy costs between runs: consumers kept at the minimum, long-polling an empty queue."""
    if isinstance(policy, LambdaProvisionedPolicy):
        pollers = policy.min_pollers
        return {"idle_consumers": pollers, "idle_requests": pollers * month_s / 20,
                "idle_compute_usd": pollers * month_s / 3600 * prices.lambda_epu_hour}
    if is_lambda(policy):
        return {"idle_consumers": policy.idle_pollers, "idle_requests": policy.idle_pollers * month_s / 20,
                "idle_compute_usd": 0.0}
    floor = policy_floor(policy)
    return {"idle_consumers": floor, "idle_requests": floor * month_s / policy.wait_seconds,
            "idle_compute_usd": floor * month_s / 3600 * prices.consumer_hour}


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

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["curve"] = [list(p) for p in self.curve]
        return out


def simulate(workload: Workload, policy: Any, runs: int = 50, seed: int = 0) -> list[RunResult]:
    """``runs`` seeded runs (seeds ``seed .. seed + runs - 1``)."""
    if runs < 1:
        raise ValueError(f"runs must be >= 1, got {runs}")
    return [simulate_run(workload, policy, seed + i) for i in range(runs)]


def smallest_max_meeting(workload: Workload, policy: Any, deadline_s: float, runs: int = 20, seed: int = 0,
                         upper: int | None = None) -> int | None:
    """The smallest maximum (workers / replicas / tasks / concurrency / pollers) whose p95 drain time
    meets ``deadline_s``; ``None`` if even ``upper`` (default: the policy's current max × 4, at least
    64) does not. Bisection: more consumers never drain later in this model."""

    def meets(m: int) -> bool:
        drains = [r.drain_s for r in simulate(workload, policy.with_max(m), runs, seed)]
        return _pct(drains, 0.95) <= deadline_s

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
) -> Plan:
    """Simulate ``runs`` runs and summarise: drain p50/p95, peaks, the median run's curve, requests and
    cost per run (and per month when ``runs_per_month_`` is given), the deadline verdict and the
    smallest maximum that meets it."""
    prices = prices or Prices()
    overheads = overheads or Overheads()
    results = simulate(workload, policy, runs, seed)
    drains = [r.drain_s for r in results]
    median_run = sorted(results, key=lambda r: r.drain_s)[len(results) // 2]
    requests = _run_requests(median_run, workload, overheads)
    total_requests = sum(requests.values())
    cost = _compute_cost(policy, median_run, total_requests, prices)
    cost["total_usd"] = cost["sqs_usd"] + cost["compute_usd"]
    month = None
    if runs_per_month_ is not None:
        month_s = 30.4167 * 86400
        idle = _idle_month(policy, prices, max(0.0, month_s - runs_per_month_ * median_run.drain_s))
        month = {
            "runs": runs_per_month_,
            "runs_usd": cost["total_usd"] * runs_per_month_,
            "idle_requests": idle["idle_requests"],
            "idle_sqs_usd": idle["idle_requests"] * prices.sqs_per_million / 1e6,
            "idle_compute_usd": idle["idle_compute_usd"],
            "idle_consumers": idle["idle_consumers"],
        }
        month["total_usd"] = month["runs_usd"] + month["idle_sqs_usd"] + month["idle_compute_usd"]
    p95 = _pct(drains, 0.95)
    met = None if deadline_s is None else p95 <= deadline_s
    smallest = None
    if deadline_s is not None and search:
        # The same runs and seeds as the verdict above, so the two cannot disagree on the current maximum.
        smallest = smallest_max_meeting(workload, policy, deadline_s, runs=runs, seed=seed)
    inputs = {"payloads": workload.payloads, "service": workload.service.describe(),
              "fanout_rate": None if math.isinf(workload.fanout_rate) else workload.fanout_rate,
              "overhead_s": workload.overhead_s,
              "policy": {k: v for k, v in asdict(policy).items()}, "prices": asdict(prices),
              "prices_taken": PRICES_TAKEN}
    return Plan(
        policy=policy.name, inputs=inputs, runs=runs,
        drain_p50_s=_pct(drains, 0.5), drain_p95_s=p95, drain_max_s=max(drains),
        peak_backlog=max(r.peak_backlog for r in results), peak_consumers=max(r.peak_consumers for r in results),
        curve=median_run.curve, requests_per_run=requests,
        requests_per_payload=total_requests / workload.payloads, cost_per_run=cost, cost_per_month=month,
        deadline_s=deadline_s, deadline_met=met, smallest_max_meeting_deadline=smallest,
    )


# ------------------------------------------------------------------------------------------------ SVG


def render_svg(curve: Sequence[tuple[float, int, int]], *, title: str = "", deadline_s: float | None = None,
               width: int = 720, height: int = 320) -> str:
    """The depth curve (backlog, and consumers on a second scale) as a standalone SVG document."""
    from xml.sax.saxutils import escape

    pad_l, pad_r, pad_t, pad_b = 60, 60, 30, 40
    w, h = width - pad_l - pad_r, height - pad_t - pad_b
    t_max = max([p[0] for p in curve] + [deadline_s or 0, 1e-9])
    b_max = max([p[1] for p in curve] + [1])
    c_max = max([p[2] for p in curve] + [1])

    def x(t: float) -> float:
        return pad_l + w * t / t_max

    def line(values: Callable[[tuple[float, int, int]], float], top: float) -> str:
        return " ".join(f"{x(p[0]):.1f},{pad_t + h - h * values(p) / top:.1f}" for p in curve)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="11">',
        f'<text x="{pad_l}" y="18" font-size="13">{escape(title)}</text>',
        f'<rect x="{pad_l}" y="{pad_t}" width="{w}" height="{h}" fill="none" stroke="#999"/>',
        f'<polyline fill="none" stroke="#1f77b4" stroke-width="2" points="{line(lambda p: p[1], b_max)}"/>',
        f'<polyline fill="none" stroke="#ff7f0e" stroke-width="1.5" stroke-dasharray="4 2" points="{line(lambda p: p[2], c_max)}"/>',
        f'<text x="{pad_l - 5}" y="{pad_t + 4}" text-anchor="end" fill="#1f77b4">{b_max}</text>',
        f'<text x="{pad_l - 5}" y="{pad_t + h}" text-anchor="end">0</text>',
        f'<text x="{pad_l + w + 5}" y="{pad_t + 4}" fill="#ff7f0e">{c_max}</text>',
        f'<text x="{pad_l}" y="{height - 10}">0 s</text>',
        f'<text x="{pad_l + w}" y="{height - 10}" text-anchor="end">{t_max:.0f} s</text>',
        f'<text x="{pad_l + w / 2}" y="{height - 10}" text-anchor="middle">backlog (solid) / consumers (dashed)</text>',
    ]
    if deadline_s is not None:
        parts.append(f'<line x1="{x(deadline_s):.1f}" y1="{pad_t}" x2="{x(deadline_s):.1f}" y2="{pad_t + h}" stroke="#d62728"/>')
        parts.append(f'<text x="{x(deadline_s):.1f}" y="{pad_t - 4}" fill="#d62728" text-anchor="middle">deadline</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"
