"""batchq_queue_health: every 5 minutes, watch every batch's queues between runs.

One task snapshots each spec's input queue (and DLQ) and results queue (and DLQ), runs the backlog-alert
detector on them (the one the waiting sensor runs during a run: stalled, old, dead letters), calls the
notifiers for every alert that fires or resolves, and emits the queue and alert gauges.

Notifiers: any Airflow notifier (``SlackNotifier(...)``, ``SmtpNotifier(...)``, your own BaseNotifier).
Put them in ON_BACKLOG_ALERT below, or name them without editing this file:
``BATCHQ_QUEUE_HEALTH_NOTIFIERS="my_company.alerts:slack_on_call"`` (comma-separated import paths).
Without any, alerts still go to the task log and the ``batchq.alert.<kind>`` gauges.
"""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import dag
from batchq.airflow.notifiers import load_notifiers
from batchq.airflow.queue_health import QueueHealthOperator

ON_BACKLOG_ALERT = load_notifiers(os.environ.get("BATCHQ_QUEUE_HEALTH_NOTIFIERS"))


@dag(
    schedule="*/5 * * * *",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["batchq"],
    doc_md=__doc__,
)
def batchq_queue_health():
    QueueHealthOperator(task_id="check_queues", on_backlog_alert=ON_BACKLOG_ALERT)


batchq_queue_health()
