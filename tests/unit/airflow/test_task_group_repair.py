"""``BatchTaskGroup(repair=True)``: the repair path's tasks, edges and run id (parse-only, no SQS)."""

from __future__ import annotations

from pathlib import Path

import jinja2
import pendulum

REPO = Path(__file__).resolve().parents[3]
SPEC_YAML = REPO / "include" / "specs" / "customer_batch.yaml"


def test_repair_adds_the_rerun_and_purge_steps_around_the_pattern():
    from airflow.sdk import DAG
    from batchq.airflow.operators.repair import RUN_ID_TEMPLATE
    from batchq.airflow.task_group import BatchTaskGroup

    with DAG("tg_repair", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")) as dag:
        group = BatchTaskGroup(spec=str(SPEC_YAML), sink_conn_id="batchq_sink", repair=True, drain_kwargs={"ledger_conn_id": "ledger"})
    edges = {(up, t.task_id) for t in dag.tasks for up in t.upstream_task_ids}
    g = "customer_batch."
    assert {(g + "is_new_run", g + "fan_out"), (g + "fan_out", g + "rerun_failed"), (g + "rerun_failed", g + "wait_input_drained"),
            (g + "drain_results", g + "purge_repaired_dlq")} <= edges
    assert (g + "fan_out", g + "wait_input_drained") not in edges
    rerun, purge = group.rerun_failed, group.purge_repaired_dlq
    assert rerun.trigger_rule == "none_failed"  # runs when a repair run skipped the fan-out
    for op in (rerun, purge, group.drain):
        assert op.run_id == RUN_ID_TEMPLATE
    assert group.fan_out.partial_kwargs["run_id"] == RUN_ID_TEMPLATE
    assert dag.get_task(g + "plan_shards").op_kwargs["run_id"] == RUN_ID_TEMPLATE
    assert (rerun.plan_task_id, rerun.ledger_conn_id, purge.sink_conn_id) == (g + "plan_shards", "ledger", "batchq_sink")


def test_the_run_id_template_names_the_repaired_run_only_in_a_repair_run():
    from batchq.airflow.operators.repair import RUN_ID_TEMPLATE

    env = jinja2.Environment(undefined=jinja2.StrictUndefined)  # Airflow's default: a missing name fails
    template = env.from_string(RUN_ID_TEMPLATE)
    assert template.render(params={}, run_id="scheduled__1") == "scheduled__1"
    assert template.render(params={"repair_run_id": None}, run_id="scheduled__1") == "scheduled__1"
    assert template.render(params={"repair_run_id": "scheduled__0"}, run_id="manual__2") == "scheduled__0"


def test_rerun_failed_records_why_and_who_for_the_batch_view():
    from types import SimpleNamespace

    from batchq.airflow.operators.repair import RerunFailedOperator

    op = RerunFailedOperator(task_id="rerun_failed", spec=str(SPEC_YAML), sink="sqlite://")
    ti = SimpleNamespace(try_number=2)
    repair_run = SimpleNamespace(conf={"repair_run_id": "scheduled__0", "repair_reason": "handler fixed"}, triggering_user_name="ana")
    assert op._who_and_why({"ti": ti, "dag_run": repair_run, "run_id": "manual__1"}) == (
        "handler fixed", "airflow:None.rerun_failed try 2 (triggered by ana)"
    )
    unexplained = SimpleNamespace(conf={"repair_run_id": "scheduled__0"}, triggering_user_name=None)
    assert op._who_and_why({"ti": ti, "dag_run": unexplained, "run_id": "manual__1"}) == (
        "repair run manual__1 triggered with repair_run_id", "airflow:None.rerun_failed try 2"
    )
    cleared = SimpleNamespace(conf={}, triggering_user_name=None)
    assert op._who_and_why({"ti": ti, "dag_run": cleared, "run_id": "scheduled__0"})[0] == "rerun_failed cleared in Airflow"


def test_with_partitions_the_repair_path_announces_what_the_repair_turned_successful():
    from airflow.sdk import DAG
    from batchq.airflow.operators.partitions import RepairedPartitionsOperator, partition_events_supported
    from batchq.airflow.operators.repair import RUN_ID_TEMPLATE
    from batchq.airflow.task_group import BatchTaskGroup

    spec = str(REPO / "include" / "specs" / "customer_partitions.yaml")
    start = pendulum.datetime(2026, 1, 1, tz="UTC")
    with DAG("tg_repair_parts", schedule=None, start_date=start) as dag:
        group = BatchTaskGroup(spec=spec, sink_conn_id="batchq_sink", repair=True, prefix_group_id=False)
    with DAG("tg_parts", schedule=None, start_date=start):
        plain = BatchTaskGroup(spec=spec, sink_conn_id="batchq_sink", prefix_group_id=False)
    assert not hasattr(plain, "announce_repaired")  # no repair path, nothing to announce after one
    if not partition_events_supported():  # Airflow 3.2: no partitioned events at all
        assert group.announce is None and group.announce_repaired is None
        return
    op = group.announce_repaired
    assert isinstance(op, RepairedPartitionsOperator) and op.task_id == "announce_repaired"
    assert dag.get_task("announce_repaired").upstream_task_ids == {"drain_results"}
    # The drain still runs beside the wait (partitions close while workers process others).
    assert dag.get_task("drain_results").upstream_task_ids == {"rerun_failed"}
    assert dag.get_task("wait_input_drained").upstream_task_ids == {"rerun_failed"}
    assert op.run_id == RUN_ID_TEMPLATE and op.sink_conn_id == "batchq_sink"
    assert [a.uri for a in op.outlets] == ["batchq://customer_partitions/partitions"]
