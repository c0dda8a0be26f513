"""DAG tests for `astro dev pytest tests/dags` (inside the Astro Runtime image; also part of `make test`).

They assume no host services: the SQS endpoint is the session's embedded moto server (tests/conftest.py;
moto and pytest come from requirements-dev.txt in the image). They check that every example DAG imports,
and run the task group's own tasks — provision, plan, fan-out — against that endpoint, so the input queue
holds exactly the planned payloads.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import unique_name

REPO = Path(__file__).resolve().parents[2]


def dagbag():
    try:
        from airflow.dag_processing.dagbag import DagBag
    except ImportError:  # Airflow < 3.2
        from airflow.models.dagbag import DagBag
    return DagBag(dag_folder=str(REPO / "dags"), include_examples=False) if _accepts_examples(DagBag) else DagBag(dag_folder=str(REPO / "dags"))


def _accepts_examples(cls) -> bool:
    import inspect

    return "include_examples" in inspect.signature(cls.__init__).parameters


def test_every_example_dag_imports(monkeypatch):
    monkeypatch.delenv("BATCHQ_CUSTOMER_BATCH_SPEC", raising=False)
    bag = dagbag()
    assert bag.import_errors == {}
    assert {"customer_batch", "customer_batch_explicit", "customer_batch_report"} <= set(bag.dags)
    for dag in bag.dags.values():
        assert "batchq" in dag.tags


@pytest.mark.integration
def test_the_task_groups_tasks_send_exactly_the_planned_payloads(sqs_endpoint, sqs_client, monkeypatch, tmp_path):
    from batchq.airflow.operators import (
        EnsureQueuesOperator,
        FanOutOperator,
        plan_shards,
    )
    from batchq.plan import Plan
    from batchq.spec import BatchSpec

    from tests.support.queues import take_all_bodies

    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps(
        {"conn_type": "aws", "login": "testing", "password": "testing", "extra": {"endpoint_url": sqs_endpoint, "region_name": "us-east-1"}}))
    base = unique_name("dag")
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(
        "name: astro_check\ndimensions:\n  customer: [c1, c2, c3, c4, c5]\n  job_type: [classification, segmentation]\n"
        f"target_payloads_per_shard: 4\nqueues: {{input: {base}-in, results: {base}-out}}\n"
    )
    urls = EnsureQueuesOperator(task_id="ensure_queues", spec=str(spec_path)).execute({})
    try:
        shards = plan_shards.function(spec=str(spec_path), queues=urls, run_id="astro-run")
        assert len(shards) > 1 and {s["queue_url"] for s in shards} == {urls["input"]}
        for shard in shards:
            FanOutOperator(task_id="fan_out", spec=str(spec_path), shard=shard, run_id="astro-run").execute({})
        keys = Counter(json.loads(body)["key"] for body in take_all_bodies(sqs_client, urls["input"], lease_s=600))
        plan = Plan(BatchSpec.from_yaml(spec_path), "astro-run")
        planned = {key for shard in plan.shards() for key, _ in plan.iter_bodies(shard)}
        assert set(keys) == planned and len(planned) == plan.expected == 10
        assert max(keys.values()) == 1  # each payload once
    finally:
        for url in urls.values():
            sqs_client.delete_queue(QueueUrl=url)
