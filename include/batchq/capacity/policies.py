"""Scaling policies: one controller per scaler (local supervisor, KEDA + HPA, ECS target tracking, Lambda
ESM standard and provisioned), each a small state machine the simulator ticks."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Protocol

from batchq.capacity.workload import ServiceTime
from batchq.worker.scaling import LocalScaling


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
class WorkerFleet:
    """What every fleet of long-running ``batchq worker`` consumers (processes, pods, ECS tasks) shares:
    threads per consumer and the runner's receive behaviour, which the simulator models the same way
    for each of them. Lambda is not a fleet: its concurrency is per batch."""

    concurrency: int = 4
    wait_seconds: float = 20.0
    batch_wait_s: float = 0.05
    prefetch: int | None = None
    prefetch_horizon_s: float = 1.0

    @property
    def slots(self) -> int:
        return self.concurrency


@dataclass(frozen=True)
class LocalPolicy(WorkerFleet):
    """``batchq workers``: processes of ``concurrency`` threads; the rule is :class:`LocalScaling`.

    :param startup_s: from ``Popen`` to the first receive (interpreter + imports + GetQueueAttributes).
    """

    name = "local"
    #: what the searched maximum is called where a user sets it
    max_setting = "max workers (batchq workers --max)"
    max_workers: int = 4
    min_workers: int = 0
    backlog_per_worker: int = 100
    poll_interval_s: float = 5.0
    cooldown_s: float = 30.0
    startup_s: float = 2.0

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
class KedaPolicy(WorkerFleet):
    """KEDA ``aws-sqs-queue`` ScaledObject driving an HPA.

    KEDA activates 0 → 1 at its ``polling_interval_s`` and returns to 0 after ``cooldown_s`` of an
    empty queue; the HPA, every ``hpa_sync_s``, wants ``ceil((visible + in_flight) / queue_length)``
    (``scaleOnInFlight`` is KEDA's default), scales up by at most ``max(scale_up_pods,
    scale_up_percent% of current)`` per period (the HPA default policy) and down only to the highest
    wish of the last ``stabilization_down_s``.
    """

    name = "keda"
    max_setting = "max replicas (the ScaledObject's maxReplicaCount)"
    max_replicas: int = 10
    min_replicas: int = 0
    queue_length: int = 100
    polling_interval_s: float = 30.0
    hpa_sync_s: float = 15.0
    scale_up_pods: int = 4
    scale_up_percent: float = 100.0
    stabilization_down_s: float = 300.0
    cooldown_s: float = 300.0
    startup_s: float = 30.0

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
class EcsPolicy(WorkerFleet):
    """ECS service target tracking on a "backlog per task" metric published every minute.

    Scale-out happens after ``alarm_datapoints`` consecutive one-minute datapoints above the target
    (CloudWatch's high alarm for target tracking), to ``ceil(backlog / backlog_per_task)``, at most once
    per ``scale_out_cooldown_s``. Scale-in (15 datapoints below) ends a run's tasks; it only matters
    for cost, modelled as ``scale_in_after_s`` of an empty queue.
    """

    name = "ecs"
    max_setting = "max tasks (the service's scaling MaxCapacity)"
    max_tasks: int = 10
    min_tasks: int = 1
    backlog_per_task: int = 100
    metric_period_s: float = 60.0
    alarm_datapoints: int = 3
    scale_out_cooldown_s: float = 300.0
    scale_in_after_s: float = 900.0
    startup_s: float = 60.0

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
    max_setting = ("maximum concurrency (the event source mapping's MaximumConcurrency; reserved "
                   "concurrency at least this)")
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
    max_setting = "max pollers (the event source mapping's MaximumPollers)"
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
    from batchq.worker.prefetch import (
        prefetch_limit,  # lazy: the worker package imports the SQS layer
    )

    return prefetch_limit(policy.concurrency, service.mean_s, policy.prefetch_horizon_s)


def policy_floor(policy: Any) -> int:
    """Consumers a policy keeps between runs (Lambda standard keeps none: its pollers are AWS's)."""
    if isinstance(policy, LambdaProvisionedPolicy):
        return 0  # pollers are not function concurrency; the controller's first tick sets the level
    if isinstance(policy, LambdaPolicy):
        return 0
    return int(getattr(policy, "min_workers", getattr(policy, "min_replicas", getattr(policy, "min_tasks", 0))))
