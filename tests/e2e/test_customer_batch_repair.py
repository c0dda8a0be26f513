"""Repairing a failed run through the real Airflow task path (issue 12).

Pass 1: ``airflow dags test customer_batch`` with a worker whose handler fails for one customer
(8 of 96 payloads, more than the 1 % tolerated): the drain closes the ledger ``failed`` and the run
fails; the 8 payloads sit in the input DLQ. The handler is fixed (its flag file deleted).

Pass 2: the repair, as a DAG run triggered with ``{"repair_run_id": <the failed run>}`` (the other
documented path, clearing ``rerun_failed`` and downstream in the failed run, needs a scheduler, which
``dags test`` does not have): ``is_new_run`` skips the fan-out, ``rerun_failed`` re-sends the failed
run's failed keys, the deferred wait, the drain and ``purge_repaired_dlq`` run as Airflow tasks on the
failed run's ledger. Airflow's SQS traffic goes through a loopback proxy that records every confirmed
SendMessageBatch entry, so the test counts what the input queue received: only the 8 failed keys.
Then: one row per key in the sink, all succeeded, the DLQ empty, the ledger ``succeeded`` with the
repair recorded (outcome before/after), and the repair DAG run green.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
from batchq.store import ResultsStore
from batchq.store.schema import results_table
from batchq.plan import Plan
from batchq.spec import BatchSpec
from batchq.sqs import get_snapshot
from batchq.sqs.queues import ensure_queues

from tests.support.sqs_fault_proxy import SqsFaultProxy

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.slow]

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
BROKEN_CUSTOMER = "cust-0003"


@pytest.fixture
def repair_spec(customer_spec):
    """12 customers → 96 payloads; tolerated 1 % → 0 failures; short visibility so moto stays quick."""
    return customer_spec(
        customers=12,
        params='{model_version: "repair", lookback_days: 30}',
        queue_extra=", visibility_timeout_s: 30",
        extra="tolerated_failure_percentage: 1.0",
    )


@pytest.fixture
def broken_worker(repair_spec, sqs_client, sqs_endpoint, tmp_path):
    """One ``batchq worker`` running tests/e2e/repair_jobs.py, broken while ``flag`` exists."""
    spec = BatchSpec.from_yaml(repair_spec)
    ensure_queues(sqs_client, spec.queues)
    flag, trace = tmp_path / "broken", tmp_path / "trace"
    flag.write_text("the handler has a bug")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(HERE), str(REPO / "include"), os.environ.get("PYTHONPATH", "")]),
        "BATCHQ_TEST_BROKEN_FLAG": str(flag),
        "BATCHQ_TEST_BROKEN_CUSTOMER": BROKEN_CUSTOMER,
        "BATCHQ_TEST_TRACE": str(trace),
    }
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "batchq.cli", "worker", "--spec", str(repair_spec), "--handlers", "repair_jobs",
            "--no-entry-points", "--endpoint-url", sqs_endpoint, "--wait-seconds", "1", "--max-attempts", "2",
        ],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
    )
    yield flag
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def test_failed_run_is_repaired_in_place(airflow_home, repair_spec, broken_worker, sqs_client, sqs_endpoint, pg_url):
    spec = BatchSpec.from_yaml(repair_spec)
    # A logical date (so a run id) of its own: the shared PostgreSQL keeps every run's ledger.
    first = datetime(2031, 1, 1, tzinfo=timezone.utc) + timedelta(seconds=random.randrange(10**8))
    # ``dags test`` replaces a run of the same logical date: the repair run gets the next day.
    logical, repair_date = first.isoformat(), (first + timedelta(days=1)).isoformat()
    env = {
        "BATCHQ_CUSTOMER_BATCH_SPEC": str(repair_spec),
        "AIRFLOW_CONN_BATCHQ_SINK": pg_url,
        "AIRFLOW__BATCHQ__WAIT_STABLE_FOR_S": "2",
        "AIRFLOW__BATCHQ__WAIT_POLL_INTERVAL_S": "0.5",
    }
    dlq_url = sqs_client.get_queue_url(QueueName=spec.queues.input_dlq)["QueueUrl"]

    # -- pass 1: the run fails ---------------------------------------------------------------------
    proc, run_id = airflow_home.dags_test("customer_batch", logical, env=env, check=False, timeout=240)
    states = dict(airflow_home.query("select task_id, state from task_instance where run_id = ? and map_index <= 0", run_id))
    assert states.get("drain_results") == "failed", (states, proc.stdout[-3000:])
    assert states.get("rerun_failed") == "success", "idle on the first pass"

    plan = Plan(spec, run_id, dag_id="customer_batch")
    planned = {key: json.loads(body)["dims"]["customer"] for shard in plan.shards() for key, body in plan.iter_bodies(shard)}
    broken = {k for k, customer in planned.items() if customer == BROKEN_CUSTOMER}
    assert len(planned) == 96 and len(broken) == 8
    store = ResultsStore(pg_url)
    try:
        run = store.get_run(spec.name, run_id)
        assert (run["outcome"], run["failed"]) == ("failed", 8)
        assert get_snapshot(sqs_client, dlq_url).visible == 8

        # -- the handler is fixed; pass 2: a repair run names the failed run ---------------------------
        broken_worker.unlink()
        with SqsFaultProxy(sqs_endpoint) as proxy:
            conn = json.loads(airflow_home.env["AIRFLOW_CONN_AWS_DEFAULT"])
            conn["extra"]["endpoint_url"] = proxy.url
            before = airflow_home.query("select coalesce(max(id), 0) from dag_run")[0][0]
            proc = airflow_home.run(
                "dags", "test", "customer_batch", repair_date, "-c", json.dumps({"repair_run_id": run_id}),
                env={**env, "AIRFLOW_CONN_AWS_DEFAULT": json.dumps(conn)}, check=False, timeout=240,
            )
            sent = Counter(key for op, url, key in proxy.log.events if op == "sent" and url.rstrip("/").endswith("/" + spec.queues.input))
        (repair_run,) = airflow_home.query("select run_id, state from dag_run where dag_id = 'customer_batch' and id > ?", before)
        states = dict(airflow_home.query("select task_id, state from task_instance where run_id = ? and map_index <= 0", repair_run[0]))
        assert repair_run[1] == "success", ("the repair run ends green", states, proc.stdout[-4000:])
        assert states.get("fan_out") == "skipped" and states.get("purge_repaired_dlq") == "success", states
        assert airflow_home.query("select state from dag_run where run_id = ?", run_id) == [("failed",)], "the failed run keeps its history"
        # What the Batch view shows of the repair, from Airflow alone: the repair run's conf and XComs.
        from batchq.monitor.report import run_report

        (conf,) = airflow_home.query("select conf from dag_run where run_id = ?", repair_run[0])[0]
        xcoms = airflow_home.query("select key, value from xcom where run_id = ? and key in ('return_value', 'ledger')", repair_run[0])
        made = run_report("customer_batch", repair_run[0], [(k, json.loads(v)) for k, v in xcoms], conf=json.loads(conf)).repairs.made
        assert (made.run_id, made.sent, made.outcome_before, made.outcome_after) == (run_id, 8, "failed", "succeeded"), made
        assert made.requested_at and "repair_run_id" in made.reason and made.requested_by.startswith("airflow:customer_batch.rerun_failed")

        assert set(sent) == broken and sum(sent.values()) == 8, f"only the failed keys were re-sent: {sent}"

        with store.engine.connect() as c:
            rows = c.execute(
                sa.select(results_table.c.key, results_table.c.status).where(results_table.c.batch == spec.name, results_table.c.run_id == run_id)
            ).all()
        assert len(rows) == 96 and {k for k, _ in rows} == set(planned), "one row per planned key"
        assert {s for _, s in rows} == {"succeeded"}
        run = store.get_run(spec.name, run_id)
        assert (run["outcome"], run["succeeded"], run["failed"]) == ("succeeded", 96, 0)
        (repair,) = store.repairs(spec.name, run_id)
        assert (repair["outcome_before"], repair["outcome_after"], repair["keys"], repair["sent"], repair["dlq_purged"]) == ("failed", "succeeded", 8, 8, 8)
        assert repair["requested_by"].startswith("airflow:customer_batch.rerun_failed")
        history = store.key_history(spec.name, run_id, min(broken))
        assert [(h["status_before"], h["status_after"]) for h in history] == [("failed", "succeeded")]
        assert history[0]["attempts_before"] >= 1 and history[0]["attempts_after"] >= 1
    finally:
        store.close()
    assert get_snapshot(sqs_client, dlq_url).visible == 0, "the DLQ is empty"
