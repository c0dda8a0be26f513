"""Queue-lag and drain metrics through Airflow's own StatsD/OpenTelemetry client.

Names follow the one scheme of :func:`batchq.metrics.metric_name` (``batchq.<component>.<name>``), so a
dashboard sees the same series whether a worker (plain StatsD) or Airflow (its metrics backend) sent
them:

* ``batchq.queue.visible`` / ``in_flight`` / ``delayed`` / ``backlog`` / ``dlq_visible`` / ``eta_s``
  (gauges, tagged ``queue``) — from the input-queue wait (the sensor's trigger and poke path);
* ``batchq.drain.applied`` / ``quarantined`` / ``sink_retries`` (counters) and ``batchq.drain.rate``
  (gauge), tagged ``batch`` — from the drain operator;
* ``batchq.run.succeeded`` / ``failed`` / ``pending`` (gauges, tagged ``batch``) — the run ledger.

Metrics are fire-and-forget: a metrics failure never fails a sensor or a drain.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from batchq.metrics import metric_name

log = logging.getLogger(__name__)


def _stats():
    from airflow.sdk.observability import stats

    return stats


def _safe(fn, *args: Any, **kwargs: Any) -> None:
    try:
        fn(*args, **kwargs)
    except Exception:
        log.debug("metric not emitted", exc_info=True)


def queue_tag(queue_url: str) -> str:
    """The ``queue`` tag of a queue's gauges: the queue name, the last segment of its URL."""
    return queue_url.rstrip("/").rsplit("/", 1)[-1]


def emit_queue_gauges(queue: str, values: Mapping[str, float]) -> None:
    """``batchq.queue.<name>`` gauges tagged with the queue name; ``values`` come from
    :meth:`batchq.health.InputWait.gauges`. Never raises: a metrics failure never fails a wait."""
    try:
        stats = _stats()
    except Exception:
        log.debug("queue metrics not emitted", exc_info=True)
        return
    for name, value in values.items():
        _safe(stats.gauge, metric_name("queue", name), value, tags={"queue": queue})


def emit_drain_report(batch: str, report: Mapping[str, Any]) -> None:
    stats = _stats()
    tags = {"batch": batch}
    for name in ("applied", "quarantined", "sink_retries"):
        if report.get(name):
            _safe(stats.incr, metric_name("drain", name), int(report[name]), tags=tags)
    if report.get("rate_per_s") is not None:
        _safe(stats.gauge, metric_name("drain", "rate"), float(report["rate_per_s"]), tags=tags)


def emit_ledger(batch: str, counts: Mapping[str, Any]) -> None:
    stats = _stats()
    tags = {"batch": batch}
    for name in ("succeeded", "failed", "pending", "expected"):
        if name in counts:
            _safe(stats.gauge, metric_name("run", name), float(counts[name]), tags=tags)
