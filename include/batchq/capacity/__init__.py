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

from batchq.capacity.cost import PRICES_TAKEN, Overheads, Prices, runs_per_month
from batchq.capacity.plan import Plan, plan_capacity, simulate, smallest_max_meeting
from batchq.capacity.policies import (
    POLICIES,
    Controller,
    EcsPolicy,
    KedaPolicy,
    LambdaPolicy,
    LambdaProvisionedPolicy,
    LocalPolicy,
    Observation,
    is_lambda,
)
from batchq.capacity.simulate import RunResult, simulate_run
from batchq.capacity.svg import render_svg
from batchq.capacity.workload import ServiceTime, Workload
from batchq.worker.scaling import LocalScaling, ScaleState, desired_workers

__all__ = [
    "POLICIES", "PRICES_TAKEN", "Controller", "EcsPolicy", "KedaPolicy", "LambdaPolicy", "LambdaProvisionedPolicy",
    "LocalPolicy", "LocalScaling", "Observation", "Overheads", "Plan", "Prices", "RunResult", "ScaleState",
    "ServiceTime", "Workload", "desired_workers", "is_lambda", "plan_capacity", "render_svg", "runs_per_month",
    "simulate", "simulate_run", "smallest_max_meeting",
]
