"""Two small DAGs that leave, in XCom and on the results Asset, exactly what a batchq run leaves (the
plan, the input-queue depth series, the drain task's ledger, queue lag, alert episodes), without SQS or
workers: the Batch view tests read them through Airflow like any run's.

``bv_alpha`` drains 120 payloads (3 failed, 1 of them quarantined); ``bv_beta`` runs another batch for
the authorization tests. Triggered with ``{"repair_run_id": <run>}``, a run stands in for a repair run:
its ``rerun_failed`` reports re-sending the 3 failed keys of that run and its drain closes the ledger
with none failed. The numbers are the tests' expectations (tests/support/airflow_views.py).
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Asset, dag, task
from batchq.monitor.waits import SERIES_FIELDS, series_point
from batchq.sqs.snapshot import QueueSnapshot

T0 = 1767225600.0  # 2026-01-01T00:00:00Z
# The sensor's own sample shape, plus the optional results-queue field the view also draws.
FIELDS = [*SERIES_FIELDS, "results_visible"]


def depth_series(expected: int) -> dict:
    # Workers take 12, 13, 14, ... payloads per 10 s; the drainer applies results more slowly, so the
    # results queue fills while the input drains and empties after it.
    points = []
    visible, results = expected, 0
    for i in range(15):
        in_flight = min(8, visible)
        points.append([*series_point(QueueSnapshot(T0 + 10 * i, visible, in_flight, 0, 0)), results])
        taken = min(visible, 12 + i)
        visible -= taken
        results = max(0, results + taken - 9)
    return {"fields": FIELDS, "points": points}


def partition_ledger_xcom(batch: str, run_id: str, failed: int) -> dict:
    """A real partition ledger for the run: 12 customers × 10 items written as results to a SQLite store
    in AIRFLOW_HOME (``partitions.db``), customer c03's first ``failed`` items failed, recounted by
    :class:`batchq.store.partitions.PartitionLedger`; its rows are what the drain pushes as XCom. The
    browser test compares the Batch tab's partitions table with this store."""
    import os
    from datetime import datetime, timedelta, timezone

    from batchq.store import ResultsStore
    from batchq.messages import ErrorInfo, WorkResult, parse_payload
    from batchq.plan import Plan
    from batchq.spec import BatchSpec
    from batchq.store.partitions import PartitionLedger, partition_rows_xcom

    spec = BatchSpec.from_dict({
        "name": batch, "job_type": "noop", "queues": {"input": "in", "results": "out"}, "partition_by": ["customer"],
        "dimensions": {"customer": [f"c{i:02d}" for i in range(1, 13)], "item": list(range(10))},
    })
    plan = Plan(spec, run_id)
    t0 = datetime.fromtimestamp(T0, tz=timezone.utc)
    store = ResultsStore(f"sqlite:///{os.environ['AIRFLOW_HOME']}/partitions.db")
    try:
        results = []
        for shard in plan.shards():
            for _, body in plan.iter_bodies(shard):
                p = parse_payload(body)
                bad = p.dims["customer"] == "c03" and p.dims["item"] < failed
                results.append(WorkResult(
                    batch=batch, run_id=run_id, key=p.key, plan=p.plan, status="failed" if bad else "succeeded",
                    error=ErrorInfo(type="ValueError", message="no orders") if bad else None,
                    enqueued_at=t0, first_received_at=t0 + timedelta(seconds=int(p.dims["customer"][1:])),
                ))
        store.apply(results)
        ledger = PartitionLedger(store.engine, batch, run_id, spec.partition_by, plan.partition_expected(),
                                 plan_fingerprint=plan.fingerprint, key_partitions=plan.key_partitions)
        return partition_rows_xcom(ledger.refresh())
    finally:
        store.close()


