"""RunReport: the Batch view's input contract, built from raw XCom values of every shape a run can leave."""

from __future__ import annotations

import pytest
from batchq.monitor.report import RunReport, repair_run, run_report

FIELDS = ["t", "visible", "in_flight", "delayed", "dlq"]
SERIES = {"fields": FIELDS, "points": [[100.0, 40, 0, 0, 0], [110.0, 25, 10, 0, 0], [120.0, 5, 6, 0, 0], [130.0, 0, 0, 0, 0], [140.0, 0, 0, 0, 0]]}
LEDGER = {
    "batch": "demo", "run_id": "r1", "expected": 40, "succeeded": 37, "failed": 3, "quarantined": 1, "pending": 0,
    "outcome": "succeeded", "drain": {"applied": 40},
    "first_failures": [{"key": "k1", "error": {"type": "ValueError", "message": "bad customer"}}, {"key": "k2", "error": "x" * 900}],
}


def test_full_run_report_from_raw_xcoms():
    xcoms = [
        ("plan", {"batch": "demo", "expected": 40, "shards": 2}),
        ("return_value", [{"start": 0, "stop": 20}]),  # a planner's shard list: not a ledger
        ("drain_series", SERIES),
        ("return_value", LEDGER),
        ("queue_lag", {"input_wait": {"p50": 1.5, "p95": 12.0, "max": 30}, "time_to_drain_s": 41.5, "peak_depth": 40, "results": 40, "source": "sqs-timestamps"}),
        ("alert_episodes", [{"kind": "growing", "started_at": 105, "resolved_at": 125, "message": "backlog grows"}]),
    ]
    r = run_report("dag", "r1", xcoms, state="success")
    assert r.batch == "demo" and r.state == "success"
    assert (r.ledger.expected, r.ledger.succeeded, r.ledger.failed, r.ledger.quarantined, r.ledger.pending) == (40, 37, 3, 1, 0)
    assert r.peak_depth == 40 and r.lag_results == 40
    assert r.drain_time_s == 41.5  # the queue lag's time to drain, not the wait's 30 s of polls
    assert r.failure_rate == pytest.approx(3 / 40)
    assert r.lag_p95_s == 12.0 and r.lag.source == "sqs-timestamps"
    assert [f.key for f in r.failures] == ["k1", "k2"]
    assert r.failures[0].error == "ValueError: bad customer"
    assert len(r.failures[1].error) == 500  # bounded
    assert r.alerts[0].kind == "growing" and r.alerts[0].resolved_at == 125
    assert r.problems == []


def test_backlog_series_is_preferred_over_the_old_name():
    newer = {"fields": FIELDS, "points": [[0, 7, 0, 0, 0], [5, 0, 0, 0, 0]]}
    r = run_report("d", "r", [("drain_series", SERIES), ("backlog_series", newer)])
    assert r.series.points == newer["points"]


def test_figures_are_the_queue_lags_even_when_the_polls_saw_nothing():
    """The reported run: workers kept up with the fan-out, so the wait's two polls read 0, while its own
    queue_lag says 17.1 s to drain and 96 waiting at once. One definition: the lag's."""
    from batchq.monitor.lag import run_lag

    polls = {"fields": FIELDS, "points": [[100.0, 0, 0, 0, 0], [102.0, 0, 0, 0, 0]]}
    from datetime import datetime, timedelta, timezone

    t0 = datetime(2026, 12, 1, tzinfo=timezone.utc)
    rows = [{"enqueued_at": t0, "first_received_at": t0 + timedelta(seconds=2 + i * 0.1), "applied_at": t0 + timedelta(seconds=17.1 if i == 95 else 10),
             "status": "succeeded"} for i in range(96)]
    lag = run_lag(rows)
    r = run_report("d", "r", [("backlog_series", polls), ("queue_lag", lag)])
    assert (r.drain_time_s, r.peak_depth, r.lag_results) == (17.1, 96, 96) == (lag["time_to_drain_s"], lag["peak_depth"], lag["results"])


def test_missing_parts_render_as_none_and_plan_gives_expected():
    r = run_report("d", "r", [("plan", {"batch": "demo", "expected": 12})], state="running")
    assert r.has_batch
    assert r.ledger.expected == 12 and not r.ledger.closed
    assert r.series is None and r.lag is None and r.drain_time_s is None and r.peak_depth is None
    assert r.failure_rate is None and r.failures == [] and r.alerts == []


def test_nothing_recorded_means_no_batch():
    r = run_report("d", "r", [("return_value", 3)])
    assert not r.has_batch


def test_undrained_series_has_no_drain_time():
    r = run_report("d", "r", [("backlog_series", {"fields": FIELDS, "points": [[0, 5, 0, 0, 0], [9, 3, 1, 0, 0]]})])
    assert r.drain_time_s is None and r.peak_depth is None  # no queue lag yet: no figure, not a second definition


