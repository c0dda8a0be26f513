"""Queue lag of a run, from the timestamps every result carries: pure functions, no I/O.

Per payload (all optional: results written before these fields existed simply do not count):

* **input wait** (consumer lag) = first received − enqueued (SQS ``ApproximateFirstReceiveTimestamp``
  − ``SentTimestamp`` of the input message): how long work sat in the queue before a worker took it;
* **processing** = finished − started (the handler, as the worker measured it);
* **results wait** = applied − result sent (SQS ``SentTimestamp`` of the results message → the
  drainer's commit): how long results sat before reaching the sink.

Per run: p50/p95/max of each, the time to drain (first enqueued → last applied), the peak number of
payloads waiting in the input queue at once (reconstructed from enqueued/first-received intervals)
and the failures. :func:`percentiles` is the one percentile implementation: the ledger, ``batchq
ledger``, the drain operator's XCom and the bench scripts all use it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from batchq import xcom_keys

#: ``source`` of lag figures computed from the SQS message timestamps each result carries.
SOURCE_SQS_TIMESTAMPS = "sqs-timestamps"
#: The XCom key (and JSON key of ``batchq ledger``) of a run's lag; the Batch view reads it
#: (``batchq.monitor.report.LAG_KEY``).
LAG_XCOM_KEY = xcom_keys.QUEUE_LAG


def _attribute_time(attributes: Mapping[str, Any], name: str) -> datetime | None:
    raw = attributes.get(name)
    try:
        return datetime.fromtimestamp(int(raw) / 1000, tz=timezone.utc) if raw is not None else None
    except (TypeError, ValueError, OverflowError, OSError):
        return None  # an endpoint's odd attribute costs the lag figure, never the message


def sqs_times(message: Mapping[str, Any]) -> tuple[datetime | None, datetime | None]:
    """(sent, first received) of a received SQS message: its ``SentTimestamp`` and
    ``ApproximateFirstReceiveTimestamp`` (epoch ms; ``Attributes`` from ReceiveMessage, ``attributes`` in
    a Lambda event record), ``None`` where missing or unreadable."""
    attrs = message.get("Attributes") or message.get("attributes") or {}
    return _attribute_time(attrs, "SentTimestamp"), _attribute_time(attrs, "ApproximateFirstReceiveTimestamp")


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0..100) of already-sorted values, linear interpolation between the
    closest ranks (numpy's default). ``None`` for no values."""
    if not 0 <= q <= 100:
        raise ValueError(f"percentile q must be within 0..100, got {q}")
    n = len(sorted_values)
    if n == 0:
        return None
    pos = (n - 1) * q / 100
    lo = math.floor(pos)
    hi = min(lo + 1, n - 1)
    return float(sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo))


def percentiles(values: Iterable[float], qs: Sequence[float] = (50, 95)) -> dict[str, float | None]:
    """``{"count", "p50", "p95", ..., "max"}`` of ``values`` (seconds, rounded to ms); ``None`` entries
    are skipped. The one percentile function of batchq."""
    data = sorted(float(v) for v in values if v is not None)
    out: dict[str, Any] = {"count": len(data)}
    for q in qs:
        p = percentile(data, q)
        out[f"p{q:g}"] = None if p is None else round(p, 3)
    out["max"] = round(data[-1], 3) if data else None
    return out


