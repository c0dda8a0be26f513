"""customer_batch: every customer × job type × period, fanned out to SQS daily at 07:00.

The pattern, top to bottom:
  0. ensure_queues — create (or converge) the input/results queues and their DLQs (idempotent);
  1. plan_shards   — resolve the spec, count payloads, split into index-range shards;
  2. fan_out       — one mapped task per shard sends its payloads to the input queue (SendMessageBatch);
  3. (workers outside Airflow process the input queue and put results on the results queue);
  4. wait for the input queue to empty, then drain results to the sink at a safe rate.

Repair: a run that failed (more failures than tolerated) is repaired in place: fix the handler, then
clear ``rerun_failed`` with its downstream tasks. It re-sends only that run's failed keys; the wait and
the drain run as usual and ``purge_repaired_dlq`` removes their dead-letter copies. Or trigger the DAG
with ``{"repair_run_id": "<the failed run id>"}``: that run sends nothing new and repairs the named run
(docs/runbook.md).

The spec (include/specs/customer_batch.yaml) is validated when this file is parsed; nothing here touches
AWS or Airflow Variables until a task runs. BATCHQ_CUSTOMER_BATCH_SPEC overrides the spec file.
"""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import Param, dag, task

from batchq.airflow.operators import EnsureQueuesOperator, FanOutOperator, plan_shards
from batchq.airflow.operators.drain import ResultsDrainOperator
from batchq.airflow.operators.repair import PurgeRepairedDlqOperator, RerunFailedOperator
from batchq.airflow.sensors import QueueDrainedSensor
from batchq.airflow.spec_sources import load_spec

SPEC = os.environ.get("BATCHQ_CUSTOMER_BATCH_SPEC") or "customer_batch"
load_spec(SPEC)  # parse-time validation: a bad spec is an import error naming the field and value

#: The run every step works on: this DAG run's own, or the failed run a repair run names.
RUN = "{{ params.repair_run_id or run_id }}"


@task.short_circuit(ignore_downstream_trigger_rules=False)
def is_new_run(params: dict | None = None) -> bool:
    """False in a repair run: skips the fan-out (only), the rest of the pattern runs as usual."""
    return not (params or {}).get("repair_run_id")


@dag(
    schedule="0 7 * * *",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["batchq"],
    doc_md=__doc__,
    params={
        "repair_run_id": Param(
            None, type=["null", "string"],
            description="Repair this failed run instead of sending a new one: re-send only its failed keys.",
        ),
    },
)
def customer_batch():
    ensure_queues = EnsureQueuesOperator(task_id="ensure_queues", spec=SPEC)
    shards = plan_shards(spec=SPEC, queues=ensure_queues.output, run_id=RUN)

    fan_out = FanOutOperator.partial(task_id="fan_out", spec=SPEC, run_id=RUN).expand(shard=shards)
    is_new_run() >> fan_out  # a repair run sends only the failed keys (rerun_failed), never the whole plan

    # Wait (deferred, no worker slot) until the input queue is empty and stays empty ...
    wait_input_drained = QueueDrainedSensor(task_id="wait_input_drained", spec=SPEC)
    # ... then feed the results to the real-time system at a pace it can take, and close the run's ledger.
    drain_results = ResultsDrainOperator(task_id="drain_results", spec=SPEC, sink_conn_id="batchq_sink", max_rate=200, run_id=RUN)

    # Repair path (idle on a normal run): a cleared, failed run re-sends only its failed keys here ...
    rerun_failed = RerunFailedOperator(task_id="rerun_failed", spec=SPEC, sink_conn_id="batchq_sink", run_id=RUN, trigger_rule="none_failed")
    # ... and once their new results succeeded, their dead-letter copies go.
    purge_repaired_dlq = PurgeRepairedDlqOperator(task_id="purge_repaired_dlq", spec=SPEC, sink_conn_id="batchq_sink", run_id=RUN)

    fan_out >> rerun_failed >> wait_input_drained >> drain_results >> purge_repaired_dlq


customer_batch()
