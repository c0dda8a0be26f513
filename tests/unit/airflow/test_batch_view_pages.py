"""The Batch views' templates render any RunReport, however little the run recorded."""

from __future__ import annotations

import pytest
from batchq.report import run_report

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


def test_problems_are_shown():
    html = _render_run(run_report("dag", "r1", [("drain_series", {"fields": "bad"}), ("plan", {"expected": 3})]))
    assert 'class="problem">depth series: unreadable' in html


def test_drain_chart_draws_only_recorded_fields():
    fields = ["t", "visible", "in_flight", "delayed", "dlq"]
    report = run_report("d", "r", [("backlog_series", {"fields": fields, "points": [[0, 4, 1, 0, 0], [10, 0, 0, 0, 0]]})])
    chart = pages.drain_chart(report)
    assert chart.count('data-series="input visible"') == 3  # polyline + 2 points
    assert "results visible" not in chart and "input delayed" not in chart  # absent / always zero
