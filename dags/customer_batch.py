"""customer_batch: every customer × job type × period, fanned out to SQS daily at 07:00 — in one line.

``BatchTaskGroup`` wires the pattern from the spec (include/specs/customer_batch.yaml):
  1. ensure_queues      — create/converge the input and results queues and their DLQs (idempotent;
                          EnsureQueuesOperator);
  2. plan_shards        — resolve the spec, count payloads, split into index-range shards;
  3. fan_out            — one mapped task per shard sends its payloads to the input queue;
  4. (workers outside Airflow process the input queue and put results on the results queue);
  5. wait_input_drained — deferred until the input queue is empty and stays empty;
  6. drain_results      — feed results to the real-time system (connection ``batchq_sink``) at a safe
                          rate, close the run's ledger, update the Asset ``batchq://customer_batch/results``.
Repair (``repair=True``): ``rerun_failed`` (between fan_out and the wait) and ``purge_repaired_dlq`` (after
the drain) idle on a normal run. A failed run is repaired in place: fix the handler, clear
``rerun_failed`` with its downstream tasks; only that run's failed keys are re-sent, the wait and drain run
as usual, and their DLQ copies go. Or trigger with ``{"repair_run_id": "<failed run id>"}``: that run
sends nothing new and repairs the named run (docs/runbook.md).

The same DAG wired by hand is dags/customer_batch_explicit.py; a DAG scheduled on the results Asset is
dags/customer_batch_report.py. Nothing here touches AWS or Airflow Variables until a task runs.
BATCHQ_CUSTOMER_BATCH_SPEC overrides the spec file; BATCHQ_CUSTOMER_BATCH_NOTIFIERS names backlog-alert
notifiers (``"my_company.alerts:slack_on_call,..."``, as for the queue-health DAG) and
BATCHQ_CUSTOMER_BATCH_ALERT_POLICY their thresholds as JSON (``{"stall_after_s": 600}``).
"""

from __future__ import annotations

import json
import os

import pendulum
from airflow.sdk import dag
from batchq.airflow.notifiers import load_notifiers
from batchq.airflow.operators.repair import repair_params
from batchq.airflow.task_group import BatchTaskGroup

SPEC = os.environ.get("BATCHQ_CUSTOMER_BATCH_SPEC") or "customer_batch"
ON_BACKLOG_ALERT = load_notifiers(os.environ.get("BATCHQ_CUSTOMER_BATCH_NOTIFIERS"))
ALERT_POLICY = json.loads(os.environ.get("BATCHQ_CUSTOMER_BATCH_ALERT_POLICY") or "null")


@dag(
    schedule="0 7 * * *",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["batchq"],
    doc_md=__doc__,
    params=repair_params(),  # {"repair_run_id": null}: the trigger form's way to repair a failed run
)
def customer_batch():
    # prefix_group_id=False keeps the task ids plain (plan_shards, fan_out, ...): the REST API, the
    # plugin and dashboards refer to them.
    BatchTaskGroup(
        spec=SPEC,
        sink_conn_id="batchq_sink",
        max_rate=200,
        repair=True,
        prefix_group_id=False,
        wait_kwargs={"on_backlog_alert": ON_BACKLOG_ALERT, "alert_policy": ALERT_POLICY},
    )


customer_batch()
