"""The whole pattern end to end: ``airflow dags test customer_batch`` with real ``batchq workers`` processes
against the test SQS endpoint and a PostgreSQL sink.

plan_shards → fan_out (mapped) → [workers outside Airflow] → wait_input_drained (deferred; the triggerer
runs in-process under ``dags test``) → drain_results (paced, idempotent). Afterwards: the sink has exactly
one row per planned key, the run's ledger is closed as succeeded, the input and results queues are empty,
the drain curve is in XCom and the results Asset got an event carrying the counts."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from batchq.store import ResultsStore
from batchq.store.schema import results_table
from batchq.plan import Plan
from batchq.spec import BatchSpec
from batchq.sqs import get_snapshot
from batchq.sqs.queues import ensure_queues

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.slow]


@pytest.fixture
def e2e_spec(customer_spec):
    """The example's shape at 12 customers: 96 payloads after the exclusion, 3 shards (moto stays quick)."""
    return customer_spec(
        customers=12,
        params='{model_version: "e2e", lookback_days: 30}',
        queue_extra=", visibility_timeout_s: 60",
        extra="tolerated_failure_percentage: 1.0",
    )


@pytest.fixture
def workers(e2e_spec, sqs_client, sqs_endpoint):
    """``batchq workers`` (the autoscaling supervisor) running the example handlers, stopped with SIGTERM."""
    spec = BatchSpec.from_yaml(e2e_spec)
    ensure_queues(sqs_client, spec.queues)  # workers start before the ensure_queues task provisions; idempotent
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "batchq.cli", "workers", "--spec", str(e2e_spec), "--handlers", "batchq.examples",
            "--endpoint-url", sqs_endpoint, "--min", "1", "--max", "2", "--backlog-per-worker", "40",
            "--poll-interval", "1", "--wait-seconds", "1",
        ],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ},
    )
    yield proc
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def test_customer_batch_end_to_end(airflow_home, e2e_spec, workers, sqs_client, pg_url):
    spec = BatchSpec.from_yaml(e2e_spec)
    env = {
        "BATCHQ_CUSTOMER_BATCH_SPEC": str(e2e_spec),
        "AIRFLOW_CONN_BATCHQ_SINK": pg_url,
        # Exact emulator counters: a short stability window is enough here (AWS: keep the 60 s default).
        "AIRFLOW__BATCHQ__WAIT_STABLE_FOR_S": "2",
        "AIRFLOW__BATCHQ__WAIT_POLL_INTERVAL_S": "0.5",
    }
    proc, run_id = airflow_home.dags_test("customer_batch", "2026-10-01", env=env, timeout=600)  # a date no other e2e test uses
    states = dict(airflow_home.query("select task_id, state from task_instance where run_id = ? and map_index <= 0", run_id))
    assert states.get("wait_input_drained") == "success", (states, proc.stdout[-4000:])
    assert states.get("drain_results") == "success", (states, proc.stdout[-4000:])

    plan = Plan(spec, run_id, dag_id="customer_batch")  # the DAG id is part of the run identity (issue 8)
    planned = {key for shard in plan.shards() for key, _ in plan.iter_bodies(shard)}
    assert len(planned) == plan.expected == 96

    store = ResultsStore(pg_url)
    try:
        with store.engine.connect() as conn:
            rows = conn.execute(
                sa.select(results_table.c.key, results_table.c.status).where(results_table.c.batch == "customer_batch", results_table.c.run_id == run_id)
            ).all()
        keys = [k for k, _ in rows]
        assert len(keys) == 96, "one row per planned key"
        assert set(keys) == planned
        run = store.get_run("customer_batch", run_id)
        assert run["outcome"] == "succeeded" and run["expected"] == 96 and run["succeeded"] + run["failed"] == 96
    finally:
        store.close()

    urls = {name: sqs_client.get_queue_url(QueueName=name)["QueueUrl"] for name in (spec.queues.input, spec.queues.results)}
    for name, url in urls.items():
        assert get_snapshot(sqs_client, url).backlog == 0, f"{name} not empty"

    # The sensor pushed the drain curve; the drain task returned the ledger counts and emitted the Asset event.
    series = airflow_home.query("select value from xcom where run_id = ? and task_id = 'wait_input_drained' and key = 'backlog_series'", run_id)
    assert series, "no backlog_series XCom"
    counts = airflow_home.query("select value from xcom where run_id = ? and task_id = 'drain_results' and key = 'return_value'", run_id)
    assert counts and json.loads(counts[0][0])["expected"] == 96
    # Deliveries bounded (the primary key hides duplicates): every result received at most ~twice.
    drained = json.loads(counts[0][0])["drain"]
    assert 96 <= drained["applied"] and drained["received"] <= 2 * 96, drained
    # The drain curve's two halves: the results queue rides the sensor's series; the drain task's own curve.
    assert json.loads(series[0][0])["fields"][-2:] == ["results_visible", "results_in_flight"]
    curve = airflow_home.query("select value from xcom where run_id = ? and task_id = 'drain_results' and key = 'results_series'", run_id)
    assert curve and json.loads(curve[0][0])["points"][-1][3] == drained["applied"]
    # ... with the drain's pace on it (the Batch view's "pace" line): a limit, the sink's round trip, its baseline
    fields, last = json.loads(curve[0][0])["fields"], json.loads(curve[0][0])["points"][-1]
    pace = dict(zip(fields, last))
    assert pace["pace_limit"] >= 1, pace
    events = airflow_home.query(
        "select e.extra from asset_event e join asset a on a.id = e.asset_id where a.uri = 'batchq://customer_batch/results' and e.source_run_id = ?", run_id
    )
    assert len(events) == 1 and json.loads(events[0][0])["succeeded"] + json.loads(events[0][0])["failed"] == 96

    # The Batch view, rendered from this real run's XComs (not the demo DAGs' synthetic ones), shows
    # what the run did: the ledger's counts, the drain curve from both halves, the lag figures.
    from batchq.airflow.views import pages
    from batchq.airflow.views.data import REPORT_XCOM_KEYS
    from batchq.monitor.report import run_report

    raw = airflow_home.query("select key, value from xcom where dag_id = 'customer_batch' and run_id = ? order by timestamp", run_id)
    xcoms = [(key, json.loads(value)) for key, value in raw if key in REPORT_XCOM_KEYS]
    report = run_report("customer_batch", run_id, xcoms, state="success")
    html = pages._env().get_template("run.html").render(base="/batchq", title="t", r=report, drain_chart=pages.drain_chart(report))
    ledger = json.loads(counts[0][0])
    assert f'data-count="expected"><div class="n">96<' in html
    assert f'data-count="succeeded"><div class="n">{ledger["succeeded"]}<' in html
    assert f'data-count="pending"><div class="n">0<' in html
    assert "No depth series recorded for this run." not in html and 'id="drain-curve"' in html
    # The pace line of this real drain, on its own axis, at the limits the drain recorded.
    paced = [dict(zip(fields, p))["pace_limit"] for p in json.loads(curve[0][0])["points"]]
    drawn = [float(y) for y in re.findall(r'data-series="pace" data-x="[^"]*" data-y="([^"]*)"', html)]
    assert 'polyline' in html and 'data-series="pace"' in html and "pace (writes in flight)" in html
    assert drawn and drawn == [float(f"{y:g}") for y in paced if y and y > 0], (drawn, paced)
    if os.environ.get("BATCHQ_SCREENSHOT_DIR"):  # for a person to look at: the page as rendered from the real run
        Path(os.environ["BATCHQ_SCREENSHOT_DIR"], "real-run-batch-tab.html").write_text(html)
    assert "No lag data recorded for this run." not in html
    assert report.ledger.expected == 96 and report.ledger.succeeded + (report.ledger.failed or 0) == 96
