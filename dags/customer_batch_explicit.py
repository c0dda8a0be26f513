"""customer_batch_explicit: the same batch as ``customer_batch``, each component wired by hand.

Use this form when a step needs something the task group does not offer (another task between fan-out
and wait, a different sink per job type, ...). Manual trigger only: it shares the spec's queues with
``customer_batch`` (a run counts only its own keys, but the wait watches the whole input queue).
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag
from batchq.airflow.operators import EnsureQueuesOperator, FanOutOperator, plan_shards
from batchq.airflow.operators.drain import ResultsDrainOperator
from batchq.airflow.operators.repair import (
    RUN_ID_TEMPLATE,
    PurgeRepairedDlqOperator,
    RerunFailedOperator,
    is_new_run,
    repair_params,
)
from batchq.airflow.sensors import QueueDrainedSensor
from batchq.airflow.spec_sources import load_spec

SPEC = "customer_batch"  # a spec name in [batchq] spec_dir (include/specs/customer_batch.yaml)
load_spec(SPEC)  # parse-time validation: a bad spec is an import error naming the field and value
RUN = RUN_ID_TEMPLATE  # this run's id, or in a repair run ({"repair_run_id": ...}) the failed run it repairs


@dag(
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["batchq", "example"],
    doc_md=__doc__,
    params=repair_params(),
)
def customer_batch_explicit():
    # 1. Provision the queues (idempotent), then plan the run into index-range shards.
    ensure_queues = EnsureQueuesOperator(task_id="ensure_queues", spec=SPEC)
    shards = plan_shards(spec=SPEC, queues=ensure_queues.output, run_id=RUN)

    # 2. One mapped fan-out task per shard (none in a repair run).
    fan_out = FanOutOperator.partial(task_id="fan_out", spec=SPEC, run_id=RUN).expand(shard=shards)
    is_new_run() >> fan_out

    # 3. Wait (deferred, no worker slot) until the input queue is empty and stays empty ...
    wait_input_drained = QueueDrainedSensor(task_id="wait_input_drained", spec=SPEC)
    # 4. ... then feed the results to the real-time system at a pace it can take, and close the ledger.
    drain_results = ResultsDrainOperator(task_id="drain_results", spec=SPEC, sink_conn_id="batchq_sink", max_rate=200, run_id=RUN)

    # Repair path, idle on a normal run: clearing rerun_failed (+ downstream) in a failed run re-sends
    # only its failed keys; purge_repaired_dlq removes their DLQ copies once they succeeded.
    rerun_failed = RerunFailedOperator(task_id="rerun_failed", spec=SPEC, sink_conn_id="batchq_sink", run_id=RUN, trigger_rule="none_failed")
    purge_repaired_dlq = PurgeRepairedDlqOperator(task_id="purge_repaired_dlq", spec=SPEC, sink_conn_id="batchq_sink", run_id=RUN)

    fan_out >> rerun_failed >> wait_input_drained >> drain_results >> purge_repaired_dlq


customer_batch_explicit()
