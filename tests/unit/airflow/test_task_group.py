"""``BatchTaskGroup``: one line expands into provision → plan → fan-out → wait → drain, every option reaches
its operator, and a bad call fails at parse time with a clear message. Parse-only (no SQS)."""

from __future__ import annotations

from pathlib import Path

import pendulum
import pytest
from batchq.errors import SpecError

REPO = Path(__file__).resolve().parents[3]
SPEC_YAML = REPO / "include" / "specs" / "customer_batch.yaml"


def build(**kwargs):
    from airflow.sdk import DAG
    from batchq.airflow.task_group import BatchTaskGroup

    with DAG("tg_test", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")) as dag:
        group = BatchTaskGroup(**{"spec": str(SPEC_YAML), "sink_conn_id": "batchq_sink", **kwargs})
    return dag, group


def upstream(dag, task_id):
    return dag.get_task(task_id).upstream_task_ids


def test_one_line_expands_into_the_five_steps_in_order():
    dag, group = build()
    ids = {t: f"customer_batch.{t}" for t in ("ensure_queues", "plan_shards", "fan_out", "wait_input_drained", "drain_results")}
    assert set(dag.task_ids) == set(ids.values())
    assert upstream(dag, ids["ensure_queues"]) == set()
    assert upstream(dag, ids["plan_shards"]) == {ids["ensure_queues"]}
    assert upstream(dag, ids["fan_out"]) == {ids["plan_shards"]}
    assert upstream(dag, ids["wait_input_drained"]) == {ids["fan_out"]}
    assert upstream(dag, ids["drain_results"]) == {ids["wait_input_drained"]}
    # The drain reads the expected count from this group's planner, not a bare "plan_shards".
    assert group.drain.plan_task_id == ids["plan_shards"]
    assert group.wait.plan_task_id == ids["plan_shards"]  # the backlog alerts' expected count
    # The fan-out is mapped over the planner's shards.
    from airflow.sdk.definitions.mappedoperator import MappedOperator

    assert isinstance(group.fan_out, MappedOperator)


def test_every_option_reaches_its_operator():
    dag, group = build(
        group_id="nightly",
        sink=None,
        sink_conn_id="rt_system",
        max_rate=37,
        aws_conn_id="aws_batch",
        max_in_flight=5,
        stable_for=12,
        poll_interval=3,
        dlq_threshold=4,
        deferrable=False,
        fan_out_kwargs={"retries": 4},
        wait_kwargs={"timeout": 600},
        drain_kwargs={"ledger_conn_id": "ledger_db", "drain_timeout": 900},
    )
    assert group.group_id == "nightly"
    wait, drain = dag.get_task("nightly.wait_input_drained"), dag.get_task("nightly.drain_results")
    assert (drain.max_rate, drain.sink_conn_id, drain.ledger_conn_id, drain.drain_timeout) == (37, "rt_system", "ledger_db", 900)
    assert (wait.stable_for, wait.poll_interval, wait.dlq_threshold, wait.timeout) == (12, 3, 4, 600)
    assert wait.deferrable is False and drain.deferrable is False
    assert wait.queue_name == "customer-batch-input" and wait.dlq_name == "customer-batch-input-dlq"
    fan_out = group.fan_out
    assert fan_out.partial_kwargs["max_in_flight"] == 5
    assert fan_out.partial_kwargs["retries"] == 4
    for op in (wait, drain):
        assert op.aws_conn_id == "aws_batch"
    assert fan_out.partial_kwargs["aws_conn_id"] == "aws_batch"
    # Provisioning and planning get the same connection.
    assert dag.get_task("nightly.ensure_queues").aws_conn_id == "aws_batch"
    assert dag.get_task("nightly.plan_shards").op_kwargs["aws_conn_id"] == "aws_batch"


def test_provision_false_plans_against_existing_queues():
    dag, _ = build(provision=False)
    assert "customer_batch.ensure_queues" not in dag.task_ids
    assert upstream(dag, "customer_batch.plan_shards") == set()
    assert "provision" not in dag.get_task("customer_batch.plan_shards").op_kwargs  # plans, creates nothing
    assert "queues" not in dag.get_task("customer_batch.plan_shards").op_kwargs


def test_two_groups_in_one_dag_keep_apart(tmp_path):
    other = tmp_path / "other.yaml"
    other.write_text("name: other_batch\ndimensions:\n  customer: [a, b]\n  job_type: [classification]\nqueues: {input: o-in, results: o-out}\n")
    from airflow.sdk import DAG
    from batchq.airflow.task_group import BatchTaskGroup

    with DAG("two", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")) as dag:
        first = BatchTaskGroup(spec=str(SPEC_YAML), sink="sqlite:///a.db")
        second = BatchTaskGroup(spec=str(other), sink="sqlite:///b.db")
    assert first.drain.plan_task_id == "customer_batch.plan_shards"
    assert second.drain.plan_task_id == "other_batch.plan_shards"
    assert dag.get_task("other_batch.wait_input_drained").queue_name == "o-in"
    # Each drain updates its own batch's results Asset.
    assert [a.uri for a in second.drain.outlets] == ["batchq://other_batch/results"]


def test_no_sink_is_a_clear_error():
    with pytest.raises(ValueError, match="sink= .* or sink_conn_id="):
        build(sink_conn_id=None)


def test_a_bad_spec_fails_when_the_group_is_built(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\ndimensions:\n  customer: [c1, c1]\n  job_type: [classification]\nqueues: {input: i, results: r}\n")
    with pytest.raises(SpecError, match="duplicate value 'c1'"):
        build(spec=str(bad))
