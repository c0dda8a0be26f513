"""The metrics reference: the code, batchq.metrics.CATALOG and docs/metrics.md name the same metrics."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from batchq.metrics import (
    CATALOG,
    MAX_TAG_CHARS,
    OTHER,
    TagLimiter,
    catalog_table,
    metric_name,
)
from batchq.monitor.trend import queue_gauges
from batchq.sqs.snapshot import QueueSnapshot

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "include" / "batchq"
#: Which ``Metrics(<component>)`` each module's ``self.metrics``/``metrics`` calls belong to.
COMPONENT_OF = {
    "worker/runner.py": "worker",
    "worker/lambda_adapter.py": "lambda",
    "worker/supervisor.py": "supervisor",
    "cli/drain.py": "drain",
}
CATALOG_NAMES = {m.name for m in CATALOG}


def statsd_names_in_source() -> set[str]:
    """``batchq.<component>.<name>`` of every literal ``*.incr/timing/gauge("name", ...)`` call."""
    found = set()
    for rel, component in COMPONENT_OF.items():
        tree = ast.parse((PACKAGE / rel).read_text())
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("incr", "timing", "gauge")
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
            ):
                found.add(metric_name(component, node.args[0].value))
    # cli/drain.py sends its counters from a tuple: DrainMetrics.COUNTERS
    from batchq.cli.drain import DrainMetrics

    found |= {metric_name("drain", n) for n in DrainMetrics.COUNTERS}
    return found


def airflow_names(monkeypatch) -> set[str]:
    """Names the Airflow-side emitters send, recorded through a stand-in for Airflow's stats module."""
    import batchq.airflow.metrics as am

    sent: set[str] = set()

    class Recorder:
        def gauge(self, name, value, tags=None):
            sent.add(name)

        def incr(self, name, value=1, tags=None):
            sent.add(name)

    monkeypatch.setattr(am, "_stats", lambda: Recorder())
    am.emit_queue_gauges("q", queue_gauges(QueueSnapshot(taken_at=0, visible=1, in_flight=1, delayed=1, dlq_visible=1), eta_s=5))
    am.emit_drain_report("b", {"applied": 1, "quarantined": 1, "sink_retries": 1, "rate_per_s": 1.0, "pace_limit": 2.0, "pace_rtt_ms": 5.0, "pace_baseline_ms": 4.0}, queue="q")
    am.emit_ledger("b", {"expected": 1, "succeeded": 1, "failed": 0, "pending": 0})
    # the alert gauges go through the same emitter
    from batchq.airflow.notifiers import emit_alert_gauges

    emit_alert_gauges("q", [])
    am.emit_lag("b", {"input_wait": {"p95": 1}, "processing": {"p95": 1}, "results_wait": {"p95": 1}, "time_to_drain_s": 3})
    return sent


def test_every_metric_in_the_code_is_in_the_catalog_and_vice_versa(monkeypatch):
    emitted = statsd_names_in_source() | airflow_names(monkeypatch)
    assert emitted - CATALOG_NAMES == set(), "emitted but not in batchq.metrics.CATALOG (and docs/metrics.md)"
    assert CATALOG_NAMES - emitted == set(), "in the catalog but nothing emits it"


def test_docs_table_is_the_catalog():
    doc = (ROOT / "docs" / "metrics.md").read_text()
    table = re.search(r"<!-- metrics-table:start -->\n(.*?)\n<!-- metrics-table:end -->", doc, re.DOTALL)
    assert table, "docs/metrics.md lost its metrics-table markers"
    assert table.group(1).strip() == catalog_table().strip(), "docs/metrics.md is stale: regenerate the table from CATALOG"
    assert "docs/metrics.md" in (ROOT / "README.md").read_text()


def test_catalog_entries_are_well_formed():
    assert len(CATALOG_NAMES) == len(CATALOG), "a metric is listed twice"
    for m in CATALOG:
        assert m.name.startswith("batchq."), m
        assert m.type in ("counter", "gauge", "timer"), m
        assert m.meaning and m.emitter, m


def test_tag_limiter_caps_distinct_values_and_length_known_values_always_pass():
    limiter = TagLimiter(max_values=2, known={"batch": {"customer_batch"}})
    assert [limiter.value("batch", v) for v in ("a", "b", "c", "a")] == ["a", "b", OTHER, "a"]
    assert limiter.value("batch", "customer_batch") == "customer_batch"
    assert limiter.value("queue", "c") == "c"  # per tag key
    assert len(limiter.value("queue", "x" * 500)) <= MAX_TAG_CHARS or limiter.value("queue", "x" * 500) == OTHER
    assert limiter.tags({"batch": "zzz", "job_type": None}) == {"batch": OTHER}


@pytest.mark.parametrize("bad", ["a|b", "a,b", "a#b", "a:b"])
def test_statsd_line_separators_never_reach_the_wire(bad):
    from batchq.metrics import format_line

    line = format_line("batchq.worker.processed", 1, "c", {"batch": bad}, "dogstatsd")
    assert line.count("|") == 2 and line.count(":") == 2, line
