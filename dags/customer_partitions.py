"""customer_partitions: a batch partitioned by customer; each customer is announced when it is done.

``BatchTaskGroup`` wires the pattern from include/specs/customer_partitions.yaml (``partition_by:
[customer]``). Besides the usual tasks it adds ``announce_partitions`` (mapped over waves): each wave
succeeds once its share of the customers has closed, and its success emits one partitioned event per
newly closed customer on the Asset ``batchq://customer_partitions/partitions``, that customer's counts
in the extra. The drain runs beside the wait (not after it), so customers close while workers still
process others. dags/customer_partition_report.py runs once per customer on those events.

Airflow sends a task's asset events only when it succeeds, so the announcements come in waves
(docs/partitions.md). BATCHQ_CUSTOMER_PARTITIONS_SPEC overrides the spec file.

With the repair path (``repair=True``): a customer that failed beyond its tolerance is repaired by
triggering this DAG with ``{"repair_run_id": "<the run>"}``; once its re-sent payloads succeed,
``announce_repaired`` announces it, and its downstream run starts like the others'.
"""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import dag
from batchq.airflow.operators.repair import repair_params
from batchq.airflow.task_group import BatchTaskGroup

SPEC = os.environ.get("BATCHQ_CUSTOMER_PARTITIONS_SPEC") or "customer_partitions"


@dag(
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["batchq", "example"],
    params=repair_params(),  # {"repair_run_id": null}: the trigger form's way to repair a failed customer
    doc_md=__doc__,
)
def customer_partitions():
    BatchTaskGroup(spec=SPEC, sink_conn_id="batchq_sink", partition_waves=4, repair=True, prefix_group_id=False)


customer_partitions()
