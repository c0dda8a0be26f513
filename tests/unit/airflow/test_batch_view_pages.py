"""The Batch views' templates render any RunReport, however little the run recorded."""

from __future__ import annotations

import re

import pytest
from batchq.monitor.report import repair_run, run_report

pages = pytest.importorskip("batchq.airflow.views.pages")


def _render_run(report) -> str:
    return pages._env().get_template("run.html").render(base="/batchq", title="t", r=report, drain_chart=pages.drain_chart(report))


def test_run_page_says_what_is_missing():
    html = _render_run(run_report("dag", "r1", [("plan", {"batch": "demo", "expected": 12})], state="running"))
    assert 'data-count="expected"><div class="n">12<' in html
    assert "Planned, not drained yet" in html
    assert "No depth series recorded for this run." in html
    assert "No lag data recorded for this run." in html
    assert "No alert history recorded for this run." in html
    assert 'data-count="succeeded"' not in html


def test_run_page_without_any_batch_data():
    html = _render_run(run_report("dag", "r1", []))
    assert "left no batchq data" in html and "Ledger" not in html


def test_run_page_escapes_recorded_text():
    ledger = {"expected": 1, "succeeded": 0, "failed": 1, "quarantined": 0, "pending": 0, "first_failures": [{"key": "<k>", "error": "<img src=x onerror=alert(1)>"}]}
    html = _render_run(run_report("dag", "r1", [("return_value", ledger)]))
    assert "<img" not in html and "&lt;img src=x" in html and "&lt;k&gt;" in html


def test_run_page_names_first_failures_by_their_dimensions():
    # Issue 20: the Batch tab showed "4730f5ee91c2…" for a failure; the ledger's failures carry their dims.
    failure = {"key": "4730f5ee91c2b7d0", "dims": {"region": "ap-south", "model": "xgb", "day": "wed"},
               "error": {"type": "RuntimeError", "message": "model diverged"}}
    ledger = {"expected": 42, "succeeded": 41, "failed": 1, "quarantined": 0, "pending": 0, "first_failures": [failure]}
    html = _render_run(run_report("dag", "r1", [("return_value", ledger)]))
    assert "region=ap-south, model=xgb, day=wed (4730f5ee…)" in html and "RuntimeError: model diverged" in html


def test_problems_are_shown():
    html = _render_run(run_report("dag", "r1", [("drain_series", {"fields": "bad"}), ("plan", {"expected": 3})]))
    assert 'class="problem notice">depth series: unreadable' in html


def test_drain_chart_draws_only_recorded_fields():
    fields = ["t", "visible", "in_flight", "delayed", "dlq"]
    report = run_report("d", "r", [("backlog_series", {"fields": fields, "points": [[0, 4, 1, 0, 0], [10, 0, 0, 0, 0]]})])
    chart = pages.drain_chart(report)
    assert chart.count('data-series="input visible"') == 3  # polyline + 2 points
    assert "results visible" not in chart and "input delayed" not in chart  # absent / always zero


REPAIR = {
    "run_id": "r1", "mode": "failed", "selected": 2, "sent": 2, "repair_id": 4, "outcome_before": "failed",
    "reason": "handler <fixed>", "requested_by": "ana", "requested_at": 1767225900.0, "keys": ["k<1>", "k2"],
}
CLOSED = {"expected": 2, "succeeded": 2, "failed": 0, "quarantined": 0, "pending": 0, "outcome": "succeeded"}


def test_repair_run_page_says_what_it_repaired_and_links_back():
    report = run_report("dag", "r2", [("return_value", REPAIR), ("return_value", CLOSED)], conf={"repair_run_id": "r1"})
    html = _render_run(report)
    assert '<h2>Repairs</h2>' in html and 'class="tag repair"' in html
    assert 'Repair of run <a class="mono" href="/batchq/ui/dags/dag/runs/r1">r1</a>' in html
    text = " ".join(html.split())
    assert "2 keys re-sent by ana at 2026-01-01 00:05:00 UTC because handler &lt;fixed&gt;; ledger now <strong>succeeded</strong>" in text
    assert "k&lt;1&gt;, k2" in html and "<fixed>" not in html and "k<1>" not in html


