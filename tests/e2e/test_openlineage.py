"""OpenLineage events of a real run (issue 20): `airflow dags test` of a one-group DAG with real `batchq
workers`, the OpenLineage provider writing its events to a file (its file transport). The fan-out's COMPLETE
event names the spec file and its Variable source as inputs and the SQS input queue as output; the
drain's names the results queue as input and the sink's results table as output; no credential appears."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from batchq.spec import BatchSpec
from batchq.sqs.queues import ensure_queues, get_queue_arn

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

DAG = '''
import os

import pendulum
from airflow.sdk import dag
from batchq.airflow.task_group import BatchTaskGroup


@dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False)
def ol_batch():
    BatchTaskGroup(spec=os.environ["OL_SPEC"], sink_conn_id="ol_sink", prefix_group_id=False)


ol_batch()
'''


@pytest.fixture
def ol_spec(tmp_path, customer_spec):
    path = customer_spec(customers=2, params="{model_version: ol, lookback_days: 7}")
    # One dimension from an Airflow Variable: a source the lineage must name.
    text = path.read_text().replace("customer: [cust-0001, cust-0002]", "customer: variable:ol_customers")
    path.write_text(text)
    return path


@pytest.fixture
def ol_workers(ol_spec, sqs_client, sqs_endpoint):
    spec = BatchSpec.from_yaml(ol_spec)
    ensure_queues(sqs_client, spec.queues)
    proc = subprocess.Popen(
        [sys.executable, "-m", "batchq.cli", "worker", "--spec", str(ol_spec), "--handlers", "batchq.examples",
         "--endpoint-url", sqs_endpoint, "--wait-seconds", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, env={**os.environ},
    )
    yield proc
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _events(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_fan_out_and_drain_report_their_datasets(airflow_home, ol_spec, ol_workers, sqs_client, tmp_path):
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "ol_batch.py").write_text(DAG)
    events_file = tmp_path / "openlineage.jsonl"
    sink_db = tmp_path / "sink.db"
    spec = BatchSpec.from_yaml(ol_spec)
    env = {
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "OL_SPEC": str(ol_spec),
        "AIRFLOW_VAR_OL_CUSTOMERS": json.dumps(["cust-0001", "cust-0002"]),
        "AIRFLOW_CONN_OL_SINK": json.dumps({"conn_type": "sqlite", "host": str(sink_db)}),
        "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps({"type": "file", "log_file_path": str(events_file), "append": True}),
        "AIRFLOW__OPENLINEAGE__NAMESPACE": "batchq-e2e",
        "AIRFLOW__BATCHQ__WAIT_STABLE_FOR_S": "1",
        "AIRFLOW__BATCHQ__WAIT_POLL_INTERVAL_S": "0.5",
    }
    proc, run_id = airflow_home.dags_test("ol_batch", "2026-10-02", env=env, timeout=600)
    states = dict(airflow_home.query("select task_id, state from task_instance where run_id = ? and map_index <= 0", run_id))
    assert states.get("drain_results") == "success", (states, proc.stdout[-4000:])

    complete = {}
    for event in _events(events_file):
        if event.get("eventType") == "COMPLETE":
            complete.setdefault(event["job"]["name"].rsplit(".", 1)[-1], []).append(event)

    def names(datasets):
        return {(d["namespace"], d["name"]) for d in datasets}

    # The queues' own ARNs (moto's account 123456789012, LocalStack's 000000000000) split at the last colon.
    def dataset(queue_name):
        arn = get_queue_arn(sqs_client, sqs_client.get_queue_url(QueueName=queue_name)["QueueUrl"])
        assert arn.endswith(f":{queue_name}") and arn.startswith("arn:aws:sqs:")
        return tuple(arn.rsplit(":", 1))

    fan_out = complete["fan_out"][0]
    assert names(fan_out["inputs"]) == {("file", str(Path(ol_spec).resolve())), ("airflow", "variable/ol_customers")}
    assert names(fan_out["outputs"]) == {dataset(spec.queues.input)}

    drain = complete["drain_results"][0]
    assert names(drain["inputs"]) == {dataset(spec.queues.results)}
    assert names(drain["outputs"]) == {("file", str(sink_db.resolve()))}
