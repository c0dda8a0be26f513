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


def make_batch_dag(dag_id: str, batch: str, expected: int, failed: int):
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
                "source": "SQS SentTimestamp / ApproximateFirstReceiveTimestamp",
            })
            ti.xcom_push(key="alert_episodes", value=[
                {"kind": "growing", "started_at": T0 + 20, "resolved_at": T0 + 60, "message": "input backlog grew for 40s while 2 workers ran"},
            ])
            outlet_events[asset].extra = counts
            return {**counts, "first_failures": failures, "drain": {"applied": expected}}

        @task
        def fan_out(shard):
            # Mapped, with a return value per map index: the Batch views must not read these.
            return {"sent": shard["stop"] - shard["start"]}

        shards = plan_shards()
        fan_out.expand(shard=shards) >> rerun_failed() >> wait_input_drained() >> drain_results()

    return batch_dag()


make_batch_dag("bv_alpha", "bvalpha", expected=120, failed=3)
make_batch_dag("bv_beta", "bvbeta", expected=40, failed=0)
