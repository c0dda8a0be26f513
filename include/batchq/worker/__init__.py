"""batchq's worker runtime: consumes the input queue outside Airflow (never imports it).

* :class:`Worker` / :class:`WorkerConfig` — the long-running consumer (``batchq worker``);
* :func:`job` / :class:`Registry` — handler registration (``@batchq.job("classification")``);
* :class:`PermanentError` — raise from a handler when retrying cannot help;
* :class:`Supervisor` — starts and stops worker processes from queue depth (``batchq workers``);
* :func:`lambda_handler` — the same processing behind an SQS event source mapping.
"""

from __future__ import annotations

from typing import Any

from batchq.worker.config import WorkerConfig
from batchq.worker.context import JobContext
from batchq.worker.errors import PermanentError
from batchq.worker.execute import Action, Outcome, execute
from batchq.worker.registry import REGISTRY, Registry, job, load_handlers
from batchq.worker.runner import Worker, WorkerStats

__all__ = [
    "REGISTRY",
    "Action",
    "JobContext",
    "Outcome",
    "PermanentError",
    "Registry",
    "Supervisor",
    "Worker",
    "WorkerConfig",
    "WorkerStats",
    "execute",
    "job",
    "lambda_handler",
    "load_handlers",
]


def lambda_handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    """AWS Lambda entry point (``batchq.worker.lambda_handler``); see :mod:`batchq.worker.lambda_adapter`."""
    from batchq.worker.lambda_adapter import lambda_handler as _handler

    return _handler(event, context)


def __getattr__(name: str) -> Any:
    if name == "Supervisor":
        from batchq.worker.supervisor import Supervisor

        return Supervisor
    raise AttributeError(name)
