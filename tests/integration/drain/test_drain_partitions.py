"""Partitions through the Airflow tasks, task by task (no scheduler): the drain keeps the partition ledger
and pushes the partitions XCom as results arrive; wave sensors announce each closed, successful partition
once, as a partitioned event with its counts, and never a partition beyond its failure tolerance."""

from __future__ import annotations

import pytest

from tests.integration.drain._helpers import put
from tests.integration.drain.test_drain_airflow import CONN_ID, FakeTI, aws_conn, context, drain_op  # noqa: F401

pytestmark = pytest.mark.integration

SPEC = """name: {name}
job_type: j
dimensions:
  customer: [a, b, c]
  item: [1, 2, 3, 4]
partition_by: [customer]
queues: {{input: {name}-in, results: {name}-out}}
tolerated_failure_percentage: 25
"""


def _results(plan, customers, failing=()):
    from batchq.messages import ErrorInfo, WorkResult, parse_payload

    out = []
    for shard in plan.shards():
        for _, body in plan.iter_bodies(shard):
            p = parse_payload(body)
            if p.dims["customer"] not in customers:
                continue
            bad = (p.dims["customer"], p.dims["item"]) in failing
            out.append(WorkResult(batch=p.batch, run_id=p.run_id, key=p.key, plan=p.plan, status="failed" if bad else "succeeded",
                                  error=ErrorInfo(type="E", message="x") if bad else None))
    return out


def _partitioned_spec(tmp_path):
    """(batch name, spec file, plan of run-1) of a fresh 3-customer × 4-item batch."""
    import uuid

    from batchq.plan import Plan
    from batchq.spec import BatchSpec

    name = f"p{uuid.uuid4().hex[:8]}"
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(SPEC.format(name=name))
    return name, spec_path, Plan(BatchSpec.from_yaml(spec_path), "run-1")


def _wave(spec_path, sink, wave):
    from batchq.airflow.operators.partitions import PartitionWaveSensor

    return PartitionWaveSensor(task_id="announce", spec=str(spec_path), wave=wave, waves=3, sink=sink, run_id="run-1")


def _rows(ti):
    table = ti.pushed["partitions"]
    return {r[0]: dict(zip(table["fields"], r)) for r in table["rows"]}


def test_drain_and_waves_announce_each_partition_once(sqs_client, make_queue, aws_conn, tmp_path):
    from airflow.sdk.exceptions import AirflowSkipException, TaskDeferred

    from batchq.airflow.operators.partitions import partitions_asset

    name, spec_path, plan = _partitioned_spec(tmp_path)
    url = make_queue()
    sink = f"sqlite:///{tmp_path}/sink.db"
    ti = FakeTI(plan={"expected": plan.expected, "plan": plan.fingerprint})
    op = drain_op(spec=str(spec_path), results_queue=url, sink=sink, run_id="run-1", poll_interval=0.2)

    put(sqs_client, url, _results(plan, {"a"}))
    ctx = context("run-1", ti)
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(ctx)
    rows = _rows(ti)
    assert (rows["a"]["outcome"], rows["a"]["succeeded"], rows["b"]["outcome"], rows["b"]["pending"]) == ("succeeded", 4, "open", 4)

    # Wave 0 of 3 is due once one partition of three has closed; wave 1 needs two.
    wctx = context("run-1")
    assert _wave(spec_path, sink, 0).poke(wctx) is True
    event = wctx["outlet_events"][partitions_asset(name)]
    assert event.partition_keys == {"a"}
    assert event.extra["partitions"]["a"]["succeeded"] == 4 and event.extra["run_id"] == "run-1"
    assert _wave(spec_path, sink, 1).poke(context("run-1")) is False

    # b succeeds; c has 2 failures of 4 (25 % tolerated = 1): c closes failed and is never announced.
    put(sqs_client, url, _results(plan, {"b", "c"}, failing={("c", 1), ("c", 2)}))
    out = op.resume(ctx, {"reason": "available", "status": "success"}, **deferred.value.kwargs)
    assert out["failed"] == 2
    rows = _rows(ti)
    assert {k: (r["outcome"], r["failed"]) for k, r in rows.items()} == {"a": ("succeeded", 0), "b": ("succeeded", 0), "c": ("failed", 2)}
    assert all(r["closed_at"] for r in rows.values())

    w2 = context("run-1")
    assert _wave(spec_path, sink, 2).poke(w2) is True
    assert w2["outlet_events"][partitions_asset(name)].partition_keys == {"b"}
    # Wave 1 comes late: everything closed was claimed already, so it skips (no unpartitioned event).
    with pytest.raises(AirflowSkipException):
        _wave(spec_path, sink, 1).poke(context("run-1"))
    # A retry of wave 0 gets back what it claimed, nothing more.
    again = context("run-1")
    assert _wave(spec_path, sink, 0).poke(again) is True
    assert again["outlet_events"][partitions_asset(name)].partition_keys == {"a"}


