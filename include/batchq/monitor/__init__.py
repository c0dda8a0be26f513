"""Queue-lag monitoring in one place: the wait decisions (:mod:`~batchq.monitor.waits`), trend and ETA
(:mod:`~batchq.monitor.trend`), backlog alerts (:mod:`~batchq.monitor.alerts`), queue lag per payload
(:mod:`~batchq.monitor.lag`) and the Batch view's model (:mod:`~batchq.monitor.report`).

Ranks above the SQS layer and the kernel; below the worker, the drainer and Airflow. No I/O here.
"""
