"""``batchq drain``, ``batchq ledger`` and ``batchq redrive``: the drainer outside Airflow.

``batchq drain`` is the long-lived continuous consumer: the same drain loop the Airflow operator runs,
until SIGTERM/SIGINT (or ``--until-empty``). ``batchq ledger`` shows (and with ``--close`` records) a
run's ledger and its queue lag (``queue_lag``: input wait, processing, results wait percentiles, time to drain, peak depth). ``batchq redrive`` moves dead-lettered messages back (StartMessageMoveTask, or
receive/send/delete where the endpoint lacks it). No Airflow import here.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import time
from typing import Any

from batchq.cli._urls import add_url_option
from batchq.metrics import Metrics
from batchq.sqs import get_queue_url

log = logging.getLogger(__name__)


def _client(args: argparse.Namespace, **config_overrides: Any) -> Any:
    from batchq.sqs.client import sqs_client

    return sqs_client(endpoint_url=args.endpoint_url, region_name=args.region, **config_overrides)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--endpoint-url", help="SQS endpoint (default: env BATCHQ_SQS_ENDPOINT / AWS settings)")
    p.add_argument("--region", help="AWS region (default: env AWS_REGION / AWS_DEFAULT_REGION / us-east-1)")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "drain",
        help="drain a results queue into a sink (continuous consumer)",
        description="Receive results, write them to the sink at the pace it can take (commit, then delete): the "
        "number of writes in flight adapts to the sink's own latency (--latency-tolerance), --max-rate is an "
        "optional hard ceiling. Runs until SIGTERM/SIGINT, or until the queue reads empty with --until-empty. "
        "Prints progress (applied, rate, pace limit, sink round trip and its baseline) to stderr and a JSON "
        "report at the end.",
    )
    _common(p)
    p.add_argument("--queue", required=True, help="results queue name or URL")
    add_url_option(p, "sink", env="BATCHQ_SINK_URL", help="SQLAlchemy URL (sqlite:///results.db, postgresql+psycopg://user@host/db) or http(s):// endpoint")
    add_url_option(p, "ledger-url", env="BATCHQ_LEDGER_URL", required=False, help="SQLAlchemy URL of the ledger store for an HTTP sink (default sqlite:///batchq-ledger.db)")
    p.add_argument("--max-rate", type=float, default=None, help="hard ceiling, results per second (default: none; the pace adapts)")
    p.add_argument("--max-in-flight", type=int, default=8, help="drain threads: most batches ever written at once (default 8)")
    p.add_argument(
        "--latency-tolerance",
        type=float,
        default=None,
        help="how far the sink's round trip may rise above its lightly-loaded baseline before the drain writes "
        "fewer batches at once (default: batchq.drain.pace.DEFAULT_LATENCY_TOLERANCE, 1.2; docs/drain.md)",
    )
    p.add_argument("--no-pace", action="store_true", help="no adaptive pace: always --max-in-flight batches at once")
    p.add_argument("--lease", type=int, default=60, help="visibility timeout taken on receive, seconds (default 60)")
    p.add_argument("--wait", type=int, default=20, help="long-poll wait per receive, seconds (default 20; idle, one thread polls)")
    p.add_argument("--progress-interval", type=float, default=10.0, help="seconds between progress lines on stderr (0: none)")
    p.add_argument(
        "--header-env",
        action="append",
        default=[],
        metavar="NAME=ENVVAR",
        help="HTTP sink: send header NAME with the value of environment variable ENVVAR (e.g. "
        "Authorization=SINK_AUTH); values never appear on the command line or in logs. Repeatable.",
    )
    p.add_argument("--retry-after-cap", type=float, default=None, help="HTTP sink: longest Retry-After honoured, seconds (default 60)")
    p.add_argument("--until-empty", action="store_true", help="stop when a receive finds the queue empty")
    p.add_argument("--max-results", type=int, default=None, help="stop after this many messages")
    p.add_argument("--statsd-host", default=None, help="StatsD host for batchq.drain.* metrics (default: env BATCHQ_STATSD_HOST; unset: none)")
    p.add_argument("--statsd-port", type=int, default=None, help="StatsD UDP port (default: env BATCHQ_STATSD_PORT, else 8125)")
    p.set_defaults(func=cmd_drain)

    p = subparsers.add_parser("ledger", help="show (and optionally close) a run's ledger from the sink database")
    add_url_option(p, "store", env="BATCHQ_STORE_URL", help="SQLAlchemy URL of the results store")
    p.add_argument("--spec", help="BatchSpec YAML: batch name and failure tolerance from it")
    p.add_argument("--batch", help="batch name (or --spec)")
    p.add_argument("--run-id", required=True)
    p.add_argument("--expected", type=int, default=None, help="planned payloads (default: as recorded by a drain)")
    p.add_argument("--tolerated-failure-count", type=int, default=None, help="default: the spec's, else 0")
    p.add_argument("--tolerated-failure-percentage", type=float, default=None, help="default: the spec's, else 0")
    p.add_argument("--close", action="store_true", help="record the outcome when the ledger is complete")
    from batchq.cli._ledger_partitions import add_arguments

    add_arguments(p)
    p.set_defaults(func=cmd_ledger)

    p = subparsers.add_parser(
        "redrive",
        help="move dead-lettered messages back to a queue",
        description="StartMessageMoveTask where the endpoint supports it, else receive/send/delete (--method auto).",
    )
    _common(p)
    p.add_argument("--dlq", required=True, help="dead-letter queue name or URL")
    p.add_argument("--to", required=True, dest="target", help="destination queue name or URL (normally the input queue)")
    p.add_argument("--method", choices=("auto", "move-task", "manual"), default="auto")
    p.add_argument("--max-messages", type=int, default=None, help="move at most this many (manual method)")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for the move (default 600)")
    p.set_defaults(func=cmd_redrive)


def sink_headers_from_env(items: list[str]) -> dict[str, str]:
    """HTTP sink headers from ``NAME=ENVVAR`` items: secrets come from the environment, never argv."""
    import os

    headers = {}
    for item in items:
        name, sep, var = item.partition("=")
        if not sep or not name or not var:
            raise SystemExit(f"batchq: --header-env wants NAME=ENVVAR, got {item!r}")
        if var not in os.environ:
            raise SystemExit(f"batchq: --header-env {name}: environment variable {var} is not set")
        headers[name] = os.environ[var]
    return headers


class DrainMetrics:
    """``batchq.drain.*`` from a running drain: counters as the deltas of the drain report after each
    committed batch (:class:`~batchq.drain.Drainer`'s ``on_batch``), the pace gauges (limit, sink round
    trip, baseline) at most once per ``gauge_interval_s``, the rate gauge at the end; and a progress line
    on ``progress`` every ``progress_interval_s`` while results flow.

    :param metrics: the StatsD client (component ``drain``).
    :param queue: the results queue's name (the ``queue`` tag).
    :param progress: where progress lines go (``None``: nowhere).
    :param progress_interval_s: least seconds between two progress lines.
    :param clock: monotonic clock; injectable for tests.
    """

    COUNTERS = ("applied", "quarantined", "sink_retries", "delete_failed")

    def __init__(
        self,
        metrics: Any,
        queue: str,
        *,
        progress: Any = None,
        progress_interval_s: float = 10.0,
        gauge_interval_s: float = 1.0,
        clock: Any = time.monotonic,
    ):
        self.metrics, self.tags = metrics, {"queue": queue}
        self.progress, self.progress_interval_s, self.gauge_interval_s = progress, progress_interval_s, gauge_interval_s
        self._clock = clock
        self._started = clock()
        self._next_progress = self._started + progress_interval_s
        self._next_gauges = self._started
        self._sent: dict[str, int] = dict.fromkeys(self.COUNTERS, 0)
        self._lock = threading.Lock()

    def on_batch(self, report: Any) -> None:
        # Called from the drain's delete threads: one at a time, so no delta is sent twice.
        with self._lock:
            for name in self.COUNTERS:
                now = int(getattr(report, name))
                if now > self._sent[name]:
                    self.metrics.incr(name, now - self._sent[name], self.tags)
                    self._sent[name] = now
            now = self._clock()
            if now >= self._next_gauges:
                self._next_gauges = now + self.gauge_interval_s
                self._pace_gauges(report)
            if self.progress is not None and self.progress_interval_s > 0 and now >= self._next_progress:
                self._next_progress = now + self.progress_interval_s
                print(describe_progress(report, now - self._started), file=self.progress, flush=True)

    def _pace_gauges(self, report: Any) -> None:
        if report.pace_limit is not None:
            self.metrics.gauge("pace_limit", report.pace_limit, self.tags)
        if report.pace_rtt_ms is not None:
            self.metrics.gauge("rtt_ms", report.pace_rtt_ms, self.tags)
        if report.pace_baseline_ms is not None:
            self.metrics.gauge("baseline_ms", report.pace_baseline_ms, self.tags)

    def finish(self, report: Any) -> None:
        self.on_batch(report)
        with self._lock:
            self._pace_gauges(report)
        self.metrics.gauge("rate", round(report.rate_per_s, 3), self.tags)


def describe_progress(report: Any, elapsed_s: float) -> str:
    """One progress line: ``applied 1,200 (96.0/s) · pace 4.0 in flight · sink 12.1 ms (baseline 10.0 ms)``."""
    rate = report.applied / elapsed_s if elapsed_s > 0 else 0.0
    line = f"batchq drain: applied {report.applied:,} ({rate:.1f}/s), quarantined {report.quarantined:,}"
    if report.pace_limit is None:
        return line + " · pace fixed"
    rtt = "–" if report.pace_rtt_ms is None else f"{report.pace_rtt_ms:.1f} ms"
    base = "–" if report.pace_baseline_ms is None else f"{report.pace_baseline_ms:.1f} ms"
    return f"{line} · pace {report.pace_limit:g} in flight · sink {rtt} (baseline {base})"


def cmd_drain(args: argparse.Namespace) -> int:
    from batchq.drain import Drainer, SinkMisconfigured, open_sink

    client = _client(args)
    url = get_queue_url(client, args.queue)
    sink, store = open_sink(args.sink, ledger_url=args.ledger_url, headers=sink_headers_from_env(args.header_env), retry_after_cap_s=args.retry_after_cap)
    store.create_tables()
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        log.info("signal %d: finishing the batches in flight, then stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    from batchq.drain.pace import DEFAULT_LATENCY_TOLERANCE

    tolerance = None if args.no_pace else (args.latency_tolerance if args.latency_tolerance is not None else DEFAULT_LATENCY_TOLERANCE)
    log.info(
        "draining %s → %s (max_rate=%s/s, max_in_flight=%d, latency_tolerance=%s, %s)",
        url, sink.description, args.max_rate, args.max_in_flight, tolerance, "until empty" if args.until_empty else "until stopped",
    )
    metrics = Metrics("drain", statsd_host=args.statsd_host, statsd_port=args.statsd_port)
    drain_metrics = DrainMetrics(metrics, url.rstrip("/").rsplit("/", 1)[-1], progress=sys.stderr, progress_interval_s=args.progress_interval)
    drainer = Drainer(
        client,
        url,
        sink,
        store,
        max_rate=args.max_rate,
        max_in_flight=args.max_in_flight,
        receive_wait_s=args.wait,
        lease_s=args.lease,
        latency_tolerance=tolerance,
        on_batch=drain_metrics.on_batch,
    )
    try:
        report = drainer.run(until_empty=args.until_empty, stop=stop, max_results=args.max_results)
        drain_metrics.finish(report)
    except SinkMisconfigured as exc:
        # Credentials or URL: retrying cannot help; the results were handed back to the queue.
        print(f"batchq drain: {exc}", file=sys.stderr)
        return 2
    finally:
        sink.close()
        if store is not sink:
            store.close()
        metrics.flush_summary()
        metrics.close()
    print(json.dumps(report.to_dict()), flush=True)
    return 0


def cmd_ledger(args: argparse.Namespace) -> int:
    if getattr(args, "partitions", False):
        from batchq.cli._ledger_partitions import cmd_partitions

        return cmd_partitions(args)
    from batchq.store import ResultsStore, RunLedger
    from batchq.monitor.lag import LAG_XCOM_KEY, describe_lag
    from batchq.sqs.cloudwatch import observed_age_s, queue_age

    from batchq.cli._ledger_partitions import spec_and_batch

    spec, batch = spec_and_batch(args, "batchq ledger")
    count = args.tolerated_failure_count if args.tolerated_failure_count is not None else (spec.tolerated_failure_count if spec else 0)
    pct = args.tolerated_failure_percentage if args.tolerated_failure_percentage is not None else (spec.tolerated_failure_percentage if spec else 0.0)
    store = ResultsStore(args.store)
    try:
        ledger = RunLedger(store, batch, args.run_id, args.expected, tolerated_failure_count=count, tolerated_failure_percentage=pct)
        status = ledger.status()
        if spec is not None:
            _name_failures(status, spec, store, args.run_id)
        lag = ledger.lag()
        # No AWS connection here: the queue-level age is the one workers observed (age_source says so).
        lag.update(queue_age(None, observed_age_s(lag)))
        if args.close and status.complete:
            ledger.close(status)
        print(json.dumps({**status.to_dict(), LAG_XCOM_KEY: lag}, default=str), flush=True)
    finally:
        store.close()
    print(status.describe(), file=sys.stderr)
    print(describe_lag(lag), file=sys.stderr)
    # 0: complete and within tolerance; 1: complete but failed; 3: still open.
    return 0 if status.ok else (1 if status.complete else 3)


def cmd_redrive(args: argparse.Namespace) -> int:
    from batchq.sqs.client import SINGLE_ATTEMPT_RETRIES
    from batchq.sqs.redrive import redrive

    client = _client(args)
    report = redrive(
        client,
        get_queue_url(client, args.dlq),
        get_queue_url(client, args.target),
        method=args.method,
        max_messages=args.max_messages,
        timeout_s=args.timeout,
        probe_client=_client(args, retries=dict(SINGLE_ATTEMPT_RETRIES)),
    )
    print(json.dumps(report.to_dict()), flush=True)
    for mid, reason in list(report.failed.items())[:20]:
        print(f"not moved: {mid}: {reason}", file=sys.stderr)
    return 0 if not report.failed else 1


def _name_failures(status: Any, spec: Any, store: Any, run_id: str) -> None:
    """Give the first failures their dims where the stored rows lack them (results of older workers),
    from the run's plan: the ledger shows ``region=ap-south, model=xgb, day=wed (4730f5ee…)``, not a hash."""
    missing = [f for f in status.first_failures if not f.get("dims")]
    if not missing:
        return
    from batchq.plan import Plan

    try:
        run = store.get_run(spec.name, run_id) or {}
        plan = Plan(spec.resolve(), run_id, dag_id=run.get("dag_id"))
    except Exception:  # noqa: BLE001 - a variable: source, a spec that changed: the keys stay as they are
        return
    dims = plan.dims_of(f["key"] for f in missing)
    for failure in missing:
        if failure["key"] in dims:
            failure["dims"] = dims[failure["key"]]
