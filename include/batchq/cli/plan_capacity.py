"""``batchq plan-capacity``: when will a run be drained, with how many consumers, for how much.

Simulates the run under one scaling policy (:mod:`batchq.capacity`) and prints drain time p50/p95,
peak backlog and consumers, the deadline verdict, the smallest maximum that meets it, SQS requests
and cost per run and per month. ``--json`` for machines, ``--svg`` for the depth curve. No Airflow,
no network (the ledger read of ``--from-run`` is the only I/O besides files).
"""

from __future__ import annotations

import argparse
import json

from batchq.cli._urls import add_url_option
import math
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from batchq.capacity import (
    POLICIES,
    PRICES_TAKEN,
    EcsPolicy,
    KedaPolicy,
    LambdaPolicy,
    LambdaProvisionedPolicy,
    LocalPolicy,
    Prices,
    ServiceTime,
    Workload,
    plan_capacity,
    render_svg,
    runs_per_month,
)
from batchq.clock import parse_clock, parse_deadline
from batchq.errors import BatchqError


def _hhmm(value: str) -> int:
    """argparse type: ``HH:MM`` → minutes after midnight (:func:`batchq.clock.parse_clock`)."""
    try:
        h, m = parse_clock(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return h * 60 + m


def _deadline(value: str) -> int | tuple[str, float]:
    """argparse type: ``HH:MM`` → minutes after midnight (with ``--start``), or a duration such as
    ``1h`` / ``90m`` → ``("duration", seconds)`` from the run's start (:func:`batchq.clock.parse_deadline`)."""
    try:
        kind, amount = parse_deadline(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return int(amount) if kind == "clock" else (kind, amount)


def _positive(kind: type) -> Any:
    def parse(value: str) -> Any:
        try:
            v = kind(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{value!r} is not a number") from None
        if not v > 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
        return v

    return parse


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "plan-capacity", help="predict a run's drain time, consumers and cost under a scaling policy",
        description="Simulate a run (seeded, --runs times) under a scaling policy: drain time p50/p95, peak "
                    "backlog and consumers, deadline verdict, smallest maximum meeting it, SQS requests and cost. "
                    f"Default prices are us-east-1 list prices taken {PRICES_TAKEN}; pass your own.",
    )
    w = p.add_argument_group("the run")
    src = w.add_mutually_exclusive_group(required=True)
    src.add_argument("--spec", help="BatchSpec YAML: payloads = its plan's expected count")
    src.add_argument("--payloads", type=_positive(int), help="number of payloads")
    t = w.add_mutually_exclusive_group(required=True)
    t.add_argument("--seconds-per-payload", type=_positive(float), metavar="S", help="every payload takes S seconds")
    t.add_argument("--p50", type=_positive(float), metavar="S", help="median seconds per payload (with --p95: log-normal)")
    t.add_argument("--durations-file", help="JSON list (or one number per line) of observed seconds per payload")
    t.add_argument("--from-run", nargs=2, metavar=("BATCH", "RUN_ID"),
                   help="durations (finished_at - started_at) of a previous run in the sink database (--sink-url)")
    w.add_argument("--p95", type=_positive(float), metavar="S", help="95th percentile seconds per payload (with --p50)")
    add_url_option(w, "sink-url", env="BATCHQ_SINK_URL", required=False, help="SQLAlchemy URL of the sink database (with --from-run)")
    w.add_argument("--fanout-rate", type=_positive(float), default=1000.0, metavar="MSG_PER_S",
                   help="messages/s the fan-out enqueues (default 1000; 'inf' = all at once)")
    w.add_argument("--overhead", type=float, default=0.0, metavar="S",
                   help="per-message SQS overhead a consumer spends besides the handler (default 0)")
    w.add_argument("--payload-bytes", type=int, default=600, help="average payload size (default 600)")
    w.add_argument("--start", type=_hhmm, metavar="HH:MM", help="when the run starts (with --deadline)")
    w.add_argument("--deadline", type=_deadline, metavar="HH:MM|DURATION",
                   help="when it must be drained: a time of day (with --start) or a duration from the start "
                        "such as 1h, 90m, 1h30m")
    w.add_argument("--schedule", help="the DAG's cron schedule or preset (e.g. '0 7 * * *', @daily): cost per month")

    pol = p.add_argument_group("scaling policy")
    pol.add_argument("--policy", choices=sorted(POLICIES), default="local", help="default local")
    pol.add_argument("--max", type=int, help="most consumers: workers / replicas / tasks; Lambda: MaximumConcurrency; "
                                             "provisioned: max pollers")
    pol.add_argument("--min", type=int, help="fewest consumers (provisioned: min pollers)")
    pol.add_argument("--backlog-per-worker", type=int, help="local/KEDA queueLength/ECS backlog-per-task target")
    pol.add_argument("--concurrency", type=int, help="handler threads per worker/pod/task (default 4)")
    pol.add_argument("--poll-interval", type=float, help="local: supervisor poll; KEDA: pollingInterval")
    pol.add_argument("--cooldown", type=float, help="local/KEDA scale-down cooldown seconds")
    pol.add_argument("--startup", type=float, help="seconds from scale-up to a consumer's first receive")
    pol.add_argument("--hpa-scale-up-pods", type=int, help="KEDA/HPA: pods added per 15 s at most (default 4)")
    pol.add_argument("--hpa-scale-up-percent", type=float, help="KEDA/HPA: percent added per 15 s at most (default 100)")
    pol.add_argument("--scale-out-cooldown", type=float, help="ECS: seconds between scale-outs (default 300)")
    pol.add_argument("--batch-size", type=int, help="Lambda ESM BatchSize (default 10)")
    pol.add_argument("--batching-window", type=float, help="Lambda MaximumBatchingWindowInSeconds (default 0)")
    pol.add_argument("--reserved-concurrency", type=int, help="Lambda reserved concurrency")
    pol.add_argument("--memory-mb", type=int, help="Lambda memory (default 1024)")
    pol.add_argument("--cold-start", type=float, help="Lambda: seconds added to a new environment's first batch")

    c = p.add_argument_group("prices (USD; defaults taken " + PRICES_TAKEN + ")")
    defaults = Prices()
    c.add_argument("--price-sqs-per-million", type=float, default=defaults.sqs_per_million)
    c.add_argument("--price-lambda-gb-second", type=float, default=defaults.lambda_gb_second)
    c.add_argument("--price-lambda-per-million", type=float, default=defaults.lambda_per_million)
    c.add_argument("--price-epu-hour", type=float, default=defaults.lambda_epu_hour)
    c.add_argument("--price-consumer-hour", type=float, default=defaults.consumer_hour,
                   help="one worker process / pod / task per hour")

    o = p.add_argument_group("output")
    o.add_argument("--runs", type=_positive(int), default=50, help="simulated runs (default 50)")
    o.add_argument("--seed", type=int, default=0)
    o.add_argument("--no-search", action="store_true", help="skip the smallest-maximum search")
    o.add_argument("--json", action="store_true", help="print the plan as JSON")
    o.add_argument("--quiet", action="store_true", help="no progress lines on stderr while simulating")
    o.add_argument("--svg", metavar="PATH", help="write the median run's depth curve as SVG")
    p.set_defaults(func=_run)


# ----------------------------------------------------------------------------------------- inputs


def service_time_from_args(args: argparse.Namespace) -> ServiceTime:
    if args.seconds_per_payload is not None:
        return ServiceTime.constant(args.seconds_per_payload)
    if args.p50 is not None:
        if args.p95 is None:
            raise BatchqError("--p50 needs --p95 (or give --seconds-per-payload)")
        return _checked(lambda: ServiceTime.from_percentiles(args.p50, args.p95))
    if args.durations_file:
        return _checked(lambda: ServiceTime.empirical(read_durations_file(args.durations_file)))
    if not args.sink_url:
        raise BatchqError("--from-run needs --sink-url (the sink database holding the run's results)")
    batch, run_id = args.from_run
    return _checked(lambda: ServiceTime.empirical(durations_from_sink(args.sink_url, batch, run_id)))


def _checked(make: Any) -> ServiceTime:
    try:
        return make()
    except ValueError as exc:
        raise BatchqError(str(exc)) from None


def read_durations_file(path: str) -> list[float]:
    """Seconds per payload from a JSON list or a file of one number per line."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise BatchqError(f"cannot read durations file {path!r}: {exc}") from None
    try:
        data = json.loads(text)
        values = data if isinstance(data, list) else None
    except json.JSONDecodeError:
        values = [line for line in text.split() if line.strip()]
    if values is None:
        raise BatchqError(f"durations file {path!r}: expected a JSON list of seconds")
    out = []
    for i, v in enumerate(values):
        try:
            out.append(float(v))
        except (TypeError, ValueError):
            raise BatchqError(f"durations file {path!r}: item {i} ({v!r}) is not a number of seconds") from None
    return out


def durations_from_sink(url: str, batch: str, run_id: str) -> list[float]:
    """``finished_at - started_at`` of a run's results in the sink's ``batchq_results`` table.

    Needs a ``started_at`` column (results carry ``started_at``; a sink that does not store it cannot
    give durations — the error says so rather than guessing from completion spacing).
    """
    try:
        import sqlalchemy as sa
    except ImportError:
        raise BatchqError("--from-run reads the sink database with SQLAlchemy: pip install 'batchq[drain]'") from None

    engine = sa.create_engine(url)
    try:
        insp = sa.inspect(engine)
        if not insp.has_table("batchq_results"):
            raise BatchqError(f"no batchq_results table in {engine.url.render_as_string(hide_password=True)}")
        columns = {c["name"] for c in insp.get_columns("batchq_results")}
        if "started_at" not in columns:
            raise BatchqError("batchq_results has no started_at column, so handler durations are unknown: "
                              "give --seconds-per-payload, --p50/--p95 or --durations-file")
        table = sa.table("batchq_results", sa.column("batch"), sa.column("run_id"), sa.column("started_at"),
                         sa.column("finished_at"))
        with engine.connect() as conn:
            rows = conn.execute(sa.select(table.c.started_at, table.c.finished_at)
                                .where(table.c.batch == batch, table.c.run_id == run_id)).all()
    finally:
        engine.dispose()
    durations = [(_as_datetime(f) - _as_datetime(s)).total_seconds() for s, f in rows if s is not None and f is not None]
    if not durations:
        raise BatchqError(f"run {batch}/{run_id} has no results with started_at and finished_at in the sink")
    return durations


def _as_datetime(value: Any) -> datetime:
    # SQLite hands timestamps back as text; PostgreSQL as datetimes. Naive ones are taken as UTC.
    dt = datetime.fromisoformat(value) if isinstance(value, str) else value
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


def payloads_from_args(args: argparse.Namespace) -> int:
    if args.payloads is not None:
        return args.payloads
    from batchq.plan import Plan
    from batchq.spec import BatchSpec

    if not Path(args.spec).is_file():
        raise BatchqError(f"spec file {args.spec!r} does not exist")
    spec = BatchSpec.from_yaml(args.spec).resolve()
    return int(Plan(spec, "plan-capacity").summary()["expected"])


def policy_from_args(args: argparse.Namespace) -> Any:
    """The policy dataclass with the given knobs (unset flags keep the policy's defaults)."""
    name = args.policy
    if args.min is not None and args.max is not None and args.min > args.max:
        raise BatchqError(f"--min {args.min} is above --max {args.max}")
    common = {"concurrency": args.concurrency, "startup_s": args.startup}
    if name == "local":
        knobs = {**common, "max_workers": args.max, "min_workers": args.min, "backlog_per_worker": args.backlog_per_worker,
                 "poll_interval_s": args.poll_interval, "cooldown_s": args.cooldown}
        cls: type = LocalPolicy
    elif name == "keda":
        knobs = {**common, "max_replicas": args.max, "min_replicas": args.min, "queue_length": args.backlog_per_worker,
                 "polling_interval_s": args.poll_interval, "cooldown_s": args.cooldown,
                 "scale_up_pods": args.hpa_scale_up_pods, "scale_up_percent": args.hpa_scale_up_percent}
        cls = KedaPolicy
    elif name == "ecs":
        knobs = {**common, "max_tasks": args.max, "min_tasks": args.min, "backlog_per_task": args.backlog_per_worker,
                 "scale_out_cooldown_s": args.scale_out_cooldown}
        cls = EcsPolicy
    else:
        knobs = {"batch_size": args.batch_size, "batching_window_s": args.batching_window,
                 "reserved_concurrency": args.reserved_concurrency, "memory_mb": args.memory_mb,
                 "cold_start_s": args.cold_start}
        if name == "lambda":
            knobs["maximum_concurrency"] = args.max
            cls = LambdaPolicy
        else:
            knobs.update(max_pollers=args.max, min_pollers=args.min)
            cls = LambdaProvisionedPolicy
    try:
        policy = cls(**{k: v for k, v in knobs.items() if v is not None})
        policy.controller()  # validates the knobs (e.g. min > max) before any simulation
    except (TypeError, ValueError) as exc:
        raise BatchqError(f"--policy {name}: {exc}") from None
    if getattr(policy, "slots", 1) < 1:
        raise BatchqError(f"--policy {name}: --concurrency must be >= 1")
    return policy


def deadline_seconds(start: int | None, deadline: int | tuple[str, float] | None) -> float | None:
    """Seconds the run has: a duration deadline as given; a clock deadline from ``--start`` (minutes
    after midnight; a deadline at or before the start is the next day)."""
    if isinstance(deadline, tuple):
        return deadline[1]
    if (start is None) != (deadline is None):
        raise BatchqError("a time-of-day --deadline goes with --start (the run's start time); or give the "
                          "deadline as a duration, e.g. --deadline 1h")
    if start is None or deadline is None:
        return None
    minutes = (deadline - start) % (24 * 60) or 24 * 60
    return minutes * 60.0


# ----------------------------------------------------------------------------------------- output


def _fmt_s(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    h, rem = divmod(round(seconds), 3600)
    return f"{h}h{rem // 60:02d}m{rem % 60:02d}s" if h else f"{rem // 60}m{rem % 60:02d}s"


def format_plan(plan: Any) -> str:
    d = plan.to_dict()
    i = d["inputs"]
    lines = [
        (f"policy {d['policy']}: {i['payloads']} payloads, {i['service']}, fan-out "
         f"{'all at once' if i['fanout_rate'] is None else str(i['fanout_rate']) + ' msg/s'}, {d['runs']} simulated runs"),
        f"drain time   p50 {_fmt_s(d['drain_p50_s'])}   p95 {_fmt_s(d['drain_p95_s'])}   max {_fmt_s(d['drain_max_s'])}",
        f"peak backlog {d['peak_backlog']}   peak consumers {d['peak_consumers']}",
    ]
    if d["deadline_s"] is not None:
        verdict = "MET" if d["deadline_met"] else "MISSED"
        lines.append(f"deadline     {_fmt_s(d['deadline_s'])} after start: {verdict} (p95)")
        sm = d["smallest_max_meeting_deadline"]
        lines.append(f"smallest {d['max_setting']} meeting it: "
                     + (str(sm) if sm is not None else "none within the search range"))
    req = d["requests_per_run"]
    lines.append(f"SQS requests {sum(req.values())} per run ({d['requests_per_payload']:.2f} per payload): "
                 + ", ".join(f"{k} {v}" for k, v in req.items()))
    cost = d["cost_per_run"]
    lines.append("cost per run " + ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in cost.items()))
    if d["cost_per_month"]:
        m = d["cost_per_month"]
        lines.append(f"per month    {m['runs']:.1f} runs ${m['runs_usd']:.2f} + idle ({m['idle_consumers']} consumers, "
                     f"{m['idle_requests']:.0f} requests) ${m['idle_sqs_usd'] + m['idle_compute_usd']:.2f} "
                     f"= ${m['total_usd']:.2f}")
    lines.append(f"prices: defaults taken {PRICES_TAKEN} unless given (see docs/capacity.md)")
    return "\n".join(lines)


def _progress(message: str) -> None:
    # stderr: stdout stays the plan alone (--json is parsed by machines).
    print(f"plan-capacity: {message}", file=sys.stderr, flush=True)


def _run(args: argparse.Namespace) -> int:
    service = service_time_from_args(args)
    payloads = payloads_from_args(args)
    policy = policy_from_args(args)
    deadline_s = deadline_seconds(args.start, args.deadline)
    try:
        workload = Workload(payloads, service, fanout_rate=args.fanout_rate, overhead_s=args.overhead,
                            payload_bytes=args.payload_bytes)
        per_month = runs_per_month(args.schedule) if args.schedule else None
        prices = Prices(args.price_sqs_per_million, args.price_lambda_gb_second, args.price_lambda_per_million,
                        args.price_epu_hour, args.price_consumer_hour)
        plan = plan_capacity(workload, policy, runs=args.runs, seed=args.seed, deadline_s=deadline_s,
                             runs_per_month_=per_month, prices=prices, search=not args.no_search,
                             progress=None if args.quiet else _progress)
    except ValueError as exc:
        raise BatchqError(str(exc)) from None
    if args.svg:
        title = f"{policy.name}: {payloads} payloads, p50 drain {_fmt_s(plan.drain_p50_s)}"
        Path(args.svg).write_text(render_svg(plan.curve, title=title, deadline_s=deadline_s))
    if args.json:
        print(json.dumps(plan.to_dict(), default=lambda v: None if isinstance(v, float) and math.isinf(v) else str(v)))
    else:
        print(format_plan(plan))
        if args.svg:
            print(f"depth curve: {args.svg}", file=sys.stderr)
    return 0
