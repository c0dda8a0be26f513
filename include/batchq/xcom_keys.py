"""Every XCom key batchq writes or reads, declared once.

The operators push under these names and the Batch view (:mod:`batchq.monitor.report`) reads them: a key
renamed in one place only would silently blank a section of the view. Kernel: imports nothing.
"""

#: ``plan_shards``'s plan summary (run key, fingerprint, expected count, queues).
PLAN = "plan"
#: The drain task's ledger (counts, outcome, first failures).
LEDGER = "ledger"
#: Tasks' return values (the drain's ledger, ``rerun_failed``'s repair report, …).
RETURN_VALUE = "return_value"
#: ``rerun_failed``'s repair report (also its return value), under its own key so that the DAG tab can
#: read it without deserialising every task's return value.
REPAIR = "repair"
#: The input wait's depth series; ``drain_series`` is its first name, still read for old runs.
BACKLOG_SERIES = "backlog_series"
LEGACY_DRAIN_SERIES = "drain_series"
#: The results queue while the drain task drains it (t, results_visible, results_in_flight, applied).
RESULTS_SERIES = "results_series"
#: The run's queue lag (:func:`batchq.monitor.lag.run_lag`).
QUEUE_LAG = "queue_lag"
#: The backlog alerts' episode history.
ALERT_EPISODES = "alert_episodes"
#: The first failed keys of a run (inside the ledger).
FIRST_FAILURES = "first_failures"
#: The run's partitions (spec ``partition_by``): per-partition counts, closed at and dwell
#: (:func:`batchq.store.partitions.partition_rows_xcom`), pushed by the drain after each pass.
PARTITIONS = "partitions"