def _span(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    # Clocks of SQS, the worker and the drainer differ slightly: a negative span is skew, not lag.
    return max(0.0, (end - start).total_seconds())


def peak_waiting(intervals: Iterable[tuple[datetime, datetime]]) -> int:
    """Most intervals open at one instant: with (enqueued, first received) pairs, the peak number of
    payloads waiting in the input queue (not counting retries)."""
    events: list[tuple[datetime, int]] = []
    for start, end in intervals:
        events.append((start, 1))
        events.append((end, -1))
    # At equal instants close before open: a payload taken the moment another arrives is not both.
    events.sort(key=lambda e: (e[0], e[1]))
    peak = current = 0
    for _, delta in events:
        current += delta
        peak = max(peak, current)
    return peak


def run_lag(rows: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """A run's lag figures from its result rows (mappings with ``enqueued_at``, ``first_received_at``,
    ``started_at``, ``finished_at``, ``result_sent_at``, ``applied_at`` as aware datetimes or None, and
    ``status``). Durations in seconds. JSON-friendly; the shape the Batch view reads."""
    input_wait: list[float] = []
    processing: list[float] = []
    results_wait: list[float] = []
    waiting: list[tuple[datetime, datetime]] = []
    first_enqueued: datetime | None = None
    last_applied: datetime | None = None
    results = failures = 0
    for r in rows:
        results += 1
        failures += r.get("status") == "failed"
        enq, recv = r.get("enqueued_at"), r.get("first_received_at")
        for values, span in (
            (input_wait, _span(enq, recv)),
            (processing, _span(r.get("started_at"), r.get("finished_at"))),
            (results_wait, _span(r.get("result_sent_at"), r.get("applied_at"))),
        ):
            if span is not None:
                values.append(span)
        if enq is not None and recv is not None and recv >= enq:
            waiting.append((enq, recv))
        if enq is not None and (first_enqueued is None or enq < first_enqueued):
            first_enqueued = enq
        applied = r.get("applied_at")
        if applied is not None and (last_applied is None or applied > last_applied):
            last_applied = applied
    drain = _span(first_enqueued, last_applied)
    return {
        "input_wait": percentiles(input_wait),
        "processing": percentiles(processing),
        "results_wait": percentiles(results_wait),
        "time_to_drain_s": None if drain is None else round(drain, 3),
        "peak_depth": peak_waiting(waiting) if waiting else None,
        "results": results,
        "failures": failures,
        "source": SOURCE_SQS_TIMESTAMPS,
    }


def describe_lag(lag: Mapping[str, Any]) -> str:
    """One human line of :func:`run_lag`'s figures (seconds)."""

    def part(name: str, label: str) -> str:
        p = lag.get(name) or {}
        if not p.get("count"):
            return f"{label} n/a"
        return f"{label} p50 {p['p50']:g}s p95 {p['p95']:g}s max {p['max']:g}s"

    drain = lag.get("time_to_drain_s")
    return (
        f"queue lag ({lag.get('source')}): {part('input_wait', 'input wait')}; {part('processing', 'processing')}; "
        f"{part('results_wait', 'results wait')}; time to drain {'n/a' if drain is None else f'{drain:g}s'}; "
        f"peak depth {lag.get('peak_depth') if lag.get('peak_depth') is not None else 'n/a'}; failures {lag.get('failures', 0)}"
    )


#: Partitions listed by name in :func:`partition_lag` (the slowest).
SLOWEST_SHOWN = 10


def partition_lag(rows: Iterable[Mapping[str, Any]], slowest: int = SLOWEST_SHOWN) -> dict[str, Any]:
    """Per-tenant lag across a run's partitions (rows with ``partition``, ``outcome``,
    ``input_wait_s`` = the partition's median input wait, ``time_to_last_s`` = run's first enqueue →
    the partition's last result): the distribution of both across partitions, and the ``slowest``
    partitions, slowest first (open partitions first: they are not done at all)."""
    rows = list(rows)
    done = [r for r in rows if r.get("time_to_last_s") is not None and r.get("outcome") != "open"]
    still_open = [r for r in rows if r.get("outcome") == "open"]
    ranked = still_open + sorted(done, key=lambda r: r["time_to_last_s"], reverse=True)
    return {
        "partitions": len(rows),
        "closed": len(rows) - len(still_open),
        "failed": sum(1 for r in rows if r.get("outcome") == "failed"),
        "time_to_last": percentiles((r["time_to_last_s"] for r in done), (50, 95)),
        "input_wait": percentiles((r.get("input_wait_s") for r in rows), (50, 95)),
        "slowest": [
            {"partition": r["partition"], "outcome": r.get("outcome"), "time_to_last_s": r.get("time_to_last_s"), "input_wait_s": r.get("input_wait_s")}
            for r in ranked[:slowest]
        ],
    }


def describe_partition_lag(lag: Mapping[str, Any]) -> str:
    """One human line of :func:`partition_lag`."""
    t, w = lag.get("time_to_last") or {}, lag.get("input_wait") or {}
    def label(s: Mapping[str, Any]) -> str:
        return "open" if s.get("outcome") == "open" else f"{s.get('time_to_last_s')}s"

    slow = ", ".join(f"{s['partition']} ({label(s)})" for s in lag.get("slowest", [])[:3])
    return (
        f"partitions: {lag.get('closed', 0)}/{lag.get('partitions', 0)} closed, {lag.get('failed', 0)} failed; time to last result "
        f"p50 {t.get('p50')}s p95 {t.get('p95')}s max {t.get('max')}s; input wait p50 {w.get('p50')}s max {w.get('max')}s; "
        f"slowest: {slow or 'n/a'}"
    )


__all__ = ["LAG_XCOM_KEY", "describe_partition_lag", "partition_lag", "SOURCE_SQS_TIMESTAMPS", "describe_lag", "peak_waiting", "percentile", "percentiles", "run_lag", "sqs_times"]
