"""Queue-lag and drain metrics through Airflow's own StatsD/OpenTelemetry client.

Names follow the one scheme of :func:`batchq.metrics.metric_name` (``batchq.<component>.<name>``), so a
dashboard sees the same series whether a worker (plain StatsD) or Airflow (its metrics backend) sent
them:

* ``batchq.queue.visible`` / ``in_flight`` / ``delayed`` / ``backlog`` / ``dlq_visible`` / ``eta_s``
  (gauges, tagged ``queue``) — from the drain sensor's trigger and sensor;
* ``batchq.drain.applied`` / ``quarantined`` / ``sink_retries`` (counters) and ``batchq.drain.rate``
  (gauge), tagged ``batch`` — from the drain operator;
* ``batchq.run.succeeded`` / ``failed`` / ``pending`` (gauges, tagged ``batch``) — the run ledger.

Metrics are fire-and-forget: a metrics failure never fails a sensor or a drain.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from batchq.health import QueueSnapshot
from batchq.metrics import metric_name

log = logging.getLogger(__name__)

QUEUE_GAUGES = ("visible", "in_flight", "delayed", "backlog", "dlq_visible", "eta_s")


def _stats():
    from airflow.sdk.observability import stats

    return stats


def _safe(fn, *args: Any, **kwargs: Any) -> None:
    try:
        fn(*args, **kwargs)
    except Exception:
        log.debug("metric not emitted", exc_info=True)


def queue_values(snapshot: QueueSnapshot, eta_s: float | None = None) -> dict[str, float]:
    """The queue gauges of one snapshot (pure; what :func:`emit_queue_snapshot` sends)."""
    values: dict[str, float] = {
        "visible": snapshot.visible,
        "in_flight": snapshot.in_flight,
        "delayed": snapshot.delayed,
        "backlog": snapshot.backlog,
    }
    if snapshot.dlq_visible is not None:
        values["dlq_visible"] = snapshot.dlq_visible
    if eta_s is not None:
        values["eta_s"] = round(eta_s, 1)
    return values


def emit_queue_snapshot(queue: str, snapshot: QueueSnapshot, eta_s: float | None = None) -> None:
    """Gauges for one queue snapshot, tagged with the queue name."""
    stats = _stats()
    tags = {"queue": queue}
    for name, value in queue_values(snapshot, eta_s).items():
        _safe(stats.gauge, metric_name("queue", name), value, tags=tags)


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
