"""The one percentile function and a run's lag figures (batchq.monitor.lag), and the result fields they read."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from batchq.messages import parse_result
from batchq.monitor.lag import (
    describe_lag,
    peak_waiting,
    percentile,
    percentiles,
    run_lag,
    sqs_times,
)

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def at(s: float) -> datetime:
    return T0 + timedelta(seconds=s)


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([1.0], 50, 1.0),
        ([1.0, 2.0], 50, 1.5),
        ([1.0, 2.0, 3.0, 4.0, 5.0], 50, 3.0),
        ([1.0, 2.0, 3.0, 4.0, 5.0], 95, 4.8),  # numpy.percentile(..., 95) == 4.8
        (list(map(float, range(1, 101))), 95, 95.05),
        ([3.0, 7.0], 0, 3.0),
        ([3.0, 7.0], 100, 7.0),
    ],
)
def test_percentile_interpolates_between_closest_ranks(values, q, expected):
    assert percentile(values, q) == pytest.approx(expected)


def test_percentile_of_nothing_and_bad_q():
    assert percentile([], 50) is None
    with pytest.raises(ValueError, match="within 0..100"):
        percentile([1.0], 101)


def test_percentiles_sorts_skips_none_and_reports_max():
    assert percentiles([5, None, 1, 3]) == {"count": 3, "p50": 3.0, "p95": 4.8, "max": 5.0}
    assert percentiles([]) == {"count": 0, "p50": None, "p95": None, "max": None}


def test_peak_waiting_counts_overlapping_intervals_and_not_touching_ones():
    assert peak_waiting([(at(0), at(10)), (at(1), at(5)), (at(2), at(3))]) == 3
    # one taken the instant the next arrives: never both waiting
    assert peak_waiting([(at(0), at(1)), (at(1), at(2))]) == 1


def row(enq, recv, start, fin, sent, applied, status="succeeded"):
    return {"enqueued_at": at(enq), "first_received_at": at(recv), "started_at": at(start), "finished_at": at(fin),
            "result_sent_at": at(sent), "applied_at": at(applied), "status": status}


def test_run_lag_figures_from_rows():
    rows = [
        row(0, 1, 1, 3, 4, 6),
        row(0, 2, 2, 5, 6, 7),
        row(0, 4, 4, 5, 6, 10, status="failed"),
        # a result from an older worker: only what it has counts
        {"status": "succeeded", "finished_at": at(9), "applied_at": at(12)},
    ]
    lag = run_lag(rows)
    assert lag["input_wait"] == {"count": 3, "p50": 2.0, "p95": 3.8, "max": 4.0}
    assert lag["processing"] == {"count": 3, "p50": 2.0, "p95": 2.9, "max": 3.0}
    assert lag["results_wait"] == {"count": 3, "p50": 2.0, "p95": 3.8, "max": 4.0}
    assert lag["time_to_drain_s"] == 12.0  # first enqueued (0) → last applied (12)
    assert lag["peak_depth"] == 3
    assert (lag["results"], lag["failures"], lag["source"]) == (4, 1, "sqs-timestamps")
    assert "input wait p50 2s p95 3.8s max 4s" in describe_lag(lag)


def test_run_lag_of_no_rows_and_clock_skew():
    assert run_lag([])["input_wait"]["count"] == 0
    assert run_lag([])["time_to_drain_s"] is None
    # the worker's clock behind SQS's: a negative span is skew, counted as 0, not as negative lag
    assert run_lag([row(5, 4, 4, 5, 6, 7)])["input_wait"]["max"] == 0.0


def test_sqs_times_reads_receive_and_lambda_shapes_and_ignores_junk():
    sent, first = sqs_times({"Attributes": {"SentTimestamp": "1767225600000", "ApproximateFirstReceiveTimestamp": "1767225601500"}})
    assert (sent, first) == (T0, at(1.5))
    assert sqs_times({"attributes": {"SentTimestamp": "1767225600000"}}) == (T0, None)
    assert sqs_times({"Attributes": {"SentTimestamp": "soon"}}) == (None, None)
    assert sqs_times({}) == (None, None)


def test_results_without_lag_fields_still_parse_and_new_ones_round_trip():
    old = '{"schema_version":1,"batch":"b","run_id":"r","key":"k","status":"succeeded","finished_at":"2026-01-01T00:00:00+00:00"}'
    r = parse_result(old)
    assert (r.enqueued_at, r.first_received_at, r.result_sent_at) == (None, None, None)
    stamped = r.model_copy(update={"enqueued_at": T0, "first_received_at": at(2)})
    again = parse_result(stamped.model_dump_json())
    assert (again.enqueued_at, again.first_received_at) == (T0, at(2))
