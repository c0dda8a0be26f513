"""The wait decisions (pure, fake clock): InputWait's stability window, DLQ threshold, deadline, series and
gauges; ResultsWait; WaitOutcome as an event payload; state round trips."""

from __future__ import annotations

import json

import pytest
from batchq.monitor.trend import BoundedSeries
from batchq.monitor.waits import (
    DRAIN_SERIES_FIELDS,
    RESULTS_SERIES_FIELDS,
    SERIES_FIELDS,
    DrainCurve,
    InputWait,
    ResultsWait,
    WaitOutcome,
    WaitReason,
)
from batchq.sqs.snapshot import QueueSnapshot
from hypothesis import given, settings
from hypothesis import strategies as st


def snap(t: float, visible: int = 0, in_flight: int = 0, delayed: int = 0, dlq=None) -> QueueSnapshot:
    return QueueSnapshot(taken_at=t, visible=visible, in_flight=in_flight, delayed=delayed, dlq_visible=dlq)


def feed(wait, snaps):
    """Step through ``snaps`` (clock = each snapshot's time); return (index, outcome) of the first outcome."""
    for i, s in enumerate(snaps):
        outcome = wait.step(s, s.taken_at)
        if outcome is not None:
            return i, outcome
    return None, None


# -- InputWait: the stability window ---------------------------------------------------------------------


def test_drained_needs_an_unbroken_empty_window():
    w = InputWait(started_at=0, stable_for_s=10)
    assert w.step(snap(0), 0) is None  # empty, but only just
    assert w.step(snap(5), 5) is None
    out = w.step(snap(10), 10.2)
    assert out.reason is WaitReason.DRAINED and out.succeeded
    assert out.waited_s == 10.2 and out.snapshot == snap(10)
    assert out.details["empty_since"] == 0


@pytest.mark.parametrize("busy", [snap(6, visible=1), snap(6, in_flight=1), snap(6, delayed=1)])
def test_any_message_in_the_backlog_resets_the_window(busy):
    w = InputWait(started_at=0, stable_for_s=10)
    i, out = feed(w, [snap(0), busy, snap(12), snap(21), snap(22)])
    assert i == 4 and out.reason is WaitReason.DRAINED
    assert out.details["empty_since"] == 12


def test_zero_window_accepts_the_first_empty_snapshot():
    assert InputWait(started_at=0, stable_for_s=0).step(snap(3), 3).reason is WaitReason.DRAINED
    assert InputWait(started_at=0, stable_for_s=0).step(snap(3, delayed=1), 3) is None


def test_window_is_measured_on_snapshot_times_not_the_callers_clock():
    # A slow caller (clock far ahead) does not make one empty snapshot count as a stable window.
    w = InputWait(started_at=0, stable_for_s=10)
    assert w.step(snap(0), 100) is None
    assert w.step(snap(9), 200) is None
    assert w.step(snap(10), 300).reason is WaitReason.DRAINED


# -- InputWait: DLQ threshold and deadline -----------------------------------------------------------------


def test_dlq_threshold_ends_the_wait_even_while_draining():
    w = InputWait(started_at=0, stable_for_s=0, dlq_threshold=2)
    assert w.step(snap(1, visible=5, dlq=1), 1) is None
    out = w.step(snap(2, dlq=2), 2)  # empty AND over the threshold: the threshold wins
    assert out.reason is WaitReason.DLQ_THRESHOLD and not out.succeeded
    assert "DLQ holds 2 message(s), threshold 2" in out.message


def test_no_dlq_threshold_means_the_dlq_never_ends_the_wait():
    w = InputWait(started_at=0, stable_for_s=0)
    assert w.step(snap(1, visible=1, dlq=10_000), 1) is None


def test_deadline_reports_the_last_snapshot():
    w = InputWait(started_at=100, stable_for_s=5, deadline=110)
    assert w.step(snap(101, visible=3, in_flight=1, dlq=0), 101) is None
    out = w.step(snap(110, visible=2), 110)
    assert out.reason is WaitReason.TIMEOUT and out.waited_s == 10
    assert "visible=2" in out.message and "not drained by the deadline" in out.message


def test_a_failed_poll_can_still_time_out_with_the_previous_snapshot():
    w = InputWait(started_at=0, deadline=10)
    w.step(snap(1, visible=7), 1)
    assert w.step(None, 5) is None
    out = w.step(None, 10)
    assert out.reason is WaitReason.TIMEOUT and out.snapshot == snap(1, visible=7)
    assert InputWait(started_at=0, deadline=1).step(None, 2).message.endswith("no snapshot")


def test_drained_at_the_deadline_counts_as_drained():
    w = InputWait(started_at=0, stable_for_s=0, deadline=5)
    assert w.step(snap(5), 5).reason is WaitReason.DRAINED


def test_fail_carries_what_was_seen():
    w = InputWait(started_at=0)
    w.step(snap(1, visible=2), 1)
    out = w.fail("EndpointConnectionError: nope", 4)
    assert out.reason is WaitReason.ERROR and out.message.startswith("EndpointConnectionError")
    assert out.snapshot.visible == 2 and out.details["series"] == [[1, 2, 0, 0, -1]]


