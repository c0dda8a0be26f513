"""batchq: asynchronously decoupled batch runs over Amazon SQS.

The top-level package is Airflow-free on purpose: workers import it without Airflow installed.
Everything that imports Airflow lives in :mod:`batchq.airflow`.
"""

from batchq.messages import SCHEMA_VERSION, WorkPayload, WorkResult
from batchq.spec import BatchSpec

__all__ = ["SCHEMA_VERSION", "BatchSpec", "WorkPayload", "WorkResult", "job"]
__version__ = "0.1.0"


def job(job_type: str, *, timeout_s: float | None = None):
    """Register a worker handler for ``job_type``; ``timeout_s`` bounds one call (see
    :mod:`batchq.worker.registry`)."""
    from batchq.worker.registry import job as _job

    return _job(job_type, timeout_s=timeout_s)
