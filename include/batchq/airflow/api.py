"""The plugin's HTTP app, mounted by Airflow's API server at ``/batchq`` (see :mod:`batchq.airflow.plugin`).

Airflow mounts plugin FastAPI apps *without* authentication, so every route here depends on
:func:`~airflow.api_fastapi.core_api.security.requires_authenticated` (the same bearer token as the REST
API, or the UI's JWT cookie; 401 otherwise) and, where a batch or DAG is named, on per-DAG
authorization: a batch is visible to a user who may read a DAG that runs it
(:mod:`batchq.airflow.views.access`). FastAPI's own ``/docs``, ``/redoc`` and ``/openapi.json`` are
disabled; the schema is served, authenticated, at ``/batchq/v1/openapi.json``.

JSON routes:

- ``GET /batchq/v1/batches`` — the specs in ``[batchq] spec_dir`` the user may see (invalid ones with
  their error), each with the DAGs that run it;
- ``GET /batchq/v1/batches/{name}/queues`` — queue lag now: input and results queue snapshots (visible,
  in flight, delayed, backlog, DLQ depth) and the worker count the autoscaling rule asks for. The AWS
  connection is the server's ``[batchq] api_aws_conn_id``.

HTML views (Airflow UI tabs, read-only): see :mod:`batchq.airflow.views.pages`.

Errors are 4xx (or 502/503 when SQS or the connection fails) with a ``detail`` message, never a 500, and
no response carries a filesystem path.
"""

from __future__ import annotations

from typing import Any

from airflow.api_fastapi.core_api.security import GetUserDep, requires_authenticated
from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from batchq.airflow.views.headers import SecurityHeadersMiddleware
from batchq.airflow.views.gauges import (
    DEFAULT_BACKLOG_PER_WORKER,
    DEFAULT_MAX_WORKERS,
    QueueStateError,
    find_spec,
    load_specs,
    queue_state,
)

#: Batch (spec) names: what BatchSpec accepts as a queue-name prefix, bounded.
BATCH_NAME = Path(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", description="batch (spec) name")


def _authorized_spec(user: Any, name: str) -> Any:
    """The spec ``name`` if ``user`` may see it; 403 whether or not it exists otherwise."""
    from batchq.airflow.views.access import BatchAccess

    access = BatchAccess(user)
    try:
        spec = find_spec(name)
    except QueueStateError:
        if not access.reads_all_dags:
            raise HTTPException(403, f"not authorized for any DAG that runs batch {name!r}") from None
        raise
    if not access.may_see(spec.name):
        # The same answer as for a missing spec: no probing of other teams' batch names.
        raise HTTPException(403, f"not authorized for any DAG that runs batch {name!r}")
    return spec


def create_app() -> FastAPI:
    from batchq.airflow.views.access import BatchAccess
    from batchq.airflow.views.pages import create_router

    app = FastAPI(
        title="batchq",
        description="Queue lag and Batch views of batchq batches (authenticated with the Airflow API's token or UI cookie).",
        dependencies=[Depends(requires_authenticated())],
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )

    app.add_middleware(SecurityHeadersMiddleware)

    @app.exception_handler(QueueStateError)
    async def _queue_state_error(request: Request, exc: QueueStateError) -> JSONResponse:
        return JSONResponse({"detail": exc.message}, status_code=exc.status)

    @app.get("/v1/openapi.json", include_in_schema=False)
    def openapi() -> dict[str, Any]:
        return app.openapi()

    @app.get("/v1/batches")
    def list_batches(user: GetUserDep) -> dict[str, Any]:
        access = BatchAccess(user)
        batches = []
        for entry in load_specs():
            if not access.may_see(entry.name):
                continue
            if entry.spec is None:
                batches.append({"file": entry.file, "error": entry.error})
                continue
            spec = entry.spec
            batches.append(
                {
                    "file": entry.file,
                    "name": spec.name,
                    "description": spec.description,
                    "dimensions": [d.name for d in spec.dimensions],
                    "queues": {"input": spec.queues.input, "results": spec.queues.results},
                    "dags": access.dags_of(spec.name),
                }
            )
        return {"batches": batches}

    @app.get("/v1/batches/{name}/queues")
    async def batch_queues(
        user: GetUserDep,
        name: str = BATCH_NAME,
        backlog_per_worker: int = Query(DEFAULT_BACKLOG_PER_WORKER, ge=1, le=1_000_000, description="autoscaling target: messages per worker"),
        max_workers: int = Query(DEFAULT_MAX_WORKERS, ge=0, le=10_000, description="upper bound for the suggested worker count"),
    ) -> dict[str, Any]:
        # Async so that waiting on SQS holds no server thread: the DB and file reads run on the
        # server's pool, SQS on the probe pool within [batchq] api_queue_deadline_s (504 past it).
        spec = await run_in_threadpool(_authorized_spec, user, name)
        return await queue_state(spec, backlog_per_worker, max_workers)

    app.include_router(create_router())
    return app
