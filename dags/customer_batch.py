"""customer_batch: every customer × job type × period, fanned out to SQS daily at 07:00.

The pattern, top to bottom:
  0. ensure_queues — create (or converge) the input/results queues and their DLQs (idempotent);
  1. plan_shards   — resolve the spec, count payloads, split into index-range shards;
  2. fan_out       — one mapped task per shard sends its payloads to the input queue (SendMessageBatch);
  3. (workers outside Airflow process the input queue and put results on the results queue);
  4. wait for the input queue to empty, then drain results to the sink at a safe rate.

The spec (include/specs/customer_batch.yaml) is validated when this file is parsed; nothing here touches
AWS or Airflow Variables until a task runs. BATCHQ_CUSTOMER_BATCH_SPEC overrides the spec file.
"""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import dag

from batchq.airflow.operators import EnsureQueuesOperator, FanOutOperator, plan_shards
from batchq.airflow.operators.drain import ResultsDrainOperator
from batchq.airflow.sensors import QueueDrainedSensor
from batchq.airflow.spec_sources import load_spec

SPEC = os.environ.get("BATCHQ_CUSTOMER_BATCH_SPEC") or "customer_batch"
load_spec(SPEC)  # parse-time validation: a bad spec is an import error naming the field and value


@dag(
    schedule="0 7 * * *",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["batchq"],
    doc_md=__doc__,
)
def customer_batch():
    ensure_queues = EnsureQueuesOperator(task_id="ensure_queues", spec=SPEC)
    shards = plan_shards(spec=SPEC, queues=ensure_queues.output)

    fan_out = FanOutOperator.partial(task_id="fan_out", spec=SPEC).expand(shard=shards)

    # Wait (deferred, no worker slot) until the input queue is empty and stays empty ...
    wait_input_drained = QueueDrainedSensor(task_id="wait_input_drained", spec=SPEC)
    # ... then feed the results to the real-time system at a pace it can take, and close the run's ledger.
    drain_results = ResultsDrainOperator(task_id="drain_results", spec=SPEC, sink_conn_id="batchq_sink", max_rate=200)

    fan_out >> wait_input_drained >> drain_results


customer_batch()
