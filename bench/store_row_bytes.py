"""Bytes per result row of the results store on PostgreSQL (table + indexes + TOAST).

Applies N typical results (dims, a small output, lag timestamps) through ResultsStore.apply into a
fresh schema, then reads pg_total_relation_size. Usage:
    python bench/store_row_bytes.py [postgresql+psycopg://postgres@127.0.0.1:5432/test] [N]
Last line: one JSON object.
"""

from __future__ import annotations

import json
import sys
import uuid
from datetime import datetime, timezone

import sqlalchemy as sa

from batchq.messages import WorkResult
from batchq.store import ResultsStore


def main() -> None:
    url = sys.argv[1] if len(sys.argv) > 1 else "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 20000
    schema = f"bq_bytes_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(url)
    with admin.begin() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    try:
        store = ResultsStore(url, connect_args={"options": f"-csearch_path={schema}", "connect_timeout": 5})
        now = datetime.now(timezone.utc)
        batch = []
        for i in range(n):
            batch.append(WorkResult(
                batch="customer_batch", run_id="scheduled__2026-12-01T00:00:00+00:00", key=uuid.uuid4().hex, job_type="classification",
                status="succeeded", output={"label": "gold", "score": 0.93}, worker="worker-1:1234", plan=uuid.uuid4().hex[:16],
                dims={"customer": f"c{i:06d}", "job_type": "classification", "period": "daily"},
                started_at=now, finished_at=now, enqueued_at=now, first_received_at=now,
            ))
            if len(batch) == 500:
                store.apply(batch)
                batch = []
        if batch:
            store.apply(batch)
        with store.engine.begin() as conn:
            conn.execute(sa.text("ANALYZE batchq_results"))
            total = conn.execute(sa.text("SELECT pg_total_relation_size('batchq_results')")).scalar_one()
            heap = conn.execute(sa.text("SELECT pg_relation_size('batchq_results')")).scalar_one()
        store.close()
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()
    out = {"rows": n, "total_bytes": total, "heap_bytes": heap, "bytes_per_row": round(total / n, 1), "heap_bytes_per_row": round(heap / n, 1)}
    print(f"{n} rows: {out['bytes_per_row']} bytes/row total (table {out['heap_bytes_per_row']}, rest indexes/TOAST)")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
