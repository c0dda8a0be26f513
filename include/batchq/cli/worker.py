"""``batchq worker`` (one consumer process) and ``batchq workers`` (a local autoscaling supervisor).

Airflow-free: this module, :mod:`batchq.worker` and :mod:`batchq.examples` run in an install without Airflow.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Any

log = logging.getLogger(__name__)

class _WorkerOption(argparse.Action):
    """An option of one worker process. Stores its value as argparse's ``store``, ``append`` or
    ``store_true`` would, and also appends the option as given to ``namespace.worker_argv``, which is
    what ``batchq workers`` passes to each worker process: the workers' own arguments, forwarded in
    order, with nothing to keep in sync.

    :param kind: ``"store"`` (default), ``"append"`` or ``"store_true"``.
    """

    def __init__(self, option_strings: list[str], dest: str, kind: str = "store", **kwargs: Any):
        if kind not in ("store", "append", "store_true"):
            raise ValueError(f"unsupported kind {kind!r}")
        if kind == "store_true":
            kwargs.update(nargs=0, default=kwargs.get("default", False))
        super().__init__(option_strings, dest, **kwargs)
        self.kind = kind

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        flag = option_string or self.option_strings[0]
        if self.kind == "store_true":
            setattr(namespace, self.dest, True)
            given = [flag]
        else:
            if self.kind == "append":
                values = [*(getattr(namespace, self.dest, None) or []), values]
                given = [flag, str(values[-1])]
            else:
                given = [flag, str(values)]
            setattr(namespace, self.dest, values)
        namespace.worker_argv = [*(getattr(namespace, "worker_argv", None) or []), *given]


def _add(parser: Any, flag: str, *, action: str = "store", **kwargs: Any) -> None:
    parser.add_argument(flag, action=_WorkerOption, kind=action, **kwargs)


def add_worker_arguments(p: argparse.ArgumentParser) -> None:
    """The options of one worker process (shared by ``worker`` and ``workers``)."""
    q = p.add_argument_group("queues")
    _add(q, "--queue", help="input queue name or URL (or take it from --spec)")
    _add(q, "--results-queue", help="results queue name or URL (or take it from --spec)")
    _add(q, "--spec", help="BatchSpec YAML whose queues.input / queues.results to use")
    _add(q, "--dead-letter-queue", help="DLQ name or URL for permanent failures (default: the input queue's redrive target)")
    _add(q, "--endpoint-url", help="SQS endpoint (default: env BATCHQ_SQS_ENDPOINT, else AWS)")
    _add(q, "--region", help="AWS region (default: env AWS_REGION / AWS_DEFAULT_REGION)")
    h = p.add_argument_group("handlers")
    _add(h, "--handlers", action="append", default=None, metavar="MODULE",
         help="module to import so its @batchq.job handlers register (repeatable)")
    _add(h, "--no-entry-points", action="store_true", default=False,
         help="do not load handlers from the batchq.handlers entry-point group")
    _add(h, "--allow-missing-handlers", action="store_true", default=False,
         help="start even when no handler is loaded for some of --spec's job types (by default the worker "
              "refuses, naming them: their payloads would all fail)")
    r = p.add_argument_group("runtime")
    _add(r, "--concurrency", type=int, default=4, help="handler threads (default 4)")
    _add(r, "--prefetch", type=int, default=None,
         help="fixed number of messages received ahead of a free handler (max --concurrency; turns adaptive prefetch off)")
    _add(r, "--prefetch-horizon", type=float, default=1.0, metavar="SECONDS",
         help="adaptive prefetch: hold what the handlers can start within SECONDS at the observed handler "
              "duration, between --concurrency and 10 (default 1.0; 0 = prefetch --concurrency)")
    _add(r, "--receivers", type=int, default=1, help="receiver threads (default 1)")
    _add(r, "--wait-seconds", type=int, default=20, help="long-poll wait (default 20)")
    _add(r, "--visibility-timeout", type=int, default=None, help="seconds (default: the queue's VisibilityTimeout)")
    _add(r, "--max-attempts", type=int, default=None, help="deliveries before a failed result (default: the queue's maxReceiveCount)")
    _add(r, "--retry-base", type=float, default=2.0, help="first retry backoff in seconds, doubling per attempt (default 2)")
    _add(r, "--grace-period", type=float, default=30.0, help="seconds running handlers get after SIGTERM (default 30)")
    _add(r, "--handler-timeout", type=float, default=900.0, metavar="SECONDS",
         help="longest one handler call may run before it counts as a transient failure (a job's "
              "@batchq.job(timeout_s=...) wins; default 900, Lambda's ceiling; 0 = no limit)")
    _add(r, "--max-stuck-handlers", type=int, default=None, metavar="N",
         help="stop (exit non-zero, to be restarted) once N handler threads are stuck past their timeout "
              "(default --concurrency)")
    _add(r, "--batch-wait-ms", type=float, default=50.0, help="longest a result waits to share a batch call (default 50)")
    _add(r, "--worker-id", default=None, help="recorded in results (default host:pid)")
    _add(r, "--switch-interval-ms", type=float, default=1.0,
         help="Python GIL switch interval for this process (default 1 ms; Python's own is 5 ms)")
    m = p.add_argument_group("metrics")
    _add(m, "--statsd-host", default=None, help="StatsD host (default: env BATCHQ_STATSD_HOST; unset: no StatsD)")
    _add(m, "--statsd-port", type=int, default=None, help="StatsD port (default: env BATCHQ_STATSD_PORT or 8125)")
    _add(m, "--stats-json", action="store_true", default=False, help="print the worker's lifetime stats as JSON on stdout at exit")


def worker_argv(args: argparse.Namespace) -> list[str]:
    """The worker options given on the command line, as given (what the supervisor passes to each process)."""
    return list(getattr(args, "worker_argv", None) or [])


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "worker", help="consume the input queue: run handlers, publish results, delete inputs",
        description="Long-poll the input queue, run the handler of each payload's job_type, send the "
                    "WorkResult to the results queue, then delete the input. SIGTERM/SIGINT stop gracefully.",
    )
    add_worker_arguments(p)
    p.set_defaults(func=run_worker)

    s = subparsers.add_parser(
        "workers", help="local autoscaler: run 0..N worker processes from queue depth",
        description="Start and stop `batchq worker` processes so that desired = ceil((visible + in-flight) "
                    "/ --backlog-per-worker), clamped to [--min, --max]; restarts workers that die. Worker "
                    "options are passed to every process.",
    )
    s.add_argument("--min", type=int, default=0, dest="min_workers", help="fewest workers (default 0: scale to zero)")
    s.add_argument("--max", type=int, default=4, dest="max_workers", help="most workers (default 4)")
    s.add_argument("--backlog-per-worker", type=int, default=100, help="messages per worker (KEDA queueLength; default 100)")
    s.add_argument("--poll-interval", type=float, default=5.0, help="seconds between queue snapshots (default 5)")
    s.add_argument("--cooldown", type=float, default=30.0, help="seconds a lower target must hold before scaling down (default 30)")
    s.add_argument("--stop-timeout", type=float, default=None, help="SIGKILL a stopping worker after this (default: grace period + wait + 10)")
    add_worker_arguments(s)
    s.set_defaults(func=run_supervisor)


def _client(args: argparse.Namespace, pool: int = 32) -> Any:
    from batchq.sqs.client import sqs_client

    return sqs_client(endpoint_url=args.endpoint_url, region_name=args.region, max_pool_connections=pool)


def _queue_names(args: argparse.Namespace) -> tuple[str, str]:
    queue, results = args.queue, args.results_queue
    if args.spec:
        from batchq.spec import BatchSpec
        spec = BatchSpec.from_yaml(args.spec)
        queue = queue or spec.queues.input
        results = results or spec.queues.results
    if not queue or not results:
        from batchq.errors import BatchqError

        raise BatchqError("worker needs --queue and --results-queue (or --spec)")
    return queue, results


def load_checked_handlers(args: argparse.Namespace) -> Any:
    """Load the handlers ``args`` name; with ``--spec``, refuse (:class:`MissingHandlers`) when some of
    the spec's job types have none, unless ``--allow-missing-handlers``. Returns the registry."""
    from batchq.worker import load_handlers
    from batchq.worker.registry import check_handlers_for

    registry = load_handlers(args.handlers or [], entry_points=not args.no_entry_points)
    if args.spec and not args.allow_missing_handlers:
        from batchq.errors import SpecError
        from batchq.spec import BatchSpec

        spec = BatchSpec.from_yaml(args.spec)
        job_types = spec.job_types()
        if job_types is None:
            try:  # callable: sources resolve outside Airflow; variable: ones do not
                job_types = spec.resolve().job_types()
            except SpecError as exc:
                log.warning("cannot check the handlers against %s's job types (%s); starting anyway", spec.name, exc)
        if job_types is not None:
            check_handlers_for(registry, job_types, batch=spec.name, modules=args.handlers or [])
    return registry