def make_batch_dag(dag_id: str, batch: str, expected: int, failed: int, partitions: bool = False):
    asset = Asset(f"batchq://{batch}/results")

    @dag(dag_id=dag_id, schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False, tags=["batchq"])
    def batch_dag():
        @task
        def plan_shards(ti=None):
            ti.xcom_push(key="plan", value={"batch": batch, "expected": expected, "product": expected, "shards": 2})
            return [{"start": 0, "stop": expected}]

        @task
        def wait_input_drained(ti=None):
            ti.xcom_push(key="drain_series", value=depth_series(expected))
            return {"reason": "drained", "waited_s": 130.0}

        @task
        def rerun_failed(dag_run=None, ti=None):
            # The shape of RerunFailedOperator's return value (batchq.store.repairs.RepairReport.to_dict).
            target = (dag_run.conf or {}).get("repair_run_id")
            if not target:
                return {"selected": 0, "sent": 0, "outcome_before": None}
            keys = [f"{batch}-key-{i}" for i in range(failed)]
            report = {
                "batch": batch, "run_id": target, "mode": "failed", "selected": failed, "sent": failed, "not_sent": 0,
                "by_status": {"failed": failed}, "repair_id": 1, "dry_run": False, "outcome_before": "failed",
                "reason": dag_run.conf.get("repair_reason"), "requested_by": f"airflow:{dag_id}.rerun_failed try 1",
                "requested_at": T0 + 3600, "keys": keys,
            }
            ti.xcom_push(key="repair", value=report)  # as RerunFailedOperator does
            return report

        @task(outlets=[asset])
        def drain_results(ti=None, outlet_events=None, dag_run=None):
            target = (dag_run.conf or {}).get("repair_run_id")
            n_failed = 0 if target else failed  # the repair fixed every failed key
            counts = {
                "batch": batch, "run_id": target or ti.run_id, "expected": expected, "succeeded": expected - n_failed, "failed": n_failed,
                "quarantined": 0 if target else 1, "pending": 0, "tolerated_failures": 5, "outcome": "succeeded",
            }
            failures = [{"key": f"{batch}-key-{i}", "error": {"type": "ValueError", "message": f"customer {i} has no orders"}} for i in range(n_failed)]
            ti.xcom_push(key="queue_lag", value={
                "input_wait": {"p50": 21.5, "p95": 58.0, "max": 64.2},
                "processing": {"p50": 0.8, "p95": 2.4, "max": 3.1},
                "results_wait": {"p50": 4.0, "p95": 9.5, "max": 11.0},
                # The run's figures as run_lag defines them: first enqueue → last applied, and the
                # most payloads waiting at once (more than any poll of the wait saw).
                "time_to_drain_s": 95.0, "peak_depth": expected, "results": expected,
                "source": "SQS SentTimestamp / ApproximateFirstReceiveTimestamp",
            })
            ti.xcom_push(key="alert_episodes", value=[
                {"kind": "growing", "started_at": T0 + 20, "resolved_at": T0 + 60, "message": "input backlog grew for 40s while 2 workers ran"},
            ])
            if partitions and not target:
                ti.xcom_push(key="partitions", value=partition_ledger_xcom(batch, ti.run_id, failed))
            outlet_events[asset].extra = counts
            # As ResultsDrainOperator does: the ledger under its own key (the DAG tab reads only that),
            # and as the return value.
            ti.xcom_push(key="ledger", value={**counts, "first_failures": failures})
            return {**counts, "first_failures": failures, "drain": {"applied": expected}}

        @task
        def fan_out(shard):
            # Mapped, with a return value per map index: the Batch views must not read these.
            return {"sent": shard["stop"] - shard["start"]}

        shards = plan_shards()
        fan_out.expand(shard=shards) >> rerun_failed() >> wait_input_drained() >> drain_results()

    return batch_dag()


make_batch_dag("bv_alpha", "bvalpha", expected=120, failed=3, partitions=True)
make_batch_dag("bv_beta", "bvbeta", expected=40, failed=0)
