"""Live queue state of the batches in ``[batchq] spec_dir``: shared by the JSON API and the Batches page.

The numbers come from the same functions the sensor, trigger and worker supervisor use
(:func:`batchq.sqs.get_snapshot`, :func:`batchq.worker.scaling.desired_workers`), read under the budget of
:mod:`batchq.airflow.views.live` (one attempt per call, a total deadline per request, a short shared
cache). The AWS connection is a server-side setting (``[batchq] api_aws_conn_id``), never a caller's
choice. Errors are turned into :class:`QueueStateError` with an HTTP status and a message that names no
filesystem path and no AWS error text beyond its code and operation.
"""

from __future__ import annotations

from typing import Any

from batchq.airflow import settings
from batchq.airflow.views.specs import QueueStateError, SpecEntry, find_spec, load_specs  # noqa: F401 - re-exported for the API
from batchq.errors import QueueNotFound
from batchq.spec import BatchSpec
from batchq.worker.scaling import desired_workers

DEFAULT_BACKLOG_PER_WORKER = 100
DEFAULT_MAX_WORKERS = 64


def _snapshot_json(snapshot: Any) -> dict[str, Any]:
    return {**snapshot.to_dict(), "backlog": snapshot.backlog}


def probe_queues(spec: BatchSpec) -> dict[str, Any]:
    """Input and results queue snapshots of ``spec`` now, and the input queue's age (CloudWatch where
    readable). Runs on the probe threads of :mod:`batchq.airflow.views.live`, with one attempt per call
    and short timeouts; the first call that fails ends the probe. Errors are :class:`QueueStateError`
    whose message holds an AWS error's code and operation only (:func:`batchq.sqs.client.describe_aws_error`)."""
    from airflow.exceptions import AirflowNotFoundException
    from airflow.models.connection import Connection
    from botocore.exceptions import BotoCoreError, ClientError

    from batchq.airflow.metrics import cloudwatch_oldest_age_s
    from batchq.airflow.views.live import probe_client
    from batchq.sqs import get_snapshot
    from batchq.sqs.client import describe_aws_error
    from batchq.sqs.cloudwatch import queue_age
    from batchq.sqs.queues import resolve_queue_urls

    conn_id = settings.api_aws_conn_id()
    try:
        # Check first: a hook without its connection silently falls back to ambient AWS credentials
        # and the public endpoint, which is never what the server's setting meant.
        Connection.get_connection_from_secrets(conn_id)
        client = probe_client(conn_id)
        urls = resolve_queue_urls(client, spec.queues)
        inp = get_snapshot(client, urls.input, urls.input_dlq)
        out = get_snapshot(client, urls.results, urls.results_dlq)
    except QueueNotFound:
        # The exception names the queue URL (with the account id): the spec's names say enough.
        raise QueueStateError(404, f"queues of {spec.name!r} not found ({spec.queues.input}, {spec.queues.results}, or their DLQs)") from None
    except AirflowNotFoundException:
        raise QueueStateError(503, f"the API server's AWS connection {conn_id!r} is not configured ([batchq] api_aws_conn_id)") from None
    except (ClientError, BotoCoreError) as exc:
        raise QueueStateError(502, f"SQS did not answer for {spec.name!r}: {describe_aws_error(exc)}") from None
    # Queue-level age where the connection can read CloudWatch; else null, and age_source says so.
    return {"input": inp, "results": out, "age": queue_age(cloudwatch_oldest_age_s(conn_id, urls.input), None)}


def _state_json(spec: BatchSpec, probed: dict[str, Any], backlog_per_worker: int, max_workers: int) -> dict[str, Any]:
    inp, out = probed["input"], probed["results"]
    return {
        "batch": spec.name,
        "input": {**_snapshot_json(inp), **probed["age"]},
        "results": _snapshot_json(out),
        "desired_workers": desired_workers(inp.visible + inp.in_flight, backlog_per_worker, 0, max_workers),
        "drained": inp.is_empty,
    }


