"""Airflow-free metrics: StatsD over UDP and structured (JSON) logs.

Names follow one scheme on both sides of the system: ``batchq.<component>.<name>`` (for example
``batchq.worker.processed``), tagged with ``batch`` and ``job_type``. The Airflow side emits the same
names through Airflow's own StatsD/OpenTelemetry client; workers, the Lambda adapter and the drainer
use :class:`Metrics` because they never import Airflow.

StatsD is fire-and-forget by design: a missing or slow collector must never slow down or break the
work, so send errors are counted and swallowed. Tags use the DogStatsD ``|#k:v`` extension (understood
by the Datadog agent, Telegraf's statsd input and the StatsD exporter for Prometheus); pass
``tag_format="none"`` for a plain StatsD server.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

PREFIX = "batchq"
DEFAULT_STATSD_PORT = 8125

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MetricSpec:
    """One metric batchq emits: the rows of docs/metrics.md (a unit test keeps both in step)."""

    name: str
    type: str
    tags: str
    meaning: str
    emitter: str


_W, _Q, _D = "worker (batchq StatsD)", "QueueDrainedTrigger (triggerer), QueueDrainedSensor poke, queue-health task (Airflow metrics)", "ResultsDrainOperator (Airflow metrics)"
_DC = "`batchq drain` (batchq StatsD)"
#: Every metric batchq emits: the one catalog (docs/metrics.md is checked against it).
CATALOG: tuple[MetricSpec, ...] = (
    MetricSpec("batchq.worker.received", "counter", "worker", "input messages received", _W),
    MetricSpec("batchq.worker.message_age_ms", "timer", "worker", "age of an input message at receipt (now − SentTimestamp): the consumer lag workers observe", _W),
    MetricSpec("batchq.worker.handler_duration_ms", "timer", "worker, batch, job_type", "handler wall time of one payload", _W),
    MetricSpec("batchq.worker.processed", "counter", "worker, batch, job_type", "payloads succeeded (result sent, input deleted)", _W),
    MetricSpec("batchq.worker.failed", "counter", "worker, batch, job_type", "payloads ended in a failed result", _W),
    MetricSpec("batchq.worker.dead_lettered", "counter", "worker, batch, job_type", "input messages moved to the dead-letter queue", _W),
    MetricSpec("batchq.worker.retried", "counter", "worker, batch, job_type", "transient failures hidden for a back-off", _W),
    MetricSpec("batchq.worker.handler_timed_out", "counter", "worker, batch, job_type", "handlers that overran their timeout", _W),
    MetricSpec("batchq.worker.result_send_failed", "counter", "worker, batch, job_type", "results the results queue refused (input kept)", _W),
    MetricSpec("batchq.worker.delete_failed", "counter", "worker, batch, job_type", "input deletes SQS refused (redelivered, idempotent)", _W),
    MetricSpec("batchq.worker.returned", "counter", "worker", "prefetched messages handed back at shutdown", _W),
    MetricSpec("batchq.worker.visibility_extended", "counter", "worker", "lease extensions of running messages", _W),
    MetricSpec("batchq.worker.visibility_extend_failed", "counter", "worker", "lease extensions SQS refused", _W),
    MetricSpec("batchq.lambda.handler_duration_ms", "timer", "batch, job_type", "handler wall time of one payload", "Lambda adapter (batchq StatsD)"),
    MetricSpec("batchq.lambda.processed", "counter", "batch, job_type", "payloads succeeded", "Lambda adapter (batchq StatsD)"),
    MetricSpec("batchq.lambda.failed", "counter", "batch, job_type", "payloads ended in a failed result", "Lambda adapter (batchq StatsD)"),
    MetricSpec("batchq.lambda.retried", "counter", "batch, job_type", "records reported back for retry", "Lambda adapter (batchq StatsD)"),
    MetricSpec("batchq.lambda.dead_lettered", "counter", "batch, job_type", "records dead-lettered", "Lambda adapter (batchq StatsD)"),
    MetricSpec("batchq.supervisor.workers", "gauge", "", "worker processes running", "local supervisor (batchq StatsD)"),
    MetricSpec("batchq.supervisor.backlog", "gauge", "", "input backlog the scaling rule saw", "local supervisor (batchq StatsD)"),
    MetricSpec("batchq.supervisor.worker_died", "counter", "", "worker processes that exited unexpectedly", "local supervisor (batchq StatsD)"),
    MetricSpec("batchq.queue.visible", "gauge", "queue", "visible messages of the input queue", _Q),
    MetricSpec("batchq.queue.in_flight", "gauge", "queue", "messages received, not yet deleted", _Q),
    MetricSpec("batchq.queue.delayed", "gauge", "queue", "delayed messages", _Q),
    MetricSpec("batchq.queue.backlog", "gauge", "queue", "visible + in-flight + delayed", _Q),
    MetricSpec("batchq.queue.dlq_visible", "gauge", "queue", "messages on the dead-letter queue", _Q),
    MetricSpec("batchq.queue.eta_s", "gauge", "queue", "seconds to drain at the recent rate", _Q),
    *(
        MetricSpec(f"batchq.alert.{kind}", "gauge", "queue", f"1 while a `{kind}` backlog alert is open on the queue, else 0", _Q)
        for kind in ("growing", "stalled", "old", "dead_letters", "late")
    ),
    MetricSpec("batchq.drain.applied", "counter", "batch (operator), queue", "results committed to the sink", f"{_D}; {_DC}"),
    MetricSpec("batchq.drain.quarantined", "counter", "batch (operator), queue", "results quarantined (malformed or refused)", f"{_D}; {_DC}"),
    MetricSpec("batchq.drain.sink_retries", "counter", "batch (operator), queue", "sink writes retried after an outage", f"{_D}; {_DC}"),
    MetricSpec("batchq.drain.delete_failed", "counter", "queue", "result deletes SQS refused (re-applied idempotently)", _DC),
    MetricSpec("batchq.drain.rate", "gauge", "batch (operator), queue", "results applied per second over the drain", f"{_D}; {_DC}"),
    MetricSpec("batchq.drain.pace_limit", "gauge", "batch (operator), queue", "sink writes the drain's pace controller allows in flight now", f"{_D}; {_DC}"),
    MetricSpec("batchq.drain.rtt_ms", "gauge", "batch (operator), queue", "the sink's round trip per batch (median of the last window: HTTP POST or SQL commit), ms", f"{_D}; {_DC}"),
    MetricSpec("batchq.drain.baseline_ms", "gauge", "batch (operator), queue", "the sink's lightly-loaded round trip the pace compares against (re-measured every minute), ms", f"{_D}; {_DC}"),
    MetricSpec("batchq.run.expected", "gauge", "batch", "payloads the run's plan expects", _D),
    MetricSpec("batchq.run.succeeded", "gauge", "batch", "keys of the run succeeded", _D),
    MetricSpec("batchq.run.failed", "gauge", "batch", "keys of the run failed (quarantined included)", _D),
    MetricSpec("batchq.run.pending", "gauge", "batch", "keys of the run without a result yet", _D),
    MetricSpec("batchq.run.input_wait_p95_s", "gauge", "batch", "p95 of the run's input wait (first received − enqueued), seconds", _D),
    MetricSpec("batchq.run.processing_p95_s", "gauge", "batch", "p95 of the run's handler time, seconds", _D),
    MetricSpec("batchq.run.results_wait_p95_s", "gauge", "batch", "p95 of the run's results wait (applied − result sent), seconds", _D),
    MetricSpec("batchq.run.time_to_drain_s", "gauge", "batch", "first payload enqueued → last result applied, seconds", _D),
)

def catalog_table(catalog: Iterable[MetricSpec] = CATALOG) -> str:
    """The metrics reference table of docs/metrics.md (Markdown), rendered from :data:`CATALOG`."""
    rows = ["| Name | Type | Tags | Meaning | Emitted by |", "|---|---|---|---|---|"]
    rows += [f"| `{m.name}` | {m.type} | {m.tags or '—'} | {m.meaning} | {m.emitter} |" for m in catalog]
    return "\n".join(rows)


#: Longest tag value sent; longer user strings are cut (bounded series names in every backend).
MAX_TAG_CHARS = 64
#: Distinct values one tag key may take per process before further values report as ``other``.
MAX_TAG_VALUES = 50
OTHER = "other"


class TagLimiter:
    """Bounded cardinality for tag values that come from users (batch names, job types, queue names).

    A value in ``known`` (e.g. the spec names that exist) always passes; otherwise the first
    ``max_values`` distinct values of a tag key pass and later ones become ``other``, so a stream of
    made-up batch names cannot create unbounded series in the metrics backend. Values are cut to
    :data:`MAX_TAG_CHARS`. Thread-safe.

    :param max_values: distinct values per tag key before ``other``.
    :param known: values per tag key that always pass, e.g. ``{"batch": {"customer_batch"}}``.
    """

    def __init__(self, max_values: int = MAX_TAG_VALUES, known: Mapping[str, Iterable[str]] | None = None):
        self.max_values = max_values
        self.known = {k: set(v) for k, v in (known or {}).items()}
        self._seen: dict[str, set[str]] = {}
        self._lock = threading.Lock()

    def value(self, key: str, value: Any) -> str:
        text = str(value)[:MAX_TAG_CHARS]
        if text in self.known.get(key, ()):
            return text
        with self._lock:
            seen = self._seen.setdefault(key, set())
            if text in seen:
                return text
            if len(seen) >= self.max_values:
                return OTHER
            seen.add(text)
            return text

    def tags(self, tags: Mapping[str, Any] | None) -> dict[str, str]:
        return {k: self.value(k, v) for k, v in (tags or {}).items() if v is not None}


def metric_name(component: str, name: str, prefix: str = PREFIX) -> str:
    """``batchq.<component>.<name>``: the one naming rule, shared with the Airflow side."""
    return f"{prefix}.{component}.{name}" if prefix else f"{component}.{name}"


def _clean_tag(value: Any) -> str:
    # StatsD line protocol separators (| , # :) inside a tag value would corrupt the packet.
    return str(value).replace("|", "_").replace(",", "_").replace("#", "_").replace(":", "_").replace("\n", " ")


def format_line(name: str, value: float, kind: str, tags: Mapping[str, Any] | None, tag_format: str) -> str:
    """One StatsD line, e.g. ``batchq.worker.processed:1|c|#batch:b1,job_type:classification``."""
    shown = int(value) if float(value).is_integer() else round(float(value), 3)
    line = f"{name}:{shown}|{kind}"
    if tags and tag_format == "dogstatsd":
        line += "|#" + ",".join(f"{k}:{_clean_tag(v)}" for k, v in sorted(tags.items()) if v is not None)
    return line


