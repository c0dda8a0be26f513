"""Live queue state of the batches in ``[batchq] spec_dir``: shared by the JSON API and the Batches page.

The numbers come from the same functions the sensor, trigger and worker supervisor use (the hook's
:meth:`get_snapshot` over :mod:`batchq.sqs`, :func:`batchq.worker.scaling.desired_workers`). The AWS connection is
a server-side setting (``[batchq] api_aws_conn_id``), never a caller's choice. Errors are turned into
:class:`QueueStateError` with an HTTP status and a message that names no filesystem path.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from batchq.airflow import settings
from batchq.errors import BatchqError, QueueNotFound, SpecError
from batchq.spec import BatchSpec
from batchq.worker.scaling import desired_workers

DEFAULT_BACKLOG_PER_WORKER = 100
DEFAULT_MAX_WORKERS = 64


class QueueStateError(BatchqError):
    """A batch's queues could not be read; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class SpecEntry:
    """One file of the spec directory: its spec, or why it did not load (path-free message)."""

    file: str
    spec: BatchSpec | None = None
    error: str | None = None

    @property
    def name(self) -> str:
        return self.spec.name if self.spec else Path(self.file).stem


def _without_paths(message: str, directory: Path) -> str:
    return message.replace(f"{directory}/", "").replace(str(directory), "<spec_dir>")


def load_specs() -> list[SpecEntry]:
    """Every ``*.yaml``/``*.yml`` in the spec directory, sorted by file name, invalid ones with their error."""
    directory = settings.spec_dir()
    entries = []
    for path in sorted(directory.glob("*.y*ml")):
        try:
            entries.append(SpecEntry(path.name, spec=BatchSpec.from_yaml(path)))
        except SpecError as exc:
            entries.append(SpecEntry(path.name, error=_without_paths(str(exc), directory)))
        except OSError as exc:
            entries.append(SpecEntry(path.name, error=f"unreadable: {exc.strerror}"))
    return entries


def find_spec(name: str) -> BatchSpec:
    """The valid spec whose ``name`` (or file stem) is ``name``; :class:`QueueStateError` 404/422 otherwise."""
    for entry in load_specs():
        if name in (entry.name, Path(entry.file).stem):
            if entry.spec is None:
                raise QueueStateError(422, f"spec {name!r} is invalid: {entry.error}")
            return entry.spec
    raise QueueStateError(404, f"no batch spec named {name!r}")


def _snapshot_json(snapshot: Any) -> dict[str, Any]:
    return {**snapshot.to_dict(), "backlog": snapshot.backlog}


def queue_state(
    spec: BatchSpec, backlog_per_worker: int = DEFAULT_BACKLOG_PER_WORKER, max_workers: int = DEFAULT_MAX_WORKERS
) -> dict[str, Any]:
    """Input and results queue snapshots of ``spec`` now, the worker count the autoscaling rule asks for,
    and whether the input queue reads drained."""
    from airflow.exceptions import AirflowNotFoundException
    from airflow.models.connection import Connection
    from botocore.exceptions import BotoCoreError, ClientError

    from batchq.airflow.hook import BatchqSqsHook
    from batchq.airflow.metrics import cloudwatch_oldest_age_s
    from batchq.sqs.cloudwatch import queue_age

    conn_id = settings.api_aws_conn_id()
    try:
        # Check first: a hook without its connection silently falls back to ambient AWS credentials
        # and the public endpoint, which is never what the server's setting meant.
        Connection.get_connection_from_secrets(conn_id)
        hook = BatchqSqsHook(aws_conn_id=conn_id)
        urls = hook.resolve_queue_urls(spec.queues)
        inp = hook.get_snapshot(urls.input, urls.input_dlq)
        out = hook.get_snapshot(urls.results, urls.results_dlq)
    except QueueNotFound as exc:
        raise QueueStateError(404, f"queues of {spec.name!r} not found: {exc}") from None
    except AirflowNotFoundException:
        raise QueueStateError(503, f"the API server's AWS connection {conn_id!r} is not configured ([batchq] api_aws_conn_id)") from None
    except (ClientError, BotoCoreError) as exc:
        raise QueueStateError(502, f"SQS did not answer for {spec.name!r}: {type(exc).__name__}: {exc}") from None
    # Queue-level age where the connection can read CloudWatch; else null, and age_source says so.
    age = queue_age(cloudwatch_oldest_age_s(conn_id, urls.input), None)
    return {
        "batch": spec.name,
        "input": {**_snapshot_json(inp), **age},
        "results": _snapshot_json(out),
        "desired_workers": desired_workers(inp.visible + inp.in_flight, backlog_per_worker, 0, max_workers),
        "drained": inp.is_empty,
    }


def batch_rows(user: Any) -> list[dict[str, Any]]:
    """Rows of the Batches page: each spec the user may see, with its live gauge or its error."""
    from batchq.airflow.views import svg
    from batchq.airflow.views.access import BatchAccess

    access = BatchAccess(user)
    rows = []
    for entry in load_specs():
        if not access.may_see(entry.name):
            continue
        row: dict[str, Any] = {"name": entry.name, "description": entry.spec.description if entry.spec else None, "dags": access.dags_of(entry.name), "error": entry.error}
        if entry.spec is not None:
            try:
                state = queue_state(entry.spec)
            except QueueStateError as exc:
                row["error"] = exc.message
            else:
                inp = state["input"]
                parts = [("visible", inp["visible"]), ("in flight", inp["in_flight"]), ("delayed", inp["delayed"])]
                row.update(
                    backlog=inp["backlog"],
                    dlq=inp.get("dlq_visible"),
                    results=state["results"]["backlog"],
                    desired_workers=state["desired_workers"],
                    gauge=svg.gauge(parts, title=f"input queue of {entry.name}"),
                )
        rows.append(row)
    return rows
