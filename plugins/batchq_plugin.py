"""Expose the batchq plugin to Airflow's plugins folder — unless the installed package already registers it.

Airflow loads plugins from this folder *and* from ``airflow.plugins`` entry points; the same plugin from
both is "already registered, skipping" on every ``airflow`` command. So this file exposes
:class:`~batchq.airflow.plugin.BatchqPlugin` only where no entry point does: the Astro image (batchq
imported from ``include/``, not installed). After ``pip install .[airflow]`` the entry point registers it.
"""

from batchq.airflow.plugin import registered_by_entry_point

if not registered_by_entry_point():
    from batchq.airflow.plugin import BatchqPlugin

    __all__ = ["BatchqPlugin"]