def build_worker(args: argparse.Namespace) -> Any:
    """A :class:`~batchq.worker.Worker` from parsed ``batchq worker`` options (handlers loaded)."""
    from batchq.metrics import Metrics
    from batchq.sqs import get_queue_url
    from batchq.worker import Worker, WorkerConfig
    from batchq.worker.config import default_worker_id

    # Handler threads wake from I/O waits while receiver/flusher threads run botocore (pure Python):
    # with the default 5 ms GIL switch interval a woken handler can wait up to 5 ms per message, a
    # quarter of a 20 ms job. A shorter interval hands the GIL over sooner (this process only).
    sys.setswitchinterval(args.switch_interval_ms / 1000.0)
    client = _client(args, pool=max(32, args.concurrency + 8))
    queue, results = _queue_names(args)
    registry = load_checked_handlers(args)
    worker_id = args.worker_id or default_worker_id()
    config = WorkerConfig(
        queue_url=get_queue_url(client, queue),
        results_url=get_queue_url(client, results),
        dead_letter_url=get_queue_url(client, args.dead_letter_queue) if args.dead_letter_queue else None,
        concurrency=args.concurrency,
        prefetch=args.prefetch,
        prefetch_horizon_s=args.prefetch_horizon,
        receivers=args.receivers,
        wait_seconds=args.wait_seconds,
        visibility_timeout=args.visibility_timeout,
        max_attempts=args.max_attempts,
        retry_base_s=args.retry_base,
        grace_period_s=args.grace_period,
        handler_timeout_s=args.handler_timeout or None,
        max_stuck_handlers=args.max_stuck_handlers,
        batch_wait_s=args.batch_wait_ms / 1000.0,
        worker_id=worker_id,
    )
    metrics = Metrics("worker", statsd_host=args.statsd_host, statsd_port=args.statsd_port, tags={"worker": worker_id})
    return Worker(client, config, registry=registry, metrics=metrics)