@pytest.mark.parametrize(
    "kwargs, match",
    [({"stable_for_s": -1}, "stable_for_s"), ({"dlq_threshold": 0}, "dlq_threshold"), ({"max_points": 1}, "max_points")],
)
def test_bad_settings_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        InputWait(started_at=0, **kwargs)


# -- InputWait: series and gauges -------------------------------------------------------------------------


def test_series_is_bounded_and_spans_the_whole_wait():
    w = InputWait(started_at=0, stable_for_s=1e9, max_points=8)
    for t in range(1000):
        assert w.step(snap(t, visible=1000 - t, dlq=0), t) is None
    points = w.outcome(WaitReason.TIMEOUT, 1000).details["series"]
    assert 2 <= len(points) <= 8
    assert points[0] == [0, 1000, 0, 0, 0] and points[-1] == [999, 1, 0, 0, 0]


def test_series_records_the_results_queue_when_watched_and_unknown_when_its_poll_failed():
    w = InputWait(started_at=0, stable_for_s=0, results_watched=True)
    assert w.step(snap(0, visible=3, dlq=0), 0, results=snap(0, visible=0)) is None
    assert w.step(snap(1, in_flight=1, dlq=0), 1, results=snap(1, visible=2, in_flight=1)) is None
    assert w.step(snap(2, in_flight=1, dlq=0), 2, results=None) is None  # the results poll failed
    out = w.step(snap(3, dlq=0), 3, results=snap(3, visible=5))
    assert out.reason is WaitReason.DRAINED
    assert out.details["series_fields"] == [*SERIES_FIELDS, *RESULTS_SERIES_FIELDS] == ["t", "visible", "in_flight", "delayed", "dlq", "results_visible", "results_in_flight"]
    assert out.details["series"] == [[0, 3, 0, 0, 0, 0, 0], [1, 0, 1, 0, 0, 2, 1], [2, 0, 1, 0, 0, None, None], [3, 0, 0, 0, 0, 5, 0]]


@pytest.mark.parametrize("results", [snap(0), snap(0, visible=9, in_flight=9, delayed=9)])
def test_the_results_queue_never_decides_the_wait(results):
    busy, empty = InputWait(started_at=0, stable_for_s=0, results_watched=True), InputWait(started_at=0, stable_for_s=0, results_watched=True)
    assert busy.step(snap(0, visible=1), 0, results=results) is None  # the input queue still has work
    assert empty.step(snap(0), 0, results=results).reason is WaitReason.DRAINED


def test_unwatched_series_keeps_the_five_fields_whatever_the_caller_passes():
    w = InputWait(started_at=0, stable_for_s=0)
    out = w.step(snap(0, dlq=1), 0, results=snap(0, visible=4))
    assert out.details["series_fields"] == list(SERIES_FIELDS) and out.details["series"] == [[0, 0, 0, 0, 1]]


def test_results_watched_survives_the_state_round_trip_and_old_states_read_as_unwatched():
    w = InputWait(started_at=0, stable_for_s=10, results_watched=True)
    w.step(snap(0, visible=1), 0, results=snap(0, visible=2))
    again = InputWait.from_dict(json.loads(json.dumps(w.to_dict())))
    assert again.results_watched and again.to_dict() == w.to_dict()
    old = w.to_dict()
    del old["results_watched"]  # a state saved before the results queue was recorded
    assert InputWait.from_dict(old).series_fields == list(SERIES_FIELDS)


def test_gauges_carry_the_eta_of_the_recent_window():
    w = InputWait(started_at=0, stable_for_s=100)
    assert w.gauges() == {}
    for t in range(5):
        w.step(snap(t, visible=100 - 10 * t, dlq=1), t)
    g = w.gauges()
    assert g == {"visible": 60, "in_flight": 0, "delayed": 0, "backlog": 60, "dlq_visible": 1, "eta_s": 6.0}
    growing = InputWait(started_at=0, stable_for_s=100)
    for t in range(5):
        growing.step(snap(t, visible=10 * t + 1), t)
    assert "eta_s" not in growing.gauges() and "dlq_visible" not in growing.gauges()


# -- ResultsWait ------------------------------------------------------------------------------------------


def test_results_wait_fires_on_visible_messages_only():
    w = ResultsWait(started_at=0, deadline=10, min_visible=2)
    assert w.step(snap(1, visible=1, in_flight=50), 1) is None  # in flight is someone else's work
    out = w.step(snap(2, visible=2), 2)
    assert out.reason is WaitReason.AVAILABLE and out.succeeded and out.details == {}
    late = ResultsWait(started_at=0, deadline=10)
    assert late.step(snap(10), 10).message.startswith("no results arrived by the deadline")
    with pytest.raises(ValueError, match="min_visible"):
        ResultsWait(started_at=0, min_visible=0)


