"""Backlog trend over a window of snapshots: slope, drain rate, ETA, a bounded series, and the queue gauges.

Pure math; the waits (:mod:`batchq.monitor.waits`), the alerts and the Batch view all read these.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from batchq.sqs.snapshot import QueueSnapshot


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

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready state (points must themselves be JSON values)."""
        return {"max_points": self.max_points, "points": list(self.points), "stride": self.stride, "seen": self.seen, "last": self.last}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BoundedSeries:
        return cls(
            max_points=int(data["max_points"]),
            points=list(data["points"]),
            stride=int(data["stride"]),
            seen=int(data["seen"]),
            last=data.get("last"),
        )


def queue_gauges(snapshot: QueueSnapshot, eta_s: float | None = None) -> dict[str, float]:
    """The queue gauges of one snapshot (``batchq.queue.<name>``), as the sensor and trigger emit them."""
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
