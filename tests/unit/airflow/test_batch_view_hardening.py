"""The Batch views survive any data and any text: every malformed XCom is a per-section notice (never a
500), every path part is one quoted segment, every page carries the CSP and frame policy, and batch
ownership named in a spec overrides outlet inference."""

from __future__ import annotations

import math
import re
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from batchq.monitor.report import run_report

pages = pytest.importorskip("batchq.airflow.views.pages")
from batchq.airflow.views.headers import CONTENT_SECURITY_POLICY  # noqa: E402

KEYS = ["plan", "backlog_series", "drain_series", "results_series", "ledger", "return_value", "repair", "queue_lag", "alert_episodes", "first_failures"]
NUMBERS = st.one_of(st.integers(min_value=-(2**70), max_value=2**70), st.floats(allow_nan=True, allow_infinity=True))
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, st.text(max_size=12))
JSON = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=10), inner, max_size=5)), max_leaves=25)
FIELDS = st.lists(st.sampled_from(["t", "visible", "in_flight", "delayed", "dlq", "results_visible", "results_in_flight", "applied", "x"]), max_size=8)
#: Shapes close to the real ones, with hostile values: what a half-broken producer leaves.
SERIES = st.fixed_dictionaries({"fields": FIELDS, "points": st.lists(st.lists(st.one_of(st.none(), NUMBERS), max_size=9), max_size=6)})
LEDGER = st.fixed_dictionaries(
    {"expected": NUMBERS, "succeeded": st.one_of(st.none(), NUMBERS), "failed": st.one_of(st.none(), NUMBERS)},
    optional={"first_failures": JSON, "outcome": JSON, "batch": JSON, "pending": JSON, "quarantined": JSON},
)
LAG = st.dictionaries(st.sampled_from(["input_wait", "processing", "results_wait", "source"]), st.one_of(JSON, st.dictionaries(st.sampled_from(["p50", "p95", "max"]), NUMBERS)))
REPAIR = st.fixed_dictionaries({"selected": JSON, "sent": JSON}, optional={"repair_id": JSON, "outcome_before": JSON, "keys": JSON, "requested_at": NUMBERS})
VALUE = st.one_of(JSON, SERIES, LEDGER, LAG, REPAIR)
XCOMS = st.lists(st.tuples(st.sampled_from(KEYS), VALUE), max_size=8)


ENV = pages._env()


def _render_run(report) -> str:
    return ENV.get_template("run.html").render(base="/batchq", title="t", r=report, drain_chart=pages.drain_chart(report))


def _render_dag(reports) -> str:
    batch = [r for r in reports if r.has_batch]
    drain, depth = pages.trend_charts(reports) if batch else ("", "")
    return ENV.get_template("dag.html").render(base="/batchq", title="t", dag_id="d", reports=reports, batch_reports=batch, drain_chart=drain, depth_chart=depth)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(runs=st.lists(st.tuples(XCOMS, st.lists(JSON, max_size=2), st.one_of(st.none(), JSON)), min_size=1, max_size=3))
def test_any_json_in_any_xcom_renders_both_pages(runs):
    reports = []
    for i, (xcoms, extras, conf) in enumerate(runs):
        report = run_report("d", f"r{i}", xcoms, asset_extras=[e for e in extras if isinstance(e, dict)], conf=conf if isinstance(conf, dict) else None)
        _render_run(report)
        reports.append(report)
    _render_dag(reports)


@pytest.mark.parametrize("xcoms,section,notice", [
    ([("ledger", {"expected": 3, "succeeded": 2, "failed": 1, "first_failures": {"k": "boom"}})], "First failures", "first failures: unreadable"),
    ([("backlog_series", {"fields": ["t", "visible"], "points": [[0, float("nan")], [1, 0]]})], "Drain curve", "depth series: unreadable"),
    ([("backlog_series", {"fields": ["t", "visible"], "points": [[0, math.inf], [1, 0]]})], "Drain curve", "depth series: unreadable"),
    ([("queue_lag", {"input_wait": {"p95": float("inf")}})], "Queue lag", "queue lag: unreadable"),
    ([("alert_episodes", {"kind": "stalled"})], "Alerts", "alert episodes: unreadable"),
    ([("ledger", {"expected": -1, "succeeded": 0})], "Ledger", "ledger: unreadable"),
])
def test_each_malformed_xcom_is_a_notice_in_its_own_section(xcoms, section, notice):
    good = [("plan", {"batch": "b", "expected": 3}), ("alert_episodes", [{"kind": "stalled", "started_at": 1.0}])]
    if section == "Alerts":
        good = good[:1]
    report = run_report("d", "r", xcoms + good)
    html = _render_run(report)
    sections = dict(re.findall(r"<h2>([^<]+)</h2>(.*?)(?=<h2>|\Z)", html, re.DOTALL))
    assert f'class="problem notice">{notice}' in sections[section]
    # The rest of the page still renders: the plan's expected count and a section without the problem.
    assert 'data-count="expected"' in html or section == "Ledger"
    assert "problem" not in sections["Alerts" if section != "Alerts" else "Queue lag"]