def test_original_run_page_lists_its_repair_runs_and_is_marked_repaired():
    rr = repair_run("manual__<x>", [("return_value", REPAIR)], state="running", run_after=1767225960.0, conf={"repair_run_id": "r1"})
    html = _render_run(run_report("dag", "r1", [("return_value", {**CLOSED, "outcome": "failed"})], state="failed", repaired_by=[rr]))
    assert 'class="tag repaired">repaired<' in html
    row = html.split('data-repair-run="manual__&lt;x&gt;"', 1)[1].split("</tr>", 1)[0]
    assert 'href="/batchq/ui/dags/dag/runs/manual__%3Cx%3E"' in row and "not closed yet" in row and "handler &lt;fixed&gt;" in row
    assert "manual__<x>" not in html


def test_run_without_repairs_has_no_repairs_section():
    html = _render_run(run_report("dag", "r1", [("return_value", CLOSED), ("return_value", {"selected": 0, "sent": 0, "outcome_before": "succeeded"})]))
    assert "<h2>Repairs</h2>" not in html and 'id="repairs"' not in html and 'class="tag repaired"' not in html


def test_dag_page_marks_repaired_runs_and_repair_runs():
    rr = repair_run("r2", [("return_value", REPAIR)], conf={"repair_run_id": "r1"})
    reports = [
        run_report("dag", "r2", [("return_value", REPAIR)], conf={"repair_run_id": "r1"}),
        run_report("dag", "r1", [("return_value", CLOSED)], repaired_by=[rr]),
        run_report("dag", "r0", [("return_value", CLOSED)]),
    ]
    html = pages._env().get_template("dag.html").render(
        base="/batchq", title="t", dag_id="dag", reports=reports, batch_reports=reports, drain_chart="", depth_chart=""
    )
    rows = dict(re.findall(r'<tr data-run="([^"]+)">(.*?)</tr>', html, re.DOTALL))
    assert 'class="tag repaired"' in rows["r1"] and 'class="tag repair"' not in rows["r1"]
    assert 'href="/batchq/ui/dags/dag/runs/r1" title="repair of r1">repair<' in rows["r2"] and "repaired" not in rows["r2"]
    assert "tag" not in rows["r0"]


def test_drain_chart_continues_with_the_drain_tasks_results_series():
    wait = {"fields": ["t", "visible", "in_flight", "delayed", "dlq", "results_visible", "results_in_flight"],
            "points": [[0, 4, 1, 0, 0, 0, 0], [10, 0, 0, 0, 0, 5, 0]]}
    drain = {"fields": ["t", "results_visible", "results_in_flight", "applied"],
             "points": [[20, 5, 0, 0], [25, 2, 1, 2], [30, 0, 0, 5]]}
    report = run_report("d", "r", [("backlog_series", wait), ("results_series", drain)])
    chart = pages.drain_chart(report)
    # results visible: 2 wait samples then 3 drain samples, in time order, ending empty
    ys = [float(y) for y in re.findall(r'data-series="results visible" data-x="[^"]+" data-y="([^"]+)"', chart)]
    assert ys == [0.0, 5.0, 5.0, 2.0, 0.0]
    assert chart.count('data-series="applied to the sink"') == 4  # polyline + 3 points
    # a results series alone (the wait left nothing) still draws
    assert "applied to the sink" in pages.drain_chart(run_report("d", "r", [("results_series", drain)]))
    assert run_report("d", "r", [("results_series", {"fields": ["x"], "points": []})]).problems == ["results series: no 't' field"]


