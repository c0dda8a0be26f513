"""The plugin's HTTP API, mounted by Airflow's API server at ``/batchq`` (see :mod:`batchq.airflow.plugin`).

Airflow mounts plugin FastAPI apps *without* authentication, so every route here depends on
:func:`~airflow.api_fastapi.core_api.security.requires_authenticated`: it accepts the same bearer token as
the REST API and the UI's JWT cookie, and answers 401 otherwise.

Routes (all JSON):

- ``GET /batchq/v1/batches`` — the specs in ``[batchq] spec_dir`` (invalid ones listed with their error);
- ``GET /batchq/v1/batches/{name}/queues`` — queue lag now: input and results queue snapshots (visible,
  in flight, delayed, backlog, DLQ depth) and the worker count the autoscaling rule asks for.

The numbers come from the same functions the sensor, trigger and worker supervisor use
(:mod:`batchq.sqs`, :mod:`batchq.health`).
"""

from __future__ import annotations

from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Query

from airflow.api_fastapi.core_api.security import requires_authenticated

from batchq.airflow import settings
from batchq.airflow.spec_sources import load_spec
from batchq.errors import QueueNotFound, SpecError
from batchq.health import desired_workers


def _snapshot_json(snapshot: Any) -> dict[str, Any]:
    return {**snapshot.to_dict(), "backlog": snapshot.backlog}


def create_app() -> FastAPI:
    app = FastAPI(
        title="batchq",
        description="Queue lag of batchq batches (authenticated with the Airflow API's token or UI cookie).",
        dependencies=[Depends(requires_authenticated())],
    )

    @app.get("/v1/batches")
    def list_batches() -> dict[str, Any]:
        batches = []
        for path in sorted(settings.spec_dir().glob("*.y*ml")):
            try:
                spec = load_spec(path)
            except SpecError as exc:
                batches.append({"file": path.name, "error": str(exc)})
                continue
            batches.append(
                {
                    "file": path.name,
                    "name": spec.name,
                    "description": spec.description,
                    "dimensions": [d.name for d in spec.dimensions],
                    "queues": {"input": spec.queues.input, "results": spec.queues.results},
                }
            )
        return {"spec_dir": str(settings.spec_dir()), "batches": batches}

    @app.get("/v1/batches/{name}/queues")
    def batch_queues(
        name: str,
        backlog_per_worker: int = Query(100, ge=1, description="autoscaling target: messages per worker"),
        max_workers: int = Query(64, ge=0, description="upper bound for the suggested worker count"),
        aws_conn_id: str | None = Query(None, description="AWS connection (default [batchq] default_aws_conn_id)"),
    ) -> dict[str, Any]:
        from batchq.airflow.hook import BatchqSqsHook

        path = settings.spec_path(name)
        if path.parent != settings.spec_dir() or not path.exists():
            raise HTTPException(404, f"no spec named {name!r} in {settings.spec_dir()}")
        try:
            spec = load_spec(path)
        except SpecError as exc:
            raise HTTPException(422, str(exc)) from None
        hook = BatchqSqsHook(aws_conn_id=aws_conn_id or settings.default_aws_conn_id())
        try:
            urls = hook.resolve_queue_urls(spec.queues)
        except QueueNotFound as exc:
            raise HTTPException(404, str(exc)) from None
        inp = hook.get_snapshot(urls.input, urls.input_dlq)
        out = hook.get_snapshot(urls.results, urls.results_dlq)
        return {
            "batch": spec.name,
            "input": _snapshot_json(inp),
            "results": _snapshot_json(out),
            "desired_workers": desired_workers(inp.visible + inp.in_flight, backlog_per_worker, 0, max_workers),
            "drained": inp.is_empty,
        }

    return app
