"""batchq metrics through Airflow's own metrics layer (StatsD, Datadog or OpenTelemetry, as configured).

Names follow the one scheme of :func:`batchq.metrics.metric_name` (``batchq.<component>.<name>``) and
are all listed in :data:`batchq.metrics.CATALOG` (docs/metrics.md): queue gauges from the input-queue
wait (the trigger in the triggerer, the sensor's poke path, a queue-health task), drain counters, the
run ledger and the run's queue lag from the drain operator. Tag values pass a
:class:`~batchq.metrics.TagLimiter` (bounded cardinality). Metrics are fire-and-forget: a metrics
failure never fails a sensor, a trigger or a drain.

Why :func:`ensure_stats_initialized` exists: Airflow 3.3 keeps two copies of its stats module, core's
(``airflow._shared.observability.metrics.stats``) and the Task SDK's
(``airflow.sdk._shared.observability.metrics.stats``, behind ``airflow.sdk.observability.stats``). A
task process initialises the SDK copy (``task_runner.main``), but the triggerer initialises only core's
copy, in its parent process, while triggers run in the TriggerRunner *subprocess* and reach the SDK
copy, whose backend factory is still unset there: every metric goes to a ``NoStatsLogger`` and is lost.
So before the first metric of a process, batchq initialises the SDK copy from Airflow's own
configuration (``stats_utils.get_stats_factory()``, the same call ``task_runner.main`` makes) when
nothing initialised it yet. Airflow has no public "is initialised" check; the module's ``_factory``
is read defensively (a later Airflow that renames it gets initialised once per process, which is
what ``task_runner`` does anyway).
"""

from __future__ import annotations

import functools
import logging
import os
import threading
from collections.abc import Mapping
from typing import Any

from batchq.metrics import TagLimiter, metric_name
from batchq.sqs.cloudwatch import OldestAgeProbe

log = logging.getLogger(__name__)

_init_lock = threading.Lock()
#: pid of the process whose SDK stats batchq checked (a forked child checks again).
_initialized_pid: int | None = None
#: bounds the user-string tag values of every metric sent from this process.
LIMITER = TagLimiter()


def ensure_stats_initialized() -> bool:
    """Initialise the Task SDK's stats backend once per process if nothing did (see the module
    docstring). Returns True when this call initialised it."""
    global _initialized_pid
    pid = os.getpid()
    if _initialized_pid == pid:
        return False
    with _init_lock:
        if _initialized_pid == pid:
            return False
        _initialized_pid = pid
        from airflow.sdk._shared.observability.metrics import stats as sdk_stats
        from airflow.sdk.observability.metrics.stats_utils import get_stats_factory

        if not hasattr(sdk_stats, "initialize"):
            # Task SDK 1.2 (Airflow 3.2): the backend lives on the ``Stats`` class's metaclass.
            legacy = sdk_stats.Stats
            if type.__getattribute__(legacy, "factory") is not None:
                return False
            legacy.initialize(factory=get_stats_factory(legacy))  # 3.2 takes the Stats class
            log.debug("batchq initialised the Task SDK stats backend in pid %d", pid)
            return True
        if getattr(sdk_stats, "_factory", None) is not None:
            return False  # a task process: task_runner.main already did it
        from airflow.sdk.configuration import conf

        sdk_stats.initialize(
            factory=get_stats_factory(),
            export_legacy_names=conf.getboolean("metrics", "legacy_names_on", fallback=True),
        )
        log.debug("batchq initialised the Task SDK stats backend in pid %d", pid)
        return True


@functools.lru_cache(maxsize=32)
def oldest_age_probe(aws_conn_id: str | None, region_name: str | None = None) -> OldestAgeProbe:
    """The process's CloudWatch probe for one AWS connection (:class:`batchq.sqs.cloudwatch.OldestAgeProbe`):
    cached, so a connection that cannot read CloudWatch costs one short try per process, not one per
    poll or request. Client calls: one attempt, 2 s connect / 3 s read timeout."""
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

    from batchq.sqs.client import botocore_config, single_attempt

    hook = AwsBaseHook(aws_conn_id=aws_conn_id, region_name=region_name, client_type="cloudwatch")
    return OldestAgeProbe(hook.get_client_type(config=single_attempt(botocore_config(connect_timeout=2, read_timeout=3))))


