"""The task group's provisioning step creates a spec's queues and DLQs on a real endpoint, idempotently."""

from __future__ import annotations

import json

import pytest

from tests.conftest import unique_name

pytestmark = pytest.mark.integration


def test_ensure_queues_task_creates_queues_with_redrive_and_is_idempotent(sqs_endpoint, sqs_client, monkeypatch, tmp_path):
    monkeypatch.setenv("AIRFLOW_CONN_AWS_TG", json.dumps({"conn_type": "aws", "login": "testing", "password": "testing",
                                                        "extra": {"endpoint_url": sqs_endpoint, "region_name": "us-east-1"}}))
    base = unique_name("tg")
    spec = tmp_path / "s.yaml"
    spec.write_text(f"name: tg\ndimensions:\n  customer: [a]\n  job_type: [classification]\n"
                    f"queues: {{input: {base}-in, results: {base}-out, max_receive_count: 4}}\n")
    from batchq.airflow.task_group import ensure_queues

    urls = ensure_queues.function(spec=str(spec), aws_conn_id="aws_tg")
    try:
        assert ensure_queues.function(spec=str(spec), aws_conn_id="aws_tg") == urls
        attrs = sqs_client.get_queue_attributes(QueueUrl=urls["input"], AttributeNames=["RedrivePolicy"])["Attributes"]
        policy = json.loads(attrs["RedrivePolicy"])
        assert int(policy["maxReceiveCount"]) == 4
        assert policy["deadLetterTargetArn"].endswith(f"{base}-in-dlq")
    finally:
        for url in urls.values():
            sqs_client.delete_queue(QueueUrl=url)