def test_asset_event_extra_is_the_ledger_fallback():
    extra = {k: v for k, v in LEDGER.items() if k != "first_failures"}
    r = run_report("d", "r", [], asset_extras=[extra])
    assert r.ledger.succeeded == 37 and r.failures == []


@pytest.mark.parametrize(
    "key,value,problem",
    [
        ("drain_series", {"fields": "nope"}, "depth series"),
        ("drain_series", {"fields": ["visible"], "points": [[1]]}, "no 't' field"),
        ("return_value", {"expected": -1, "succeeded": 0}, "ledger"),
        ("queue_lag", {"input_wait": {"p95": "slow"}}, "queue lag"),
        ("alert_episodes", [{"kind": "late"}], "alert episode"),
    ],
)
def test_malformed_parts_are_reported_not_raised(key, value, problem):
    r = run_report("d", "r", [(key, value)])
    assert any(problem in p for p in r.problems), r.problems


def test_report_round_trips_as_json():
    r = run_report("d", "r", [("drain_series", SERIES), ("return_value", LEDGER)])
    assert RunReport.model_validate_json(r.model_dump_json()) == r


# --- repairs -------------------------------------------------------------------------------------------

REPAIR = {
    "batch": "demo", "run_id": "r1", "mode": "failed", "selected": 3, "sent": 3, "not_sent": 0, "by_status": {"failed": 3},
    "repair_id": 7, "dry_run": False, "outcome_before": "failed", "reason": "handler fixed", "requested_by": "airflow:d.rerun_failed try 1 (triggered by ana)",
    "requested_at": 1767225900.0, "keys": ["k1", "k2", "k3"],
}


def test_repair_run_says_what_it_re_sent_and_the_ledger_after():
    after = {**LEDGER, "run_id": "r1", "outcome": "succeeded"}
    r = run_report("d", "r2", [("return_value", REPAIR), ("return_value", after)], conf={"repair_run_id": "r1"})
    assert r.repairs.repair_of == "r1" and not r.repairs.repaired  # a repair run is not itself repaired
    m = r.repairs.made
    assert (m.repair_id, m.sent, m.keys, m.reason, m.requested_by) == (7, 3, ["k1", "k2", "k3"], "handler fixed", REPAIR["requested_by"])
    assert (m.outcome_before, m.outcome_after, m.requested_at) == ("failed", "succeeded", 1767225900.0)
    assert r.ledger.succeeded == 37  # the repair report is not mistaken for the ledger, nor the reverse


def test_repair_run_before_its_drain_closed_the_ledger_has_no_outcome_after():
    r = run_report("d", "r2", [("return_value", REPAIR)], conf={"repair_run_id": "r1"})
    assert r.has_batch and r.repairs.made.outcome_after is None


def test_repair_run_whose_rerun_failed_has_not_run_yet():
    r = run_report("d", "r2", [], conf={"repair_run_id": "r1"})
    assert r.repairs.repair_of == "r1" and r.repairs.made is None and r.has_batch


def test_a_normal_runs_nothing_to_repair_answer_is_no_repair():
    r = run_report("d", "r1", [("return_value", {"selected": 0, "sent": 0, "outcome_before": "succeeded"}), ("return_value", LEDGER)])
    assert r.repairs.made is None and not r.repairs.any


def test_repair_run_that_found_nothing_to_repair_says_so():
    r = run_report("d", "r2", [("return_value", {"selected": 0, "sent": 0, "outcome_before": "succeeded"})], conf={"repair_run_id": "r1"})
    assert r.repairs.made.repair_id is None and r.repairs.made.outcome_before == "succeeded"


def test_rerun_failed_cleared_in_place_marks_the_run_repaired():
    r = run_report("d", "r1", [("return_value", REPAIR), ("return_value", LEDGER)])
    assert r.repairs.repair_of is None and r.repairs.repaired and r.repairs.made.outcome_after == "succeeded"


def test_original_run_lists_the_later_runs_that_repaired_it_oldest_first():
    second = repair_run("r3", [("return_value", {**REPAIR, "repair_id": 8})], state="running", run_after=300.0, conf={"repair_run_id": "r1"})
    first = repair_run("r2", [("return_value", REPAIR), ("return_value", LEDGER)], state="success", run_after=200.0, conf={"repair_run_id": "r1"})
    r = run_report("d", "r1", [("return_value", {**LEDGER, "outcome": "failed"})], state="failed", repaired_by=[second, first])
    assert r.repairs.repaired
    assert [(x.run_id, x.state, x.repair.repair_id, x.repair.outcome_after) for x in r.repairs.by_runs] == [
        ("r2", "success", 7, "succeeded"), ("r3", "running", 8, None)
    ]


