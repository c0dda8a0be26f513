"""Provisioning is its own task: EnsureQueuesOperator creates (idempotently) a spec's queues and returns
their URLs; plan_shards creates nothing — it takes those URLs, or looks the queues up and, when they are
missing, says which task provisions them."""

from __future__ import annotations

import json
import uuid

import pytest
from batchq.errors import QueueNotFound

from tests.support.airflow_conn import set_aws_connection

pytestmark = pytest.mark.integration

CONN_ID = "batchq_provision_test"


@pytest.fixture
def aws_conn(monkeypatch, sqs_endpoint):
    return set_aws_connection(monkeypatch, CONN_ID, sqs_endpoint)


@pytest.fixture
def spec_file(tmp_path, sqs_client):
    base = f"prov-{uuid.uuid4().hex[:8]}"
    path = tmp_path / f"{base}.yaml"
    path.write_text(f"name: prov\ndimensions:\n  customer: [a, b, c]\n  job_type: [classification, segmentation]\nqueues: {{input: {base}-in, results: {base}-out}}\n")
    yield path, base
    for suffix in ("in", "in-dlq", "out", "out-dlq"):
        try:
            sqs_client.delete_queue(QueueUrl=sqs_client.get_queue_url(QueueName=f"{base}-{suffix}")["QueueUrl"])
        except Exception:  # noqa: BLE001, S110 - cleanup is best effort
            pass


def queue_exists(sqs_client, name: str) -> bool:
    try:
        sqs_client.get_queue_url(QueueName=name)
    except Exception:  # noqa: BLE001
        return False
    return True


def test_planning_creates_nothing_and_names_the_provisioning_task(spec_file, aws_conn, sqs_client):
    from batchq.airflow.operators import plan_shards

    path, base = spec_file
    with pytest.raises(QueueNotFound, match="EnsureQueuesOperator task before plan_shards"):
        plan_shards.function(spec=str(path), aws_conn_id=aws_conn, run_id="r1")
    assert not queue_exists(sqs_client, f"{base}-in"), "plan_shards must not create queues"


def test_ensure_queues_then_plan(spec_file, aws_conn, sqs_client):
    from batchq.airflow.operators import EnsureQueuesOperator, plan_shards

    path, base = spec_file
    op = EnsureQueuesOperator(task_id="ensure_queues", spec=str(path), aws_conn_id=aws_conn)
    urls = op.execute({})
    assert set(urls) == {"input", "input_dlq", "results", "results_dlq"}
    assert urls["input"].endswith(f"/{base}-in") and urls["results_dlq"].endswith(f"/{base}-out-dlq")
    redrive = json.loads(sqs_client.get_queue_attributes(QueueUrl=urls["input"], AttributeNames=["RedrivePolicy"])["Attributes"]["RedrivePolicy"])
    assert redrive["deadLetterTargetArn"].endswith(f"{base}-in-dlq")
    assert op.execute({}) == urls  # idempotent: every DAG run may run it

    shards = plan_shards.function(spec=str(path), queues=urls, run_id="r1")  # no lookup: the task's URLs
    assert sum(s["stop"] - s["start"] for s in shards) == 6 and {s["queue_url"] for s in shards} == {urls["input"]}
    looked_up = plan_shards.function(spec=str(path), aws_conn_id=aws_conn, run_id="r1")  # the queues exist now
    assert looked_up == shards
