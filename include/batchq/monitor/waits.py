"""The wait decisions: the input queue drained and stable (:class:`InputWait`), results available
(:class:`ResultsWait`), and the drain curve of the results queue (:class:`DrainCurve`).

No I/O and no Airflow here: the sensor's poke path, the triggers and the plugin feed snapshots in and read
decisions out, so they cannot disagree.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, ClassVar

from batchq.monitor.trend import BoundedSeries, eta_seconds, queue_gauges
from batchq.sqs.snapshot import QueueSnapshot

# -- the wait decisions ----------------------------------------------------------------------------------

#: How long the input queue must read empty before it counts as drained. AWS advises about a minute for
#: the approximate counters to settle. The one default of the sensor, the trigger and
#: ``[batchq] wait_stable_for_s``.
DEFAULT_STABLE_FOR_S = 60.0
#: Snapshots the ETA is estimated over (the drain rate of the recent window).
ETA_WINDOW = 20
#: Field names of one :func:`series_point`.
SERIES_FIELDS = ("t", "visible", "in_flight", "delayed", "dlq")
#: Fields appended to :data:`SERIES_FIELDS` when the wait also watches the results queue (counts only;
#: ``None`` in a point whose results poll failed).
RESULTS_SERIES_FIELDS = ("results_visible", "results_in_flight")


class WaitReason(str, Enum):
    """Why a wait ended (a trigger event's ``reason``)."""

    DRAINED = "drained"
    AVAILABLE = "available"
    TIMEOUT = "timeout"
    DLQ_THRESHOLD = "dlq_threshold"
    ERROR = "error"

    @property
    def succeeded(self) -> bool:
        return self in (WaitReason.DRAINED, WaitReason.AVAILABLE)


def series_point(snap: QueueSnapshot, results: QueueSnapshot | None = None, *, with_results: bool = False) -> list[float | int | None]:
    """One compact sample: ``[t, visible, in_flight, delayed, dlq]`` (dlq -1 when not watched); with
    ``with_results`` also ``[results_visible, results_in_flight]`` from ``results`` (``None`` each when
    that poll failed: unknown, not zero)."""
    dlq = -1 if snap.dlq_visible is None else snap.dlq_visible
    point: list[float | int | None] = [round(snap.taken_at, 3), snap.visible, snap.in_flight, snap.delayed, dlq]
    if with_results:
        point += [None, None] if results is None else [results.visible, results.in_flight]
    return point


@dataclass(frozen=True)
class WaitOutcome:
    """How a wait ended: the reason, the last snapshot, and wait-specific ``details`` (JSON primitives).

    :meth:`to_dict` is a trigger's event payload; :meth:`from_dict` reads it back in the sensor's resume
    method (also payloads of triggers serialised by older releases).
    """

    reason: WaitReason
    snapshot: QueueSnapshot | None
    waited_s: float
    message: str = ""
    details: Mapping[str, Any] = field(default_factory=dict)

    _CORE: ClassVar[frozenset[str]] = frozenset({"status", "reason", "snapshot", "waited_s", "message"})

    @property
    def succeeded(self) -> bool:
        return self.reason.succeeded

    def describe_snapshot(self) -> str:
        return self.snapshot.describe() if self.snapshot else "no snapshot"

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": "success" if self.succeeded else "failed",
            "reason": self.reason.value,
            "snapshot": None if self.snapshot is None else self.snapshot.to_dict(),
            "waited_s": self.waited_s,
            "message": self.message,
            **self.details,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WaitOutcome:
        try:
            reason = WaitReason(data.get("reason"))
        except ValueError:
            known = ", ".join(r.value for r in WaitReason)
            raise ValueError(f"unknown wait reason {data.get('reason')!r} (known: {known})") from None
        snapshot = data.get("snapshot")
        return cls(
            reason=reason,
            snapshot=None if not snapshot else QueueSnapshot.from_dict(snapshot),
            waited_s=float(data.get("waited_s") or 0.0),
            message=str(data.get("message") or ""),
            details={k: v for k, v in data.items() if k not in cls._CORE},
        )


@dataclass(kw_only=True)
class QueueWait:
    """What every wait shares: feed it snapshots with :meth:`step`; it answers with an outcome once the
    wait is over. Subclasses decide in :meth:`_observe`; the deadline is checked here, after it, so a
    snapshot that completes the wait at the deadline still counts.

    :param started_at: epoch seconds the wait began (``waited_s`` counts from it).
    :param deadline: epoch seconds after which the wait ends ``timeout`` with the last snapshot
        (absolute, so a restart does not extend it); ``None`` waits forever.
    """

    started_at: float
    deadline: float | None = None
    last: QueueSnapshot | None = None

    #: The timeout message's subject ("<what> by the deadline").
    not_done: ClassVar[str] = "wait not over"

    def step(self, snapshot: QueueSnapshot | None, now: float, results: QueueSnapshot | None = None) -> WaitOutcome | None:
        """Feed one poll (``None``: the poll failed, only the deadline can end the wait). ``results``: the
        results queue's counts at the same poll, recorded by waits that keep a series; never decides."""
        if snapshot is not None:
            self.last = snapshot
            outcome = self._observe(snapshot, now, results)
            if outcome is not None:
                return outcome
        if self.deadline is not None and now >= self.deadline:
            return self.outcome(WaitReason.TIMEOUT, now, f"{self.not_done} by the deadline; last snapshot: {self._last_described()}")
        return None

    def fail(self, message: str, now: float) -> WaitOutcome:
        """The ``error`` outcome (polling failed for good), with whatever was seen so far."""
        return self.outcome(WaitReason.ERROR, now, message)

    def outcome(self, reason: WaitReason, now: float, message: str = "") -> WaitOutcome:
        return WaitOutcome(reason, self.last, round(now - self.started_at, 3), message, self._details())

    def gauges(self) -> dict[str, float]:
        """The metrics to emit for the newest snapshot."""
        return {} if self.last is None else queue_gauges(self.last)

    def _observe(self, snapshot: QueueSnapshot, now: float, results: QueueSnapshot | None = None) -> WaitOutcome | None:
        raise NotImplementedError

    def _details(self) -> dict[str, Any]:
        return {}

    def _last_described(self) -> str:
        return self.last.describe() if self.last else "no snapshot"


@dataclass(kw_only=True)
class InputWait(QueueWait):
    """The input queue's wait: done when backlog (visible + in flight + delayed) == 0 in every snapshot
    for ``stable_for_s``; fails early when the DLQ reaches ``dlq_threshold``; keeps the backlog series
    (bounded, evenly downsampled) and the recent snapshots for the ETA gauge.

    The state is JSON-serialisable (:meth:`to_dict` / :meth:`from_dict`).

    :param stable_for_s: how long the queue must read empty continuously (0: the first empty snapshot).
    :param dlq_threshold: end ``dlq_threshold`` as soon as the DLQ holds at least this many messages.
    :param max_points: bound of the backlog series.
    :param results_watched: the series also carries :data:`RESULTS_SERIES_FIELDS` (the caller passes
        the results queue's counts to :meth:`step`); off for states saved before it existed.
    """

    stable_for_s: float = DEFAULT_STABLE_FOR_S
    dlq_threshold: int | None = None
    max_points: int = 500
    results_watched: bool = False
    empty_since: float | None = None
    series: BoundedSeries | None = None
    recent: list[QueueSnapshot] = field(default_factory=list)

    not_done: ClassVar[str] = "queue not drained"

    def __post_init__(self) -> None:
        if self.stable_for_s < 0:
            raise ValueError(f"stable_for_s must be >= 0, got {self.stable_for_s}")
        if self.dlq_threshold is not None and self.dlq_threshold < 1:
            raise ValueError(f"dlq_threshold must be >= 1 (or None), got {self.dlq_threshold}")
        if self.max_points < 2:
            raise ValueError(f"max_points must be >= 2, got {self.max_points}")
        if self.series is None:
            self.series = BoundedSeries(self.max_points)

    @property
    def series_fields(self) -> list[str]:
        return [*SERIES_FIELDS, *(RESULTS_SERIES_FIELDS if self.results_watched else ())]

    def _observe(self, snapshot: QueueSnapshot, now: float, results: QueueSnapshot | None = None) -> WaitOutcome | None:
        self.series.add(series_point(snapshot, results, with_results=self.results_watched))
        self.recent = [*self.recent, snapshot][-ETA_WINDOW:]
        dlq = snapshot.dlq_visible or 0
        if self.dlq_threshold is not None and dlq >= self.dlq_threshold:
            return self.outcome(WaitReason.DLQ_THRESHOLD, now, f"DLQ holds {dlq} message(s), threshold {self.dlq_threshold}")
        # Approximate counters can read 0 for one poll while messages are still moving: trust only an
        # unbroken run of empty snapshots.
        if not snapshot.is_empty:
            self.empty_since = None
            return None
        if self.empty_since is None:
            self.empty_since = snapshot.taken_at
        if snapshot.taken_at - self.empty_since >= self.stable_for_s:
            return self.outcome(WaitReason.DRAINED, now, f"empty for {snapshot.taken_at - self.empty_since:.1f}s")
        return None

    def _details(self) -> dict[str, Any]:
        return {
            "series_fields": self.series_fields,
            "series": self.series.values(),
            "stable_for_s": self.stable_for_s,
            "empty_since": self.empty_since,
        }

    def gauges(self) -> dict[str, float]:
        """The metrics to emit for the newest snapshot (with the ETA over the recent window)."""
        return {} if self.last is None else queue_gauges(self.last, eta_seconds(self.recent))

    def to_dict(self) -> dict[str, Any]:
        return {
            "started_at": self.started_at,
            "deadline": self.deadline,
            "stable_for_s": self.stable_for_s,
            "dlq_threshold": self.dlq_threshold,
            "max_points": self.max_points,
            "results_watched": self.results_watched,
            "empty_since": self.empty_since,
            "last": None if self.last is None else self.last.to_dict(),
            "series": self.series.to_dict(),
            "recent": [s.to_dict() for s in self.recent],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> InputWait:
        return cls(
            started_at=float(data["started_at"]),
            deadline=None if data.get("deadline") is None else float(data["deadline"]),
            stable_for_s=float(data["stable_for_s"]),
            dlq_threshold=None if data.get("dlq_threshold") is None else int(data["dlq_threshold"]),
            max_points=int(data["max_points"]),
            results_watched=bool(data.get("results_watched", False)),
            empty_since=None if data.get("empty_since") is None else float(data["empty_since"]),
            last=None if not data.get("last") else QueueSnapshot.from_dict(data["last"]),
            series=BoundedSeries.from_dict(data["series"]),
            recent=[QueueSnapshot.from_dict(s) for s in data.get("recent", [])],
        )


@dataclass(kw_only=True)
class ResultsWait(QueueWait):
    """The results queue's wait: done when it has at least ``min_visible`` visible messages (the drain
    operator's "nothing to do yet" wait; nothing is received).

    :param min_visible: visible messages that count as "available" (>= 1).
    """

    min_visible: int = 1

    not_done: ClassVar[str] = "no results arrived"

    def __post_init__(self) -> None:
        if self.min_visible < 1:
            raise ValueError(f"min_visible must be >= 1, got {self.min_visible}")

    def _observe(self, snapshot: QueueSnapshot, now: float, results: QueueSnapshot | None = None) -> WaitOutcome | None:
        if snapshot.visible >= self.min_visible:
            return self.outcome(WaitReason.AVAILABLE, now, f"{snapshot.visible} visible")
        return None


# -- the drain operator's results curve ------------------------------------------------------------------

#: Field names of one point of :class:`DrainCurve` (the drain operator's XCom ``results_series``).
DRAIN_SERIES_FIELDS = ("t", "results_visible", "results_in_flight", "applied", "pace_limit", "rtt_ms", "baseline_ms")
#: Seconds between two samples of a :class:`DrainCurve` (one GetQueueAttributes each).
DRAIN_SAMPLE_INTERVAL_S = 2.0


@dataclass(kw_only=True)
class DrainCurve:
    """The second half of the drain curve: the results queue falling to 0 while the drain operator
    applies results — ``[t, results_visible, results_in_flight, applied, pace_limit, rtt_ms,
    baseline_ms]`` points (``applied``: results applied by this task so far, across its deferrals; the
    last three: the drainer's pace controller then, ``None`` before its first window or without adaptive
    pace), bounded like the wait's series.

    The caller asks :meth:`due` before paying for a snapshot, so sampling costs at most one
    GetQueueAttributes per ``interval_s``. The state is JSON-serialisable (it rides the deferral).

    :param interval_s: least seconds between two samples (``force`` bypasses it: start and end of a pass).
    :param max_points: bound of the series.
    """

    interval_s: float = DRAIN_SAMPLE_INTERVAL_S
    max_points: int = 500
    series: BoundedSeries | None = None
    last_t: float | None = None

    def __post_init__(self) -> None:
        if self.interval_s < 0:
            raise ValueError(f"interval_s must be >= 0, got {self.interval_s}")
        if self.max_points < 2:
            raise ValueError(f"max_points must be >= 2, got {self.max_points}")
        if self.series is None:
            self.series = BoundedSeries(self.max_points)

    def due(self, now: float) -> bool:
        return self.last_t is None or now - self.last_t >= self.interval_s

    def add(self, snapshot: QueueSnapshot, applied: int, pace: Mapping[str, Any] | None = None) -> None:
        """One point; ``pace`` is :meth:`batchq.drain.pace.PaceState.to_dict` (``limit``, ``rtt_ms``,
        ``baseline_ms``) or ``None``."""
        self.last_t = snapshot.taken_at
        pace = pace or {}
        self.series.add([round(snapshot.taken_at, 3), snapshot.visible, snapshot.in_flight, int(applied), pace.get("limit"), pace.get("rtt_ms"), pace.get("baseline_ms")])

    def to_xcom(self) -> dict[str, Any]:
        """``{"fields": [...DRAIN_SERIES_FIELDS], "points": [[t, results_visible, results_in_flight, applied,
        pace_limit, rtt_ms, baseline_ms], ...]}``."""
        return {"fields": list(DRAIN_SERIES_FIELDS), "points": self.series.values()}

    def to_dict(self) -> dict[str, Any]:
        return {"interval_s": self.interval_s, "max_points": self.max_points, "series": self.series.to_dict(), "last_t": self.last_t}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DrainCurve:
        return cls(
            interval_s=float(data.get("interval_s", DRAIN_SAMPLE_INTERVAL_S)),
            max_points=int(data["max_points"]),
            series=BoundedSeries.from_dict(data["series"]),
            last_t=None if data.get("last_t") is None else float(data["last_t"]),
        )