@pytest.mark.parametrize("conf", [None, {}, {"repair_run_id": None}, {"repair_run_id": ""}, {"repair_run_id": 5}, "not a dict"])
def test_no_or_bad_repair_conf_is_no_repair_run(conf):
    assert run_report("d", "r", [("return_value", LEDGER)], conf=conf).repairs.repair_of is None


def test_malformed_repair_report_is_a_problem_not_an_error():
    r = run_report("d", "r2", [("return_value", {**REPAIR, "sent": -1})], conf={"repair_run_id": "r1"})
    assert r.repairs.made is None and any(p.startswith("repair: unreadable") for p in r.problems)


def test_report_with_repairs_round_trips_as_json():
    rr = repair_run("r2", [("return_value", REPAIR)], conf={"repair_run_id": "r1"})
    r = run_report("d", "r1", [("return_value", LEDGER)], repaired_by=[rr])
    assert RunReport.model_validate_json(r.model_dump_json()) == r


def test_the_view_reads_what_rerun_failed_returns():
    """Contract: RerunFailedOperator returns RepairReport.to_dict(); the report builder reads every part."""
    from batchq.store.repairs import RepairReport

    made = RepairReport(
        "demo", "r1", "failed", 2, sent=2, by_status={"failed": 2}, keys=["k1", "k2"], repair_id=3, outcome_before="failed",
        reason="handler fixed", requested_by="airflow:d.rerun_failed try 2", requested_at=1767225900.5,
    )
    r = run_report("d", "r2", [("return_value", made.to_dict())], conf={"repair_run_id": "r1"})
    m = r.repairs.made
    assert (m.repair_id, m.run_id, m.mode, m.selected, m.sent, m.keys) == (3, "r1", "failed", 2, 2, ["k1", "k2"])
    assert (m.reason, m.requested_by, m.requested_at, m.outcome_before) == ("handler fixed", "airflow:d.rerun_failed try 2", 1767225900.5, "failed")
    assert r.problems == []


def test_a_run_repaired_by_a_later_run_shows_its_current_ledger():
    """After a repair through Airflow the failed run's tab showed 16 failed / "failed": the repair run's
    drain had closed the ledger again (its XCom), but only the Repairs table said so."""
    failed = {"batch": "demo", "run_id": "r1", "expected": 96, "succeeded": 80, "failed": 16, "quarantined": 0, "pending": 0, "outcome": "failed"}
    repair = {"run_id": "r1", "mode": "failed", "selected": 16, "sent": 16, "repair_id": 3, "outcome_before": "failed", "requested_at": 200.0}
    closed = {**failed, "succeeded": 96, "failed": 0, "outcome": "succeeded"}
    by = repair_run("r2", [("return_value", repair), ("return_value", closed)], state="success", run_after=200.0, conf={"repair_run_id": "r1"})
    r = run_report("d", "r1", [("return_value", failed)], state="failed", repaired_by=[by])
    assert r.repairs.repaired
    assert (r.ledger.failed, r.ledger.outcome) == (0, "succeeded")
    assert (r.ledger_recorded.failed, r.ledger_recorded.outcome) == (16, "failed") and r.ledger_source == "repair run r2"
    # A repair run that has not drained yet changes nothing.
    pending = repair_run("r3", [("return_value", repair)], state="running", run_after=300.0, conf={"repair_run_id": "r1"})
    r = run_report("d", "r1", [("return_value", failed)], state="failed", repaired_by=[pending])
    assert r.ledger.outcome == "failed" and r.ledger_source is None


def test_a_run_repaired_from_the_cli_shows_the_stores_ledger():
    """``batchq rerun`` leaves no trace in Airflow: the ledger store is where the repair and the run's
    current outcome live."""
    failed = {"batch": "demo", "run_id": "r1", "expected": 96, "succeeded": 80, "failed": 16, "quarantined": 0, "pending": 0, "outcome": "failed"}
    stored = {"expected": 96, "succeeded": 96, "failed": 0, "outcome": "succeeded",
              "repairs": [{"id": 7, "mode": "failed", "reason": "fixed", "requested_by": "cli:ana", "requested_at": 300.0, "keys": 16, "sent": 16,
                           "outcome_before": "failed", "outcome_after": "succeeded", "settled_at": 400.0}]}
    r = run_report("d", "r1", [("return_value", failed)], state="failed", stored=stored)
    assert r.repairs.repaired and r.repairs.any
    assert (r.ledger.succeeded, r.ledger.failed, r.ledger.outcome, r.ledger_source) == (96, 0, "succeeded", "the ledger store")
    assert r.ledger_recorded.failed == 16
    # Without a repair in the store, the run's own record stands.
    r = run_report("d", "r1", [("return_value", failed)], state="failed", stored={**stored, "repairs": []})
    assert r.ledger.failed == 16 and not r.repairs.repaired
