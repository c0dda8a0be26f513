"""customer_batch_report: runs whenever a ``customer_batch`` run has drained all its results.

Scheduled on the Asset ``batchq://customer_batch/results`` that ``drain_results`` updates when a run's
ledger closes within tolerance. The event's extra carries the run's counts (expected, succeeded, failed,
and the drain totals), so a downstream job knows what landed without querying anything.
"""

from __future__ import annotations

from typing import Any

import pendulum
from airflow.sdk import dag, task
from batchq.airflow.operators.drain import results_asset

RESULTS = results_asset("customer_batch")


@dag(
    schedule=[RESULTS],
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["batchq", "example"],
    doc_md=__doc__,
)
def customer_batch_report():
    @task
    def summarize(triggering_asset_events: Any = None) -> list[dict[str, Any]]:
        """Log (and return) the counts of every results event that triggered this run."""
        import logging

        log = logging.getLogger("customer_batch_report")
        summaries = []
        for event in (triggering_asset_events or {}).get(RESULTS, []):
            extra = dict(event.extra or {})
            log.info("results of %s: %s", event.source_run_id, extra)
            summaries.append({"source_run_id": event.source_run_id, **extra})
        return summaries

    summarize()


customer_batch_report()
