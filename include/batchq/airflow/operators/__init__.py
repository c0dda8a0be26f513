"""batchq operators (each module one role)."""

from batchq.airflow.operators.fanout import FanOutOperator, plan_shards

__all__ = ["FanOutOperator", "plan_shards"]
