"""Everything in batchq that imports Airflow: the hook, operators, sensors, triggers, plugin and settings.

Nothing outside this package (and ``dags/``) may import Airflow: workers run without it installed.

The public names are importable from here (``from batchq.airflow import BatchTaskGroup``); each loads its
module on first use, so importing one piece (the plugin, settings) does not import every operator.
"""

from __future__ import annotations

import importlib
from typing import Any

#: Public name → the module that defines it.
_EXPORTS = {
    "BatchTaskGroup": "batchq.airflow.task_group",
    "BatchqSqsHook": "batchq.airflow.hook",
    "DlqRedriveOperator": "batchq.airflow.operators.redrive",
    "EnsureQueuesOperator": "batchq.airflow.operators.queues",
    "FanOutOperator": "batchq.airflow.operators.fanout",
    "PartitionWaveSensor": "batchq.airflow.operators.partitions",
    "PurgeRepairedDlqOperator": "batchq.airflow.operators.repair",
    "QueueDrainedSensor": "batchq.airflow.sensors",
    "QueueDrainedTrigger": "batchq.airflow.triggers",
    "RepairedPartitionsOperator": "batchq.airflow.operators.partitions",
    "RerunFailedOperator": "batchq.airflow.operators.repair",
    "ResultsAvailableTrigger": "batchq.airflow.triggers",
    "ResultsDrainOperator": "batchq.airflow.operators.drain",
    "plan_shards": "batchq.airflow.operators.fanout",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
