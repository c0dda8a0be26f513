"""batchq operators (each module one role)."""

from batchq.airflow.operators.fanout import FanOutOperator, plan_shards
from batchq.airflow.operators.queues import EnsureQueuesOperator

__all__ = ["EnsureQueuesOperator", "FanOutOperator", "plan_shards"]
