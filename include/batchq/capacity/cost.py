"""Schedules (cron → runs per month), unit prices with the date they were taken, SQS request counts and cost."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from batchq.capacity.policies import LambdaProvisionedPolicy, is_lambda, policy_floor
from batchq.capacity.simulate import RunResult
from batchq.capacity.workload import Workload


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


@dataclass(frozen=True)
class Overheads:
    """SQS requests outside the workers: the drainer and the sensors.

    :param drain_per_call: results the drainer reads (and deletes) per call.
    :param sensor_poke_s: seconds between the drain sensor's GetQueueAttributes pokes (input + DLQ).
    :param sensor_queues: queues each poke reads.
    """

    drain_per_call: int = 10
    sensor_poke_s: float = 10.0  # the drain sensor's default poll ([batchq] drain_poll_interval_s)
    sensor_queues: int = 2


def run_requests(r: RunResult, workload: Workload, overheads: Overheads) -> dict[str, int]:
    req = dict(r.requests)
    drain_calls = math.ceil(workload.payloads / overheads.drain_per_call)
    req["drain_receive"] = drain_calls
    req["drain_delete"] = drain_calls
    req["sensor"] = math.ceil(r.drain_s / overheads.sensor_poke_s) * overheads.sensor_queues
    return req


def run_cost(policy: Any, r: RunResult, requests: int, prices: Prices) -> dict[str, float]:
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


def idle_month_cost(policy: Any, prices: Prices, month_s: float) -> dict[str, float]:
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
