"""``airflow dags test customer_batch`` end to end against the test SQS endpoint: the input queue holds
exactly the planned payloads, once each, with the keys Plan computes for that run; mapped tasks are
labelled with their shard ranges; XComs carry the per-shard counts."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from tests.support.queues import take_all_bodies

from batchq.messages import parse_payload

from batchq.spec import BatchSpec
from batchq.plan import Plan
from batchq.sqs import get_queue_url, get_snapshot

pytestmark = pytest.mark.e2e


@pytest.fixture
def small_spec(customer_spec):
    """The example's shape at 20 customers (160 payloads after the exclusion, 4 shards): moto stays fast."""
    return customer_spec(customers=20, params='{model_version: "e2e"}')


def drain_keys(client, url) -> tuple[Counter, list]:
    payloads = [parse_payload(body) for body in take_all_bodies(client, url, lease_s=600)]
    return Counter(p.key for p in payloads), payloads


def test_dags_test_leaves_exactly_the_planned_payloads_in_the_input_queue(airflow_home, small_spec, sqs_client):
    proc, run_id = airflow_home.dags_test(
        "customer_batch",
        "2026-11-29",
        env={"BATCHQ_CUSTOMER_BATCH_SPEC": str(small_spec)},
        # No workers here: the payloads must stay in the queue, so the drain steps are marked, not run.
        mark_success_pattern="^(wait_input_drained|drain_results)$",
    )

    states = dict(
        ((task, idx), state)
        for task, idx, state in airflow_home.query(
            "select task_id, map_index, state from task_instance where run_id = ?", run_id
        )
    )
    assert set(states.values()) == {"success"}, states

    spec = BatchSpec.from_yaml(small_spec)
    plan = Plan(spec, run_id, dag_id="customer_batch")  # the DAG id is part of the run identity (issue 8)
    shards = plan.shards()
    assert plan.expected == 160 and len(shards) == 4
    assert {k for k in states if k[0] == "fan_out"} == {("fan_out", s.index) for s in shards}

    # The UI label of each mapped task is its shard range.
    labels = dict(airflow_home.query(
        "select map_index, rendered_map_index from task_instance where run_id = ? and task_id = 'fan_out'", run_id
    ))
    assert labels == {s.index: s.label for s in shards}

    # Per-shard XComs add up to the plan; the planner's summary XCom matches it too.
    results = [json.loads(v) for (v,) in airflow_home.query(
        "select value from xcom where run_id = ? and task_id = 'fan_out' and key = 'return_value'", run_id
    )]
    assert sum(r["sent"] for r in results) == sum(r["expected"] for r in results) == plan.expected
    assert all(r["failed"] == 0 for r in results)
    (summary,) = [json.loads(v) for (v,) in airflow_home.query(
        "select value from xcom where run_id = ? and task_id = 'plan_shards' and key = 'plan'", run_id
    )]
    assert summary["expected"] == plan.expected and summary["shards"] == len(shards)

    url = get_queue_url(sqs_client, spec.queues.input)
    snap = get_snapshot(sqs_client, url)
    assert (snap.visible, snap.in_flight, snap.delayed) == (plan.expected, 0, 0)

    keys, payloads = drain_keys(sqs_client, url)
    expected_keys = {k for s in shards for k, _ in plan.iter_bodies(s)}
    assert keys == Counter({k: 1 for k in expected_keys}), "missing, extra or duplicate payloads"
    assert all(p.run_id == run_id and p.batch == "customer_batch" for p in payloads)
    assert not any(p.dims["job_type"] == "use_case_analysis" and p.dims["period"] == "daily" for p in payloads)
    assert Counter(p.job_type for p in payloads) == {"classification": 60, "segmentation": 60, "use_case_analysis": 40}

    # The queues were provisioned by the run, with their dead-letter queues.
    for name in (spec.queues.input_dlq, spec.queues.results, spec.queues.results_dlq):
        get_queue_url(sqs_client, name)