def test_drain_chart_draws_the_pace_line_on_its_own_axis():
    from batchq.monitor.waits import DrainCurve
    from batchq.sqs import QueueSnapshot

    curve = DrainCurve(interval_s=0)
    curve.add(QueueSnapshot(taken_at=20, visible=50, in_flight=0, delayed=0), 0)  # before the first window
    curve.add(QueueSnapshot(taken_at=25, visible=30, in_flight=10, delayed=0), 20, {"limit": 2.0, "rtt_ms": 11.0, "baseline_ms": 10.0})
    curve.add(QueueSnapshot(taken_at=30, visible=0, in_flight=0, delayed=0), 50, {"limit": 5.0, "rtt_ms": 12.5, "baseline_ms": 10.0})
    chart = pages.drain_chart(run_report("d", "r", [("results_series", curve.to_xcom())]))
    ys = [float(y) for y in re.findall(r'data-series="pace" data-x="[^"]+" data-y="([^"]+)"', chart)]
    assert ys == [2.0, 5.0]  # the sample with no pace yet is not drawn as 0
    assert "pace (writes in flight)" in chart and 'stroke-dasharray="6 3" data-series="pace"' in chart
    # its own scale: the top pace point is at the top of the plot (y 5 of a 5 axis), not squashed under 50 messages
    top = re.search(r'<circle class="pt" cx="[^"]+" cy="([^"]+)" r="2.5" fill="#000000" data-series="pace" data-x="30"', chart)
    assert top and float(top.group(1)) == pytest.approx(28.0)
    # a drain without adaptive pace draws no pace line and no second axis
    plain = DrainCurve(interval_s=0)
    plain.add(QueueSnapshot(taken_at=20, visible=5, in_flight=0, delayed=0), 0)
    plain.add(QueueSnapshot(taken_at=30, visible=0, in_flight=0, delayed=0), 5)
    chart = pages.drain_chart(run_report("d", "r", [("results_series", plain.to_xcom())]))
    assert 'data-series="pace"' not in chart and "writes in flight" not in chart


def test_run_page_and_trends_show_the_queue_lags_figures_not_the_polls():
    """Workers that keep up with the fan-out: the wait's two polls read 0, the run's queue lag says 17.1 s
    and 96 waiting at once. The page said "Drained in 0.0s; peak input depth 0; 2 samples"."""
    fields = ["t", "visible", "in_flight", "delayed", "dlq"]
    lag = {"input_wait": {"p50": 1.0, "p95": 2.0, "max": 2.0}, "time_to_drain_s": 17.1, "peak_depth": 96, "results": 96, "source": "sqs-timestamps"}
    report = run_report("d", "r", [("backlog_series", {"fields": fields, "points": [[0, 0, 0, 0, 0], [2, 0, 0, 0, 0]]}), ("queue_lag", lag)], state="success")
    html = _render_run(report)
    assert "Time to drain 17s" in html and "peak input depth 96; from 96 results" in html
    assert "2 polls of the queues during the wait" in html
    drain, depth = pages.trend_charts([report])
    assert 'data-y="17.1"' in drain and 'data-y="96"' in depth


def test_a_repaired_runs_page_shows_its_current_ledger():
    failed = {"run_id": "r1", "expected": 2, "succeeded": 0, "failed": 2, "quarantined": 0, "pending": 0, "outcome": "failed"}
    by = repair_run("r2", [("return_value", REPAIR), ("return_value", CLOSED)], state="success", run_after=5.0, conf={"repair_run_id": "r1"})
    html = " ".join(_render_run(run_report("dag", "r1", [("return_value", failed)], state="failed", repaired_by=[by])).split())
    assert 'data-count="failed"><div class="n">0<' in html and '>succeeded</div><div class="l">outcome' in html
    assert 'class="tag repaired">repaired<' in html
    assert "closed again by repair run r2; before its repair this run recorded 2 failed (failed)" in html


def test_a_cli_repair_shows_on_the_runs_page():
    failed = {"run_id": "r1", "expected": 2, "succeeded": 0, "failed": 2, "quarantined": 0, "pending": 0, "outcome": "failed"}
    stored = {"expected": 2, "succeeded": 2, "failed": 0, "outcome": "succeeded", "repairs": [
        {"id": 9, "mode": "failed", "reason": "<fixed>", "requested_by": "cli:ana", "requested_at": 300.0, "keys": 2, "sent": 2, "outcome_before": "failed", "outcome_after": "succeeded"}]}
    html = " ".join(_render_run(run_report("dag", "r1", [("return_value", failed)], state="failed", stored=stored)).split())
    assert 'data-count="failed"><div class="n">0<' in html and 'class="tag repaired">repaired<' in html
    assert 'data-stored-repair="9"' in html and "&lt;fixed&gt;" in html and "cli:ana" in html
    assert "closed again by the ledger store; before its repair this run recorded 2 failed (failed)" in html
