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
from batchq.airflow.sensors import QueueDrainedSensor
from batchq.airflow.spec_sources import load_spec

SPEC = "customer_batch"  # a spec name in [batchq] spec_dir (include/specs/customer_batch.yaml)
load_spec(SPEC)  # parse-time validation: a bad spec is an import error naming the field and value


@dag(
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["batchq", "example"],
    doc_md=__doc__,
)
def customer_batch_explicit():
    # 1. Provision the queues (idempotent), then plan the run into index-range shards.
    ensure_queues = EnsureQueuesOperator(task_id="ensure_queues", spec=SPEC)
    shards = plan_shards(spec=SPEC, queues=ensure_queues.output)

    # 2. One mapped fan-out task per shard.
    fan_out = FanOutOperator.partial(task_id="fan_out", spec=SPEC).expand(shard=shards)

    # 3. Wait (deferred, no worker slot) until the input queue is empty and stays empty ...
    wait_input_drained = QueueDrainedSensor(task_id="wait_input_drained", spec=SPEC)
    # 4. ... then feed the results to the real-time system at a pace it can take, and close the ledger.
    drain_results = ResultsDrainOperator(task_id="drain_results", spec=SPEC, sink_conn_id="batchq_sink", max_rate=200)

    fan_out >> wait_input_drained >> drain_results


customer_batch_explicit()
