"""Expose the batchq plugin to Airflow's plugins folder (the package also registers it as an entry point)."""

from batchq.airflow.plugin import BatchqPlugin

__all__ = ["BatchqPlugin"]
