"""What every deployment test asserts about a finished run: the effect downstream is exact.

- the sink holds one row per planned key and nothing else of that run;
- every planned key was *written* at least once and at most ``max_writes`` times (a PostgreSQL trigger on
  the sink table counts each insert/update, so duplicates the drainer absorbed are visible and bounded);
- the run's ledger closed ``succeeded`` with ``succeeded + failed == expected``;
- exactly one results Asset event for the run, read through the REST API.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from batchq.plan import Plan
from batchq.spec import BatchSpec

WRITES_TABLE = "deploy_sink_writes"


def install_write_counter(sink_url: str) -> None:
    """Create the sink tables and a trigger that records every write to ``batchq_results``."""
    import psycopg
    from batchq.store import ResultsStore

    sink = ResultsStore(sink_url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        sink.create_tables()
    finally:
        sink.close()
    with psycopg.connect(sink_url, autocommit=True) as conn:
        conn.execute(f"create table if not exists {WRITES_TABLE} (key varchar(64) not null, run_id varchar(250) not null, op text not null, at timestamptz not null default now())")
        conn.execute(
            f"""create or replace function {WRITES_TABLE}_record() returns trigger language plpgsql as $$
            begin insert into {WRITES_TABLE}(key, run_id, op) values (new.key, new.run_id, tg_op); return new; end $$"""
        )
        conn.execute(f"drop trigger if exists {WRITES_TABLE}_record on batchq_results")
        conn.execute(f"create trigger {WRITES_TABLE}_record after insert or update on batchq_results for each row execute function {WRITES_TABLE}_record()")


def planned_keys(spec_path: Path, run_id: str, dag_id: str = "customer_batch") -> set[str]:
    plan = Plan(BatchSpec.from_yaml(spec_path), run_id, dag_id=dag_id)  # the DAG id is part of the run identity
    keys = {key for shard in plan.shards() for key, _ in plan.iter_bodies(shard)}
    assert len(keys) == plan.expected
    return keys


def assert_run_exact(dep: Any, spec_path: Path, run_id: str, *, max_writes: int) -> dict[str, Any]:
    """Assert the run's downstream effect is exact; return figures for the report."""
    spec = BatchSpec.from_yaml(spec_path)
    planned = planned_keys(spec_path, run_id)

    rows = dep.query("select key, status from batchq_results where batch = %s and run_id = %s", spec.name, run_id)
    keys = [k for k, _ in rows]
    assert len(keys) == len(set(keys)) and set(keys) == planned, f"sink rows {len(keys)} vs planned {len(planned)}; missing {sorted(planned - set(keys))[:5]}"

    writes = Counter(dict(dep.query(f"select key, count(*) from {WRITES_TABLE} where run_id = %s group by key", run_id)))
    assert set(writes) == planned, f"written keys differ from planned: missing {sorted(planned - set(writes))[:5]}"
    assert max(writes.values()) <= max_writes, f"a key was written {max(writes.values())} times (bound {max_writes})"

    ledger = dep.query("select expected, succeeded, failed, outcome from batchq_runs where batch = %s and run_id = %s", spec.name, run_id)
    assert ledger, "no ledger row"
    expected, succeeded, failed, outcome = ledger[0]
    assert outcome == "succeeded" and expected == len(planned) and succeeded + failed == expected, ledger[0]

    events = dep.api("GET", f"/assets/events?source_dag_id={spec.name}&source_run_id={run_id}")
    assert events["total_entries"] == 1, events
    extra = events["asset_events"][0]["extra"]
    assert extra["succeeded"] + extra["failed"] == len(planned), extra
    assert events["asset_events"][0]["uri"] == f"batchq://{spec.name}/results", events
    return {"payloads": len(planned), "writes": sum(writes.values()), "max_writes_per_key": max(writes.values()),
            "keys_written_twice_or_more": sum(1 for n in writes.values() if n > 1)}