def cloudwatch_oldest_age_s(aws_conn_id: str | None, queue: str, region_name: str | None = None) -> float | None:
    """CloudWatch's ``ApproximateAgeOfOldestMessage`` of ``queue`` (name or URL) through the connection,
    ``None`` when it has no data point or cannot be read. Never raises."""
    try:
        return oldest_age_probe(aws_conn_id, region_name).oldest_age_s(queue_tag(queue))
    except Exception:
        log.debug("no CloudWatch probe for %s", aws_conn_id, exc_info=True)
        return None


def _stats():
    try:
        ensure_stats_initialized()
    except Exception:
        log.debug("could not initialise the SDK stats backend", exc_info=True)
    from airflow.sdk.observability import stats

    # Airflow 3.3's SDK exposes gauge/incr/timing as module functions; 3.2's only on the ``Stats`` class.
    return stats if hasattr(stats, "gauge") else stats.Stats


def _safe(fn, *args: Any, **kwargs: Any) -> None:
    try:
        fn(*args, **kwargs)
    except Exception:
        log.debug("metric not emitted", exc_info=True)


def queue_tag(queue_url: str) -> str:
    """The ``queue`` tag of a queue's gauges: the queue name, the last segment of its URL."""
    return queue_url.rstrip("/").rsplit("/", 1)[-1]


def _emit(kind: str, component: str, values: Mapping[str, Any], tags: Mapping[str, Any]) -> None:
    """Send ``batchq.<component>.<name>`` for each value (None skipped). Never raises."""
    try:
        stats = _stats()
        fn = stats.gauge if kind == "gauge" else stats.incr
        bounded = LIMITER.tags(tags)
    except Exception:
        log.debug("%s metrics not emitted", component, exc_info=True)
        return
    for name, value in values.items():
        if value is None:
            continue
        _safe(fn, metric_name(component, name), float(value) if kind == "gauge" else int(value), tags=bounded)


def emit_gauges(component: str, values: Mapping[str, float], tags: Mapping[str, Any]) -> None:
    """``batchq.<component>.<name>`` gauges (e.g. the alert gauges of :mod:`batchq.airflow.notifiers`)."""
    _emit("gauge", component, values, tags)


def emit_queue_gauges(queue: str, values: Mapping[str, float]) -> None:
    """``batchq.queue.<name>`` gauges tagged with the queue name; ``values`` come from
    :meth:`batchq.monitor.waits.InputWait.gauges`."""
    _emit("gauge", "queue", values, {"queue": queue})


def emit_drain_report(batch: str, report: Mapping[str, Any], queue: str | None = None) -> None:
    """``batchq.drain.applied`` / ``quarantined`` / ``sink_retries`` (counters), ``rate`` and the pace
    (``pace_limit``, ``rtt_ms``, ``baseline_ms``: gauges, when the drain paced itself) of one drain pass
    (:meth:`batchq.drain.DrainReport.to_dict`)."""
    tags = {"batch": batch, "queue": queue}
    _emit("incr", "drain", {n: report.get(n) or None for n in ("applied", "quarantined", "sink_retries")}, tags)
    _emit(
        "gauge",
        "drain",
        {"rate": report.get("rate_per_s"), "pace_limit": report.get("pace_limit"), "rtt_ms": report.get("pace_rtt_ms"), "baseline_ms": report.get("pace_baseline_ms")},
        tags,
    )


def emit_ledger(batch: str, counts: Mapping[str, Any]) -> None:
    """``batchq.run.expected`` / ``succeeded`` / ``failed`` / ``pending`` gauges of the run ledger."""
    _emit("gauge", "run", {n: counts.get(n) for n in ("expected", "succeeded", "failed", "pending")}, {"batch": batch})


def emit_lag(batch: str, lag: Mapping[str, Any]) -> None:
    """The run's queue lag (:func:`batchq.monitor.lag.run_lag`) as ``batchq.run.*`` gauges, seconds."""
    values = {f"{part}_p95_s": (lag.get(part) or {}).get("p95") for part in ("input_wait", "processing", "results_wait")}
    values["time_to_drain_s"] = lag.get("time_to_drain_s")
    _emit("gauge", "run", values, {"batch": batch})


__all__ = ["LIMITER", "cloudwatch_oldest_age_s", "emit_drain_report", "emit_gauges", "emit_lag", "emit_ledger", "emit_queue_gauges", "ensure_stats_initialized", "oldest_age_probe", "queue_tag"]
