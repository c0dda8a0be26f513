"""Queue-health math: snapshots, autoscaling rule, slope/rate/ETA/trend, bounded series."""

from __future__ import annotations

import pytest
from batchq.monitor.trend import BoundedSeries, backlog_slope, drain_rate, eta_seconds
from batchq.sqs.snapshot import QueueSnapshot, snapshot_from_attributes
from batchq.worker.scaling import desired_workers
from hypothesis import given, settings
from hypothesis import strategies as st


def snap(t: float, visible: int = 0, in_flight: int = 0, delayed: int = 0, dlq=None) -> QueueSnapshot:
    return QueueSnapshot(taken_at=t, visible=visible, in_flight=in_flight, delayed=delayed, dlq_visible=dlq)


def test_snapshot_from_attributes_reads_strings_and_defaults_missing_to_zero():
    s = snapshot_from_attributes(
        {"ApproximateNumberOfMessages": "7", "ApproximateNumberOfMessagesNotVisible": "2"}, 10.0,
        {"ApproximateNumberOfMessages": "3"},
    )
    assert (s.visible, s.in_flight, s.delayed, s.dlq_visible) == (7, 2, 0, 3)
    assert s.backlog == 9 and not s.is_empty
    assert snapshot_from_attributes({}, 1.0).dlq_visible is None


def test_backlog_counts_in_flight_and_delayed():
    assert snap(0, 1, 2, 3).backlog == 6
    assert not snap(0, 0, 1, 0).is_empty and not snap(0, 0, 0, 1).is_empty
    assert snap(0).is_empty


def test_snapshot_round_trips_through_dict():
    s = snap(12.5, 1, 2, 3, dlq=4)
    assert QueueSnapshot.from_dict(s.to_dict()) == s
    assert QueueSnapshot.from_dict(snap(1).to_dict()).dlq_visible is None
    assert "dlq=4" in s.describe() and "in_flight=2" in s.describe()


@pytest.mark.parametrize(
    "backlog, per_worker, lo, hi, want",
    [(0, 100, 0, 10, 0), (1, 100, 0, 10, 1), (100, 100, 0, 10, 1), (101, 100, 0, 10, 2),
     (10_000, 100, 0, 10, 10), (0, 100, 2, 10, 2), (-5, 10, 0, 3, 0)],
)
def test_desired_workers(backlog, per_worker, lo, hi, want):
    assert desired_workers(backlog, per_worker, lo, hi) == want


def test_desired_workers_rejects_nonsense():
    with pytest.raises(ValueError, match="backlog_per_worker"):
        desired_workers(10, 0)
    with pytest.raises(ValueError, match="min_workers"):
        desired_workers(10, 1, 5, 2)


def test_slope_rate_eta_on_a_linear_drain():
    samples = [snap(t, visible=1000 - 50 * t) for t in range(0, 10)]
    assert backlog_slope(samples) == pytest.approx(-50)
    assert drain_rate(samples) == pytest.approx(50)
    assert eta_seconds(samples) == pytest.approx((1000 - 50 * 9) / 50)


def test_eta_edge_cases():
    assert eta_seconds([]) is None
    assert eta_seconds([snap(5, visible=3), snap(6)]) == 0.0
    assert eta_seconds([snap(t, visible=10 + t) for t in range(4)]) is None  # growing: no ETA
    assert drain_rate([snap(t, visible=10 + t) for t in range(4)]) == 0.0


@settings(max_examples=80, deadline=None)
@given(st.integers(2, 40), st.integers(0, 3000))
def test_bounded_series_stays_bounded_and_keeps_the_ends(max_points, n):
    series = BoundedSeries(max_points=max_points)
    for i in range(n):
        series.add(i)
    values = series.values()
    assert len(values) <= max_points
    if n:
        assert values[0] == 0, "the start of the curve is kept"
        assert values[-1] == n - 1, "the newest point is always last"
        assert values == sorted(set(values))
        kept = series.points
        steps = {b - a for a, b in zip(kept, kept[1:])}
        assert len(steps) <= 1, "kept points are evenly spaced"


def test_bounded_series_rejects_a_useless_size():
    with pytest.raises(ValueError):
        BoundedSeries(max_points=1).add(1)