def test_one_malformed_run_does_not_break_the_dag_tab():
    bad = run_report("d", "bad", [("ledger", {"expected": 2, "succeeded": 1, "failed": 1, "first_failures": {"k": 1}}), ("backlog_series", {"fields": ["t", "visible"], "points": [[0, float("inf")]]})])
    good = run_report("d", "good", [("ledger", {"expected": 2, "succeeded": 2, "failed": 0})])
    html = _render_dag([bad, good])
    assert 'data-run="good"' in html and "unreadable data" in html


@pytest.mark.parametrize("run_id,expected", [("../../..", "..%2F..%2F.."), ("..", "%252E%252E"), (".", "%252E"), ("a/b?c#d", "a%2Fb%3Fc%23d")])
def test_path_parts_are_one_quoted_segment(run_id, expected):
    report = run_report("d", "r2", [("plan", {"expected": 1})], conf={"repair_run_id": run_id})
    html = pages._env().get_template("dag.html").render(base="/batchq", title="t", dag_id="d", reports=[report], batch_reports=[report], drain_chart="", depth_chart="")
    assert f'href="/batchq/ui/dags/d/runs/{expected}"' in html
    # No link of the page resolves outside the DAG's runs.
    from urllib.parse import urljoin

    for href in re.findall(r'href="([^"]+)"', html):
        resolved = urljoin("http://airflow.example/batchq/ui/dags/d/runs/r2", href)
        assert resolved.startswith("http://airflow.example/batchq/ui/"), href


def test_every_page_response_carries_the_csp_and_frame_policy():
    response = pages.render(SimpleNamespace(scope={"root_path": "/batchq"}), "run.html", title="t", r=run_report("d", "r", []), drain_chart=None)
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert response.headers["x-frame-options"] == "SAMEORIGIN"
    csp = dict(part.strip().split(" ", 1) for part in CONTENT_SECURITY_POLICY.split(";"))
    assert csp["default-src"] == "'none'" and "script-src" not in csp and csp["frame-ancestors"] == "'self'"
    assert csp["base-uri"] == "'none'" and csp["form-action"] == "'none'"


class _Auth:
    """The two questions BatchAccess asks Airflow's auth manager, answered for a user scoped to ``dags``."""

    def __init__(self, dags):
        self.dags = set(dags)

    def get_authorized_dag_ids(self, user, method):
        return set(self.dags)

    def is_authorized_dag(self, method, user):
        return False


def test_owners_override_outlet_inference(caplog):
    from batchq.airflow.views.access import BatchAccess

    outlets = [("orders", "orders_dag"), ("orders", "intruder_dag"), ("open", "any_dag")]
    owners = {"orders": ("orders_dag",), "open": None}
    intruder = BatchAccess("u", auth=_Auth({"intruder_dag"}), outlets=outlets, owners=owners)
    assert not intruder.may_see("orders") and intruder.dags_of("orders") == []
    assert "intruder_dag" in caplog.text and "ignored" in caplog.text
    owner = BatchAccess("u", auth=_Auth({"orders_dag"}), outlets=outlets, owners=owners)
    assert owner.may_see("orders") and owner.dags_of("orders") == ["orders_dag"]
    # Without owners, today's inference stays: any DAG declaring the outlet grants access (the caveat).
    assert BatchAccess("u", auth=_Auth({"any_dag"}), outlets=outlets, owners=owners).may_see("open")
    # An owner that declares no outlet (yet) still grants access.
    assert BatchAccess("u", auth=_Auth({"late_dag"}), outlets=[], owners={"orders": ("late_dag",)}).may_see("orders")
