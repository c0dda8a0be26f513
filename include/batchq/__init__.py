"""batchq: asynchronously decoupled batch runs over Amazon SQS.

The top-level package is Airflow-free on purpose: workers import it without Airflow installed.
Everything that imports Airflow lives in :mod:`batchq.airflow`.
"""

from typing import Any

__all__ = ["SCHEMA_VERSION", "BatchSpec", "WorkPayload", "WorkResult", "job"]
__version__ = "0.1.0"


def job(job_type: str, *, timeout_s: float | None = None):
    """Register a worker handler for ``job_type``; ``timeout_s`` bounds one call (see
    :mod:`batchq.worker.registry`)."""
    from batchq.worker.registry import job as _job

    return _job(job_type, timeout_s=timeout_s)


# Imported on first use, not here: ``python -m batchq.cli worker`` imports this package before any code
# of the worker runs, and pydantic takes a second on a loaded machine; the worker installs its SIGTERM
# handler first (batchq.cli._early_stop). ``from batchq import WorkPayload`` works as before.
_LAZY = {"SCHEMA_VERSION": "batchq.messages", "WorkPayload": "batchq.messages", "WorkResult": "batchq.messages",
         "BatchSpec": "batchq.spec"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'batchq' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