# -- outcomes as event payloads, state round trips ------------------------------------------------------------


def test_outcome_round_trips_through_an_event_payload():
    w = InputWait(started_at=0, stable_for_s=0, dlq_threshold=1)
    out = w.step(snap(3, visible=1, dlq=1), 3.5)
    payload = {**out.to_dict(), "queue_url": "http://h/1/q"}
    payload = json.loads(json.dumps(payload))
    assert payload["status"] == "failed" and payload["reason"] == "dlq_threshold"
    back = WaitOutcome.from_dict(payload)
    assert (back.reason, back.snapshot, back.waited_s, back.message) == (out.reason, out.snapshot, out.waited_s, out.message)
    assert back.details["series"] == out.details["series"] and back.details["queue_url"] == "http://h/1/q"


def test_outcome_reads_an_old_release_event_and_rejects_an_unknown_reason():
    old = {"status": "success", "reason": "drained", "queue_url": "u", "snapshot": snap(1).to_dict(), "series": [[1, 0, 0, 0, -1]], "waited_s": 2.5}
    out = WaitOutcome.from_dict(old)
    assert out.reason is WaitReason.DRAINED and out.message == "" and out.details["series"] == [[1, 0, 0, 0, -1]]
    with pytest.raises(ValueError, match="unknown wait reason 'finished'"):
        WaitOutcome.from_dict({"reason": "finished"})


def test_reasons_say_which_ones_succeed():
    assert {r for r in WaitReason if r.succeeded} == {WaitReason.DRAINED, WaitReason.AVAILABLE}
    assert WaitReason("timeout") is WaitReason.TIMEOUT and WaitReason.TIMEOUT == "timeout"


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 3), st.integers(0, 2), st.integers(0, 3)), min_size=1, max_size=40),
    st.integers(0, 39),
    st.sampled_from([0.0, 2.0, 5.0]),
)
def test_state_round_trip_mid_wait_changes_no_decision(counts, cut, stable_for):
    """Serialise the wait at any point, rebuild it, go on: every later decision is the same."""
    snaps = [snap(float(t), visible=v, in_flight=f, dlq=d) for t, (v, f, d) in enumerate(counts)]
    kwargs = {"started_at": 0.0, "stable_for_s": stable_for, "dlq_threshold": 3, "deadline": 30.0, "max_points": 4}
    straight, resumed = InputWait(**kwargs), InputWait(**kwargs)
    cut = min(cut, len(snaps))
    for s in snaps[:cut]:
        assert straight.step(s, s.taken_at) == resumed.step(s, s.taken_at)
    resumed = InputWait.from_dict(json.loads(json.dumps(resumed.to_dict())))
    for s in snaps[cut:]:
        a, b = straight.step(s, s.taken_at), resumed.step(s, s.taken_at)
        assert a == b
        if a is not None:
            break
    assert straight.to_dict() == resumed.to_dict()


def test_bounded_series_state_round_trips():
    series = BoundedSeries(max_points=4)
    for i in range(11):
        series.add(i)
    again = BoundedSeries.from_dict(json.loads(json.dumps(series.to_dict())))
    assert again == series and again.values() == series.values()


# -- DrainCurve: the drain operator's results curve ------------------------------------------------------


def test_drain_curve_samples_at_most_once_per_interval():
    curve = DrainCurve(interval_s=2.0)
    assert curve.due(100.0)
    curve.add(snap(100.0, visible=30), 0)
    assert not curve.due(101.9) and curve.due(102.0)
    curve.add(snap(102.0, visible=10, in_flight=10), 10)
    curve.add(snap(104.5), 30, {"limit": 3.5, "rtt_ms": 12.0, "baseline_ms": 10.0, "probing": False})
    assert curve.to_xcom() == {
        "fields": ["t", "results_visible", "results_in_flight", "applied", "pace_limit", "rtt_ms", "baseline_ms"],
        "points": [[100.0, 30, 0, 0, None, None, None], [102.0, 10, 10, 10, None, None, None], [104.5, 0, 0, 30, 3.5, 12.0, 10.0]],
    }
    assert list(DRAIN_SERIES_FIELDS) == curve.to_xcom()["fields"]


def test_drain_curve_is_bounded_keeps_both_ends_and_round_trips():
    curve = DrainCurve(interval_s=0, max_points=6)
    for t in range(200):
        curve.add(snap(float(t), visible=200 - t), t)
    points = curve.to_xcom()["points"]
    assert 2 <= len(points) <= 6 and points[0][:4] == [0.0, 200, 0, 0] and points[-1][:4] == [199.0, 1, 0, 199]
    again = DrainCurve.from_dict(json.loads(json.dumps(curve.to_dict())))
    assert again.to_dict() == curve.to_dict() and again.due(199.0)


@pytest.mark.parametrize("kwargs, match", [({"interval_s": -1}, "interval_s"), ({"max_points": 1}, "max_points")])
def test_drain_curve_bad_settings_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DrainCurve(**kwargs)