def run_worker(args: argparse.Namespace) -> int:
    worker = build_worker(args)
    worker.install_signal_handlers()
    # Checked after the worker's handlers replace the early one: a signal before is recorded there,
    # a signal after stops the worker; none is lost.
    early_stop = getattr(args, "early_stop", None)
    if early_stop is not None and early_stop.requested:
        from batchq.metrics import log_event

        log_event(log, logging.INFO, "worker_stopped_before_start", signal=early_stop.signal_name)
        stats = worker.stats
    else:
        stats = worker.run()
    if args.stats_json:
        print(json.dumps(stats.to_dict()), flush=True)
    return 0


def run_supervisor(args: argparse.Namespace) -> int:
    from batchq.metrics import Metrics
    from batchq.worker.supervisor import Supervisor, worker_command

    # Refuse before anything is spawned: every worker would refuse the same way, over and over.
    load_checked_handlers(args)
    client = _client(args, pool=4)
    queue, _ = _queue_names(args)
    queue_url = _wait_for_queue(client, queue)
    if queue_url is None:  # stopped while waiting
        return 0
    forwarded = worker_argv(args)
    stop_timeout = args.stop_timeout if args.stop_timeout is not None else args.grace_period + args.wait_seconds + 10
    supervisor = Supervisor(
        client,
        queue_url,
        worker_command(forwarded),
        min_workers=args.min_workers,
        max_workers=args.max_workers,
        backlog_per_worker=args.backlog_per_worker,
        poll_interval_s=args.poll_interval,
        scale_down_cooldown_s=args.cooldown,
        stop_timeout_s=stop_timeout,
        env=dict(os.environ),
        metrics=Metrics("supervisor", statsd_host=args.statsd_host, statsd_port=args.statsd_port),
    )
    supervisor.install_signal_handlers()
    stats = supervisor.run()
    print(json.dumps({k: v for k, v in stats.__dict__.items() if k != "history"}), file=sys.stderr)
    return 0


def _wait_for_queue(client: Any, queue: str) -> str | None:
    """The input queue's URL, waiting (and saying so) until it exists: the supervisor is often started
    before the DAG whose ``ensure_queues`` task creates the queues. ``None`` if stopped while waiting.
    (A single ``batchq worker`` does not wait: it keeps its clear "does not exist" error.)"""
    import signal
    import threading

    from batchq.worker.supervisor import wait_for_queue_url

    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        return wait_for_queue_url(client, queue, stop=stop)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
