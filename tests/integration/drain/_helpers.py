"""Shared helpers for the drain integration tests (results on a real queue, rows in a real database)."""

from __future__ import annotations

import threading
import uuid
from collections import Counter

import sqlalchemy as sa
from batchq.store.schema import results_table
from batchq.messages import ErrorInfo, WorkResult
from batchq.sqs import get_snapshot, send_bodies


def make_results(n: int, *, batch: str | None = None, run_id: str = "run-1", failed_every: int = 0) -> list[WorkResult]:
    batch = batch or f"b{uuid.uuid4().hex[:8]}"
    prefix = uuid.uuid4().hex[:8]  # keys are global primary keys: unique per test
    out = []
    for i in range(n):
        key = f"{prefix}-{i:05d}"
        if failed_every and i % failed_every == 0:
            out.append(WorkResult(batch=batch, run_id=run_id, key=key, status="failed", error=ErrorInfo(type="Boom", message=f"item {i}")))
        else:
            out.append(WorkResult(batch=batch, run_id=run_id, key=key, status="succeeded", output={"i": i}))
    return out


def put(client, url: str, results: list[WorkResult], copies: int = 1, extra_bodies: list[str] = ()) -> None:
    items = [(f"{r.key}#{c}", r.model_dump_json()) for c in range(copies) for r in results]
    items += [(f"bad{i}", b) for i, b in enumerate(extra_bodies)]
    send_bodies(client, url, items, max_in_flight=4)


def sink_rows(store, batch: str) -> dict[str, str]:
    """key → status of every row of ``batch``. (One row per key is the primary key's doing, not the
    drainer's: duplicates are bounded with :class:`WriteCounter` instead.)"""
    with store.engine.connect() as conn:
        got = conn.execute(sa.select(results_table.c.key, results_table.c.status).where(results_table.c.batch == batch)).all()
    return dict(got)


class WriteCounter:
    """Counts every row the drainer sends to ``batchq_results`` per key (upserts included, whatever
    the database then does with them): the number that bounds duplicate deliveries, which the primary
    key would otherwise hide."""

    def __init__(self, engine: sa.engine.Engine):
        self.writes: Counter[str] = Counter()
        self._lock = threading.Lock()
        sa.event.listen(engine, "before_cursor_execute", self._seen)

    def _seen(self, conn, cursor, statement, parameters, context, executemany) -> None:
        if not statement.lstrip().upper().startswith("INSERT INTO BATCHQ_RESULTS"):
            return
        rows = parameters if executemany else [parameters]
        with self._lock:
            for row in rows:
                key = row.get("key") if isinstance(row, dict) else row[0]
                self.writes[key] += 1


def backlog(client, url: str) -> int:
    return get_snapshot(client, url).backlog