def _live() -> Any:
    global _LIVE
    if _LIVE is None:
        from batchq.airflow.views.live import LiveQueueState, cache_s

        _LIVE = LiveQueueState(probe_queues, ttl_s=cache_s)
    return _LIVE


_LIVE: Any = None


def _key(spec: BatchSpec) -> tuple[str, ...]:
    return (settings.api_aws_conn_id(), spec.name, spec.queues.input, spec.queues.results)


def _fmt_seen(epoch: float | None) -> str:
    if epoch is None:
        return "never seen since this server started"
    from datetime import datetime, timezone

    return "last seen " + datetime.fromtimestamp(epoch, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _failure(spec: BatchSpec, answer: Any, deadline: float) -> QueueStateError | None:
    """Why ``answer`` carries no queue state (``None`` when it does): no answer within the deadline
    (504), or the probe's error; either way it says when the queues last answered."""
    result = answer.result
    if result is None:
        return QueueStateError(504, f"unavailable: SQS did not answer for {spec.name!r} within {deadline:g}s; {_fmt_seen(answer.last_ok_at)}")
    if result.error is None:
        return None
    err = result.error
    if not isinstance(err, QueueStateError):  # a bug or an unexpected library error: its type only
        err = QueueStateError(502, f"SQS did not answer for {spec.name!r}: {type(err).__name__}")
    if err.status in (502, 504):
        return QueueStateError(err.status, f"unavailable: {err.message}; {_fmt_seen(answer.last_ok_at)}")
    return err


async def live_states(specs: list[BatchSpec], backlog_per_worker: int = DEFAULT_BACKLOG_PER_WORKER, max_workers: int = DEFAULT_MAX_WORKERS) -> list[dict[str, Any] | QueueStateError]:
    """The queue state of each spec (same order), or the :class:`QueueStateError` that stands in for it,
    all within one total deadline (``[batchq] api_queue_deadline_s``) and through the shared cache."""
    from batchq.airflow.views.live import deadline_s

    deadline = deadline_s()
    keyed = {_key(spec): spec for spec in specs}
    answers = await _live().answers(keyed, deadline)
    out: list[dict[str, Any] | QueueStateError] = []
    for spec in specs:
        answer = answers[_key(spec)]
        failure = _failure(spec, answer, deadline)
        out.append(failure if failure is not None else _state_json(spec, answer.result.value, backlog_per_worker, max_workers))
    return out


async def queue_state(
    spec: BatchSpec, backlog_per_worker: int = DEFAULT_BACKLOG_PER_WORKER, max_workers: int = DEFAULT_MAX_WORKERS
) -> dict[str, Any]:
    """Input and results queue snapshots of ``spec``, the worker count the autoscaling rule asks for,
    and whether the input queue reads drained; :class:`QueueStateError` (504 past the deadline)."""
    (state,) = await live_states([spec], backlog_per_worker, max_workers)
    if isinstance(state, QueueStateError):
        raise state
    return state


async def batch_rows(user: Any) -> list[dict[str, Any]]:
    """Rows of the Batches page: each spec the user may see, with its live gauge or why it has none.
    The metadata-DB and file reads run on the server's thread pool; SQS is awaited within the deadline."""
    from starlette.concurrency import run_in_threadpool

    from batchq.airflow.views import svg
    from batchq.airflow.views.access import BatchAccess

    def visible_entries() -> tuple[Any, list[SpecEntry]]:
        entries = load_specs()
        access = BatchAccess(user, owners={e.spec.name: e.spec.owners for e in entries if e.spec is not None})
        return access, [e for e in entries if access.may_see(e.name)]

    access, entries = await run_in_threadpool(visible_entries)
    states = await live_states([e.spec for e in entries if e.spec is not None])
    by_name = dict(zip([e.spec.name for e in entries if e.spec is not None], states))
    rows = []
    for entry in entries:
        row: dict[str, Any] = {"name": entry.name, "description": entry.spec.description if entry.spec else None, "dags": access.dags_of(entry.name), "error": entry.error}
        if entry.spec is not None:
            state = by_name[entry.spec.name]
            if isinstance(state, QueueStateError):
                row["error"] = state.message
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
