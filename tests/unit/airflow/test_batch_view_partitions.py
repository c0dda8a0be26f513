"""The Batch tab's partitions table: counts, per-tenant lag, sorted and paged server-side from query
parameters for 10,000 customers (a page never holds more than its rows), no script."""

from __future__ import annotations

import re

import pytest

from batchq.monitor.partition_table import MAX_PER_PAGE, PartitionTable
from batchq.monitor.report import run_report
from batchq.store.partitions import ROW_FIELDS

pages = pytest.importorskip("batchq.airflow.views.pages")


def _xcom(n):
    rows = []
    for i in range(n):
        outcome = "failed" if i == 7 else ("open" if i % 1000 == 999 else "succeeded")
        done = outcome != "open"
        rows.append([f"cust-{i:05d}", 10, 10 if outcome == "succeeded" else (6 if outcome == "failed" else 4), 4 if outcome == "failed" else 0,
                     0 if done else 6, outcome, 1767225600.0 + i if done else None, 0.5 + (i % 13), (100.0 + i % 977) if done else None])
    return {"fields": list(ROW_FIELDS), "rows": rows}


def _render(report, **query):
    table = report.partition_table
    page = table.page(query.get("psort"), {"asc": False, "desc": True}.get(query.get("pdir", "")), query.get("ppage", 1)) if table else None
    return pages._env().get_template("run.html").render(base="/batchq", title="t", r=report, drain_chart=None, ptable=table, ppage=page)


def test_counts_and_the_slowest_first_by_default():
    report = run_report("dag", "r", [("partitions", _xcom(10_000)), ("plan", {"expected": 100_000})])
    html = _render(report)
    assert 'data-pcount="partitions"><div class="n">10,000<' in html
    assert 'data-pcount="done"><div class="n">9,989<' in html
    assert 'data-pcount="pending"><div class="n">10<' in html and 'data-pcount="failed"><div class="n">1<' in html
    rows = re.findall(r'<tr data-partition="([^"]+)" data-outcome="([^"]+)">', html)
    assert len(rows) == 50
    # Default sort: time to last result, slowest first; open partitions (not done at all) lead.
    assert [o for _, o in rows[:10]] == ["open"] * 10
    assert "<script" not in html


def test_sorting_and_paging_come_from_query_parameters():
    report = run_report("dag", "r", [("partitions", _xcom(10_000))])
    html = _render(report, psort="partition", pdir="asc", ppage=200)
    rows = re.findall(r'<tr data-partition="([^"]+)"', html)
    assert rows[0] == "cust-09950" and rows[-1] == "cust-09999" and len(rows) == 50
    assert "Page 200 of 200" in html and "next →" not in html and "ppage=199" in html
    failed = _render(report, psort="failed", pdir="desc")
    assert re.findall(r'<tr data-partition="([^"]+)"', failed)[0] == "cust-00007"
    # Unknown sort falls back; a page past the end is clamped; the page size is capped.
    table = PartitionTable(_xcom(10_000))
    assert table.page("nope").sort == "time_to_last_s"
    assert table.page("partition", False, 10**6).page == 200
    assert len(table.page("partition", False, 1, per_page=10**6).rows) == MAX_PER_PAGE


def test_a_run_without_partitions_has_no_section_and_bad_xcom_is_empty():
    assert "Partitions" not in _render(run_report("dag", "r", [("plan", {"expected": 3})]))
    assert len(PartitionTable({"fields": ["partition"], "rows": "x"})) == 0


def test_partition_names_are_escaped():
    bad = _xcom(1)
    bad["rows"][0][0] = "<img src=x onerror=alert(1)>"
    html = _render(run_report("dag", "r", [("partitions", bad)]))
    assert "<img" not in html and "&lt;img" in html
