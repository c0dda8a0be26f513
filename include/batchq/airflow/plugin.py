"""The batchq Airflow plugin (registered as the ``airflow.plugins`` entry point ``batchq`` and exposed by
``plugins/batchq_plugin.py``). It makes batchq visible to Airflow; the operators themselves are imported
from :mod:`batchq.airflow.operators` like any provider's."""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin


class BatchqPlugin(AirflowPlugin):
    """Registers batchq with Airflow (later: queue-health metrics, API and UI page)."""

    name = "batchq"
