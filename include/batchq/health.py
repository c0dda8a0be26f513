"""Pure queue-health math: snapshots, drained-and-stable, backlog trend, drain rate, ETA and the
autoscaling rule. No I/O here: the sensor, the trigger, the worker supervisor and the plugin page all
feed snapshots in and read decisions out, so they cannot disagree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

# The autoscaling rule lives with the other scaling policies; re-exported for existing callers.
from batchq.capacity.rules import desired_workers  # noqa: F401

#: The GetQueueAttributes names a snapshot needs.
COUNT_ATTRIBUTES = (
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible",
    "ApproximateNumberOfMessagesDelayed",
)


@dataclass(frozen=True)
class QueueSnapshot:
    """Counts of one queue at one instant (``taken_at``: epoch seconds).

    SQS counters are approximate and can lag; never trust a single snapshot to mean "empty"
    (see :class:`DrainWatch`).
    """

    taken_at: float
    visible: int
    in_flight: int
    delayed: int
    dlq_visible: int | None = None

    @property
    def backlog(self) -> int:
        """Messages not yet finished: visible + in flight + delayed."""
        return self.visible + self.in_flight + self.delayed

    @property
    def is_empty(self) -> bool:
        return self.backlog == 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> QueueSnapshot:
        return cls(
            taken_at=float(data["taken_at"]),
            visible=int(data["visible"]),
            in_flight=int(data["in_flight"]),
            delayed=int(data["delayed"]),
            dlq_visible=None if data.get("dlq_visible") is None else int(data["dlq_visible"]),
        )

    def describe(self) -> str:
        dlq = "" if self.dlq_visible is None else f", dlq={self.dlq_visible}"
        return f"visible={self.visible}, in_flight={self.in_flight}, delayed={self.delayed}{dlq}"


def snapshot_from_attributes(
    attributes: Mapping[str, Any], taken_at: float, dlq_attributes: Mapping[str, Any] | None = None
) -> QueueSnapshot:
    """Build a snapshot from GetQueueAttributes ``Attributes`` (missing counters read as 0)."""

    def count(attrs: Mapping[str, Any], name: str) -> int:
        return int(attrs.get(name, 0) or 0)

    return QueueSnapshot(
        taken_at=taken_at,
        visible=count(attributes, COUNT_ATTRIBUTES[0]),
        in_flight=count(attributes, COUNT_ATTRIBUTES[1]),
        delayed=count(attributes, COUNT_ATTRIBUTES[2]),
        dlq_visible=None if dlq_attributes is None else count(dlq_attributes, COUNT_ATTRIBUTES[0]),
    )


@dataclass
class DrainWatch:
    """Decides "drained": backlog == 0 in every snapshot for at least ``stable_for_s`` seconds.

    :param stable_for_s: how long the queue must read empty continuously. AWS advises ~60 s for the
        approximate counters; tests use a fraction of a second against exact emulators.
    """

    stable_for_s: float
    empty_since: float | None = None

    def observe(self, snapshot: QueueSnapshot) -> bool:
        if not snapshot.is_empty:
            self.empty_since = None
            return False
        if self.empty_since is None:
            self.empty_since = snapshot.taken_at
        return snapshot.taken_at - self.empty_since >= self.stable_for_s


def backlog_slope(samples: Sequence[QueueSnapshot]) -> float | None:
    """Least-squares slope of backlog over time, messages/s (negative = draining). None if < 2 points
    or no time spread."""
    if len(samples) < 2:
        return None
    ts = [s.taken_at for s in samples]
    ys = [s.backlog for s in samples]
    t_mean = sum(ts) / len(ts)
    y_mean = sum(ys) / len(ys)
    var = sum((t - t_mean) ** 2 for t in ts)
    if var == 0:
        return None
    return sum((t - t_mean) * (y - y_mean) for t, y in zip(ts, ys)) / var


def drain_rate(samples: Sequence[QueueSnapshot]) -> float | None:
    """Messages/s leaving the backlog over the window (>= 0), or None when unknown."""
    slope = backlog_slope(samples)
    return None if slope is None else max(0.0, -slope)


def eta_seconds(samples: Sequence[QueueSnapshot]) -> float | None:
    """Seconds until the backlog reaches zero at the current drain rate; 0 if empty; None if not
    draining."""
    if not samples:
        return None
    if samples[-1].is_empty:
        return 0.0
    rate = drain_rate(samples)
    if not rate:
        return None
    return samples[-1].backlog / rate


def backlog_trend(samples: Sequence[QueueSnapshot], tolerance_per_s: float = 0.5) -> str:
    """``growing`` / ``shrinking`` / ``flat`` / ``unknown``: alert on ``growing`` before it is an incident."""
    slope = backlog_slope(samples)
    if slope is None:
        return "unknown"
    if slope > tolerance_per_s:
        return "growing"
    if slope < -tolerance_per_s:
        return "shrinking"
    return "flat"


@dataclass
class BoundedSeries:
    """A time series that never holds more than ``max_points`` items however long it runs.

    Every ``stride``-th sample is kept; when full, every other kept point is dropped and the stride
    doubles, so the series stays evenly spaced over the whole wait. The newest sample is always kept
    as ``last`` (so a chart ends at "now").
    """

    max_points: int = 500
    points: list[Any] = field(default_factory=list)
    stride: int = 1
    seen: int = 0
    last: Any = None

    def add(self, point: Any) -> None:
        if self.max_points < 2:
            raise ValueError("max_points must be >= 2")
        if self.seen % self.stride == 0:
            self.points.append(point)
            if len(self.points) > self.max_points:
                self.points = self.points[::2]
                self.stride *= 2
        self.seen += 1
        self.last = point

    def values(self) -> list[Any]:
        """Kept points plus the newest one, at most ``max_points`` in all."""
        out = list(self.points)
        if self.last is not None and (not out or out[-1] is not self.last):
            if len(out) >= self.max_points:
                out.pop()  # make room for "now" without losing the start of the curve
            out.append(self.last)
        return out
