"""The Batch views in Airflow's UI (``external_views`` of :class:`~batchq.airflow.plugin.BatchqPlugin`).

``pages`` (routes + templates), ``data`` (reads XComs/Asset events into :class:`batchq.monitor.report.RunReport`),
``gauges`` (live queue state, shared with the JSON API), ``access`` (batch → DAG authorization) and
``svg`` (pure chart rendering, no Airflow import). Importing this package imports nothing heavy.
"""
