"""The backlog-alert detector on fake snapshot series: each kind fires once per episode and resolves,
hysteresis holds an alert through noise, the state survives a JSON round trip mid-episode, and the
deadline resolves in the DAG's timezone."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
from batchq.clock import parse_clock, resolve_deadline
from batchq.monitor.alerts import AlertPolicy, BacklogAlerts, theil_sen_slope
from batchq.sqs.snapshot import QueueSnapshot

POLICY = AlertPolicy(window_s=60, min_points=4, growth_min_messages=5, growth_fraction=0.0, stall_after_s=30, max_age_s=100, resolve_after_s=20)


def snap(t, visible, in_flight=0, dlq=None):
    return QueueSnapshot(taken_at=float(t), visible=visible, in_flight=in_flight, delayed=0, dlq_visible=dlq)


def feed(det, points, roundtrip=False, **kw):
    """points: (t, visible, in_flight[, dlq]); returns [(t, kind, state)] of every change."""
    seen = []
    for p in points:
        if roundtrip:
            det = BacklogAlerts.from_dict(json.loads(json.dumps(det.to_dict())))
        for c in det.observe(snap(*p), p[0], **kw):
            seen.append((p[0], c.kind, c.state))
    return det, seen


def test_theil_sen_ignores_one_wild_reading():
    ts = list(range(10))
    ys = [2 * t for t in ts]
    ys[5] = 1000  # one stale / wild counter
    assert theil_sen_slope(ts, ys) == pytest.approx(2.0)
    assert theil_sen_slope([1, 1], [3, 4]) is None


def test_growing_fires_once_while_consumers_are_busy_and_resolves():
    det = BacklogAlerts(policy=AlertPolicy(**{**POLICY.to_dict(), "kinds": ["growing"]}))
    rising = [(t, 10 + t, 2) for t in range(0, 60, 5)]  # +1/s, 2 in flight: workers losing ground
    falling = [(t, 70 - (t - 60), 2) for t in range(60, 200, 5)]
    det, seen = feed(det, rising + falling)
    assert [s[1:] for s in seen] == [("growing", "fired"), ("growing", "resolved")]
    fired_at, resolved_at = seen[0][0], seen[1][0]
    assert fired_at >= 30  # needs half a window of evidence
    assert resolved_at > 60 + POLICY.resolve_after_s - 5  # clear held resolve_after_s, not one reading
    ep = det.episodes
    assert len(ep) == 1 and ep[0]["kind"] == "growing" and ep[0]["resolved_at"] == resolved_at


def test_growing_needs_consumers_stalled_does_not():
    # Messages keep arriving, nothing in flight, never a step down: nobody consumes.
    _, seen = feed(BacklogAlerts(policy=POLICY), [(t, 5 + t, 0) for t in range(0, 80, 5)])
    kinds = [k for _, k, s in seen if s == "fired"]
    assert kinds == ["stalled"]
    assert seen[0][0] >= POLICY.stall_after_s


def test_workers_arriving_as_the_curve_turns_are_not_growing():
    # Grows with nobody consuming, then the first receive puts messages in flight (backlog unchanged).
    points = [(t, 5 + t, 0) for t in range(0, 60, 5)] + [(60, 55, 10), (62, 60, 10)]
    _, seen = feed(BacklogAlerts(policy=AlertPolicy(**{**POLICY.to_dict(), "kinds": ["growing"]})), points)
    assert seen == []


def test_stalled_resolves_after_progress_and_a_noisy_clear_does_not_flap():
    det = BacklogAlerts(policy=AlertPolicy(**{**POLICY.to_dict(), "kinds": ["stalled"]}))
    stuck = [(t, 50, 0) for t in range(0, 50, 5)]
    det, seen = feed(det, stuck)
    assert [s[1:] for s in seen] == [("stalled", "fired")]
    # One step down, then stuck again long enough to stall again before the clear held 20 s? No:
    # progress resets the idle clock, so the clear holds and the alert resolves once.
    det, seen = feed(det, [(50, 49, 1), (55, 48, 1), (60, 47, 1), (65, 46, 1), (70, 45, 1), (75, 44, 1)])
    assert [s[1:] for s in seen] == [("stalled", "resolved")]
    assert det.open == {}


def test_fires_once_per_episode_even_while_the_condition_persists():
    _, seen = feed(BacklogAlerts(policy=AlertPolicy(**{**POLICY.to_dict(), "kinds": ["stalled"]})), [(t, 9, 0) for t in range(0, 300, 5)])
    assert [s[1:] for s in seen] == [("stalled", "fired")]


def test_dead_letters_fire_and_resolve_after_redrive():
    det = BacklogAlerts(policy=AlertPolicy(**{**POLICY.to_dict(), "kinds": ["dead_letters"]}))
    det, seen = feed(det, [(0, 3, 0, 0), (5, 3, 0, 2), (10, 3, 0, 2), (15, 0, 0, 0), (30, 0, 0, 0), (40, 0, 0, 0)])
    assert seen == [(5, "dead_letters", "fired"), (40, "dead_letters", "resolved")]
    # No DLQ watched: unknown, never fires.
    _, seen = feed(BacklogAlerts(policy=POLICY), [(t, 0, 0, None) for t in range(0, 50, 5)])
    assert seen == []


def test_old_uses_the_age_when_known_with_a_resolve_band():
    det = BacklogAlerts(policy=AlertPolicy(**{**POLICY.to_dict(), "kinds": ["old"]}))
    assert det.observe(snap(0, 5), 0, oldest_age_s=None) == []
    assert [c.state for c in det.observe(snap(1, 5), 1, oldest_age_s=150)] == ["fired"]
    # 90 s is below the threshold but not below 80 % of it: stays open.
    for t in range(2, 60, 5):
        assert det.observe(snap(t, 5), t, oldest_age_s=90) == []
    assert "old" in det.open
    changes = [c for t in range(60, 100, 5) for c in det.observe(snap(t, 5), t, oldest_age_s=10)]
    assert [c.state for c in changes] == ["resolved"]


def test_late_fires_before_the_deadline_when_the_drain_rate_cannot_make_it():
    # 1,000 left, draining 2/s: ETA 500 s. Deadline 300 s from the start: late, long before 300.
    policy = AlertPolicy(**{**POLICY.to_dict(), "kinds": ["late"]})
    det = BacklogAlerts(policy=policy, expected=1000, deadline=300.0)
    det, seen = feed(det, [(t, 1000 - 2 * t, 5) for t in range(0, 60, 5)])
    assert [s[1:] for s in seen] == [("late", "fired")]
    assert seen[0][0] < 60 and "ETA" in det.episodes[0]["message"] and "of 1000 expected" in det.episodes[0]["message"]
    # Workers scale up: 20/s now, the ETA is well inside the deadline → resolves.
    det, seen = feed(det, [(t, max(0, 880 - 20 * (t - 60)), 5) for t in range(60, 110, 5)])
    assert [s[1:] for s in seen] == [("late", "resolved")]


def test_late_is_quiet_when_the_drain_will_finish_in_time_and_without_a_deadline():
    policy = AlertPolicy(**{**POLICY.to_dict(), "kinds": ["late"]})
    _, seen = feed(BacklogAlerts(policy=policy, deadline=10_000.0), [(t, 1000 - 2 * t, 5) for t in range(0, 120, 5)])
    assert seen == []
    _, seen = feed(BacklogAlerts(policy=policy), [(t, 1000, 0) for t in range(0, 120, 5)])
    assert seen == []


def test_late_when_not_draining_at_all():
    policy = AlertPolicy(**{**POLICY.to_dict(), "kinds": ["late"]})
    _, seen = feed(BacklogAlerts(policy=policy, deadline=10_000.0), [(t, 100, 0) for t in range(0, 60, 5)])
    assert [s[1:] for s in seen] == [("late", "fired")]


def test_state_round_trips_through_json_mid_episode():
    points = [(t, 5 + t, 0) for t in range(0, 80, 5)] + [(t, max(0, 80 - 4 * (t - 80)), 3) for t in range(80, 200, 5)]
    _, direct = feed(BacklogAlerts(policy=POLICY, expected=100, deadline=1e9), points)
    _, rebuilt = feed(BacklogAlerts(policy=POLICY, expected=100, deadline=1e9), points, roundtrip=True)
    assert direct == rebuilt and direct  # the same decisions, and there were some


def test_settle_resolves_backlog_alerts_but_not_dead_letters():
    det, _ = feed(BacklogAlerts(policy=POLICY), [(t, 7, 0, 1) for t in range(0, 60, 5)])
    assert set(det.open) == {"stalled", "dead_letters"}
    changes = det.settle(100.0)
    assert [(c.kind, c.state) for c in changes] == [("stalled", "resolved")]
    assert set(det.open) == {"dead_letters"}
    assert all(set(e) == {"kind", "started_at", "resolved_at", "message"} for e in det.episodes)


def test_window_stays_bounded_and_spans_the_window():
    det = BacklogAlerts(policy=POLICY)
    for i in range(2000):
        det.observe(snap(i * 0.1, 3, 1), i * 0.1)
    assert len(det.window) <= 62
    assert det.window[-1].taken_at - det.window[0].taken_at >= POLICY.window_s


def test_episodes_are_the_batch_view_shape():
    report = pytest.importorskip("batchq.monitor.report")  # the Batch view's input contract (branch s9)

    det, _ = feed(BacklogAlerts(policy=POLICY), [(t, 7, 0) for t in range(0, 60, 5)])
    for e in det.episodes:
        report.AlertEpisode.model_validate(e)


def test_policy_and_clock_validation():
    with pytest.raises(ValueError, match="kinds: unknown"):
        AlertPolicy(kinds=("growing", "bogus"))
    with pytest.raises(ValueError, match="stall_after_s must be > 0"):
        AlertPolicy(stall_after_s=0)
    with pytest.raises(ValueError, match="HH:MM"):
        parse_clock("8am")
    with pytest.raises(ValueError, match="HH:MM"):
        parse_clock("24:00")
    assert parse_clock("08:05") == (8, 5)
    assert AlertPolicy.from_dict({**POLICY.to_dict(), "added_later": 1}) == POLICY


def test_deadline_in_the_dag_timezone():
    # A 07:00 Amsterdam run (05:00 UTC in summer) must be drained by 08:00 Amsterdam = 06:00 UTC.
    anchor = datetime(2026, 7, 1, 5, 0, tzinfo=timezone.utc)
    assert resolve_deadline("08:00", anchor, "Europe/Amsterdam") == datetime(2026, 7, 1, 6, 0, tzinfo=timezone.utc).timestamp()
    # A run due after the clock time has until the next day.
    late_anchor = datetime(2026, 7, 1, 7, 0, tzinfo=timezone.utc)
    assert resolve_deadline("08:00", late_anchor, "Europe/Amsterdam") == datetime(2026, 7, 2, 6, 0, tzinfo=timezone.utc).timestamp()