class _Aggregate:
    """Running count/sum/max for the periodic structured-log summary (bounded memory)."""

    __slots__ = ("count", "max", "total")

    def __init__(self) -> None:
        self.count, self.total, self.max = 0, 0.0, float("-inf")

    def add(self, value: float) -> None:
        self.count += 1
        self.total += value
        self.max = max(self.max, value)

    def to_dict(self) -> dict[str, Any]:
        return {"count": self.count, "avg": round(self.total / self.count, 3) if self.count else None,
                "max": None if not self.count else round(self.max, 3)}


class Metrics:
    """Counters, timers and gauges for one component, to StatsD (when configured) and to JSON logs.

    Every event is logged at DEBUG as one JSON object; a summary of everything since the last one
    (counters and timer count/avg/max) is logged at INFO every ``summary_interval_s`` seconds and by
    :meth:`flush_summary`, so INFO logs stay readable at thousands of messages per second.

    :param component: the ``<component>`` part of every name (``worker``, ``lambda``, ``drain``...).
    :param statsd_host: StatsD host; ``None`` reads ``BATCHQ_STATSD_HOST`` (unset: no StatsD).
    :param statsd_port: StatsD UDP port; ``None`` reads ``BATCHQ_STATSD_PORT`` (default 8125).
    :param tags: tags added to every metric (e.g. ``{"worker": "host:pid"}``).
    :param tag_format: ``dogstatsd`` (``|#k:v``) or ``none``.
    :param summary_interval_s: seconds between INFO summaries; 0 disables them.
    :param limiter: bounds per-event tag values (default: a :class:`TagLimiter` of its own).
    """

    def __init__(
        self,
        component: str,
        *,
        statsd_host: str | None = None,
        statsd_port: int | None = None,
        prefix: str = PREFIX,
        tags: Mapping[str, Any] | None = None,
        tag_format: str = "dogstatsd",
        summary_interval_s: float = 30.0,
        logger: logging.Logger | None = None,
        limiter: TagLimiter | None = None,
    ):
        if tag_format not in ("dogstatsd", "none"):
            raise ValueError(f"tag_format must be 'dogstatsd' or 'none', not {tag_format!r}")
        self.component = component
        self.prefix = prefix
        self.tags = dict(tags or {})
        self.tag_format = tag_format
        self.summary_interval_s = summary_interval_s
        self.log = logger or log
        host = statsd_host if statsd_host is not None else os.environ.get("BATCHQ_STATSD_HOST") or None
        port = statsd_port if statsd_port is not None else int(os.environ.get("BATCHQ_STATSD_PORT") or DEFAULT_STATSD_PORT)
        self.address: tuple[str, int] | None = None
        self._sock: socket.socket | None = None
        if host:
            # Resolve once: a DNS lookup per metric would cost more than the metric.
            family, _, _, _, sockaddr = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
            self.address = sockaddr[:2]
            self._sock = socket.socket(family, socket.SOCK_DGRAM)
            self._sock.setblocking(False)
        self.send_errors = 0
        self._lock = threading.Lock()
        self._counters: dict[str, float] = {}
        self._timers: dict[str, _Aggregate] = {}
        self._gauges: dict[str, float] = {}
        self._last_summary = time.monotonic()
        self.limiter = limiter or TagLimiter()

    # -- public API ------------------------------------------------------------------------------
    def incr(self, name: str, value: float = 1, tags: Mapping[str, Any] | None = None) -> None:
        """Add ``value`` to counter ``batchq.<component>.<name>``."""
        full = metric_name(self.component, name, self.prefix)
        with self._lock:
            self._counters[full] = self._counters.get(full, 0) + value
        self._emit(full, value, "c", tags)

    def timing(self, name: str, ms: float, tags: Mapping[str, Any] | None = None) -> None:
        """Record a duration in milliseconds (StatsD ``ms``)."""
        full = metric_name(self.component, name, self.prefix)
        with self._lock:
            self._timers.setdefault(full, _Aggregate()).add(ms)
        self._emit(full, ms, "ms", tags)

    def gauge(self, name: str, value: float, tags: Mapping[str, Any] | None = None) -> None:
        """Set a gauge (StatsD ``g``)."""
        full = metric_name(self.component, name, self.prefix)
        with self._lock:
            self._gauges[full] = value
        self._emit(full, value, "g", tags)

    def snapshot(self) -> dict[str, Any]:
        """Totals since the last summary (what :meth:`flush_summary` would log)."""
        with self._lock:
            return {
                "counters": dict(self._counters),
                "timers_ms": {k: v.to_dict() for k, v in self._timers.items()},
                "gauges": dict(self._gauges),
            }

    def flush_summary(self) -> dict[str, Any]:
        """Log one INFO JSON summary of everything since the previous one, and reset it."""
        with self._lock:
            summary = {
                "event": "metrics_summary",
                "component": self.component,
                "interval_s": round(time.monotonic() - self._last_summary, 3),
                "counters": self._counters,
                "timers_ms": {k: v.to_dict() for k, v in self._timers.items()},
                "gauges": self._gauges,
                **({"tags": self.tags} if self.tags else {}),
            }
            self._counters, self._timers, self._gauges = {}, {}, dict(self._gauges)
            self._last_summary = time.monotonic()
        self.log.info(json.dumps(summary, default=str, separators=(",", ":")))
        return summary

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    # -- internals -------------------------------------------------------------------------------
    def _emit(self, full: str, value: float, kind: str, tags: Mapping[str, Any] | None) -> None:
        # Per-event tags carry user strings (batch, job_type): bounded; the component's own are fixed.
        merged = {**self.tags, **self.limiter.tags(tags)}
        if self._sock is not None and self.address is not None:
            line = format_line(full, value, kind, merged, self.tag_format)
            try:
                self._sock.sendto(line.encode(), self.address)
            except OSError:
                # Collector down, buffer full: metrics must never break the work.
                self.send_errors += 1
        if self.log.isEnabledFor(logging.DEBUG):
            self.log.debug(json.dumps({"metric": full, "type": kind, "value": value, **merged}, default=str))
        if self.summary_interval_s and time.monotonic() - self._last_summary >= self.summary_interval_s:
            self.flush_summary()


def log_event(logger: logging.Logger, level: int, event: str, **fields: Any) -> None:
    """One structured log line: a JSON object with ``event`` and the given fields."""
    if logger.isEnabledFor(level):
        logger.log(level, json.dumps({"event": event, **fields}, default=str, separators=(",", ":")))