def test_a_repair_announces_the_partitions_it_turned_successful_once(sqs_client, make_queue, aws_conn, tmp_path):
    """The waves never claim a partition beyond its tolerance; after a repair turns it successful,
    ``announce_repaired`` claims it under the repair's own wave: once, and a retry gets back the same."""
    import sqlalchemy as sa
    from airflow.sdk.exceptions import AirflowSkipException, TaskDeferred

    from batchq.airflow.operators.partitions import REPAIR_WAVE_BASE, RepairedPartitionsOperator, partitions_asset
    from batchq.store import ResultsStore

    name, spec_path, plan = _partitioned_spec(tmp_path)
    url = make_queue()
    sink = f"sqlite:///{tmp_path}/sink.db"

    def drain(ctx):
        op = drain_op(spec=str(spec_path), results_queue=url, sink=sink, run_id="run-1", poll_interval=0.2)
        try:
            return op.execute(ctx)
        except TaskDeferred as deferred:
            return op.resume(ctx, {"reason": "available", "status": "success"}, **deferred.value.kwargs)

    def announce_repaired(run_id="run-1"):
        ctx = context(run_id)
        op = RepairedPartitionsOperator(task_id="announce_repaired", spec=str(spec_path), sink=sink, run_id=run_id)
        out = op.execute(ctx)
        return out, ctx["outlet_events"][partitions_asset(name)]

    failing = {("c", 1), ("c", 2)}
    put(sqs_client, url, _results(plan, {"a", "b", "c"}, failing=failing))
    ti = FakeTI(plan={"expected": plan.expected, "plan": plan.fingerprint})
    assert drain(context("run-1", ti))["failed"] == 2
    last = context("run-1")
    assert _wave(spec_path, sink, 2).poke(last) is True
    assert last["outlet_events"][partitions_asset(name)].partition_keys == {"a", "b"}  # c failed: never claimed
    with pytest.raises(AirflowSkipException, match="has no repair"):
        announce_repaired()  # a first run's own waves announced it all

    # The repair re-sends c's two failed keys; their new results succeed.
    store = ResultsStore(sink)
    try:
        failed = sorted(r.key for r in _results(plan, {"c"}, failing=failing) if r.status == "failed")
        repair_id = store.record_repair(name, "run-1", [{"key": k, "status": "failed", "attempts": 1} for k in failed],
                                        mode="failed", plan=plan.fingerprint)
    finally:
        store.close()
    put(sqs_client, url, [r for r in _results(plan, {"c"}) if r.key in failed])
    ti2 = FakeTI(plan={"expected": plan.expected, "plan": plan.fingerprint})
    assert drain(context("run-1", ti2))["failed"] == 0
    assert _rows(ti2)["c"]["outcome"] == "succeeded"

    out, event = announce_repaired()
    assert out == {"repair_id": repair_id, "partitions": ["c"]}
    assert event.partition_keys == {"c"}
    assert event.extra["repair_id"] == repair_id and event.extra["run_id"] == "run-1"
    assert (event.extra["partitions"]["c"]["succeeded"], event.extra["partitions"]["c"]["failed"]) == (4, 0)
    # A retry of the task gets back what it claimed; a late wave finds nothing left to announce.
    assert announce_repaired()[0]["partitions"] == ["c"]
    with pytest.raises(AirflowSkipException):
        _wave(spec_path, sink, 1).poke(context("run-1"))
    store = ResultsStore(sink)
    try:
        with store.engine.connect() as conn:
            query = sa.text("select partition, announced_wave from batchq_partitions where batch = :b")
            waves = dict(conn.execute(query, {"b": name}).all())
    finally:
        store.close()
    assert waves == {"a": 2, "b": 2, "c": REPAIR_WAVE_BASE + repair_id}
