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


def _wave(spec_path, sink, wave):
    from batchq.airflow.operators.partitions import PartitionWaveSensor

    return PartitionWaveSensor(task_id="announce", spec=str(spec_path), wave=wave, waves=3, sink=sink, run_id="run-1")


def _rows(ti):
    table = ti.pushed["partitions"]
    return {r[0]: dict(zip(table["fields"], r)) for r in table["rows"]}


def test_drain_and_waves_announce_each_partition_once(sqs_client, make_queue, aws_conn, tmp_path):
    import uuid

    from airflow.sdk.exceptions import AirflowSkipException, TaskDeferred

    from batchq.airflow.operators.partitions import partitions_asset
    from batchq.plan import Plan
    from batchq.spec import BatchSpec

    name = f"p{uuid.uuid4().hex[:8]}"
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(SPEC.format(name=name))
    plan = Plan(BatchSpec.from_yaml(spec_path), "run-1")
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
