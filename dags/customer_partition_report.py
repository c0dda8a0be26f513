"""customer_partition_report: runs once per customer, as soon as that customer's results are all in.

Scheduled with ``PartitionedAssetTimetable`` (Airflow ≥ 3.2, AIP-76) on the Asset
``batchq://customer_partitions/partitions`` that dags/customer_partitions.py's ``announce_partitions``
waves update: one run per partition key (the customer), never waiting for the other customers.
``partition_counts`` reads this customer's counts (expected, succeeded, failed, closed_at) from the
triggering event's extra.
"""

from __future__ import annotations

from typing import Any

import pendulum
from airflow.sdk import PartitionedAssetTimetable, dag, get_current_context, task
from batchq.airflow.operators.partitions import partition_counts, partitions_asset

PARTITIONS = partitions_asset("customer_partitions")


@dag(
    schedule=PartitionedAssetTimetable(assets=PARTITIONS),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["batchq", "example"],
    doc_md=__doc__,
)
def customer_partition_report():
    @task
    def customer_report() -> dict[str, Any] | None:
        """This customer's counts (what a per-customer export or dashboard refresh would start from)."""
        import logging

        context = get_current_context()
        counts = partition_counts(context)
        logging.getLogger("customer_partition_report").info("customer %s: %s", context["dag_run"].partition_key, counts)
        return counts

    customer_report()


customer_partition_report()
