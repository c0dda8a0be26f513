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

The same DAG wired by hand is dags/customer_batch_explicit.py; a DAG scheduled on the results Asset is
dags/customer_batch_report.py. Nothing here touches AWS or Airflow Variables until a task runs.
BATCHQ_CUSTOMER_BATCH_SPEC overrides the spec file.
"""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import dag
from batchq.airflow.task_group import BatchTaskGroup

SPEC = os.environ.get("BATCHQ_CUSTOMER_BATCH_SPEC") or "customer_batch"


@dag(
    schedule="0 7 * * *",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["batchq"],
    doc_md=__doc__,
)
def customer_batch():
    # prefix_group_id=False keeps the task ids plain (plan_shards, fan_out, ...): the REST API, the
    # plugin and dashboards refer to them.
    BatchTaskGroup(spec=SPEC, sink_conn_id="batchq_sink", max_rate=200, prefix_group_id=False)


customer_batch()
