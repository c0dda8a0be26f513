"""``batchq ledger --partitions``: a run's partitions from the results store, one line each (or JSON).

Reads ``batchq_partitions`` as the drain last recorded it; with ``--spec`` (a spec with
``partition_by``) it first recounts every partition from the results (the same derivation the drain
makes: :class:`batchq.store.partitions.PartitionLedger`). Sorted by ``--sort`` (default: time to last
result, slowest first). Exit 0 when every partition closed within tolerance, 1 when one failed, 3 while
one is open. No Airflow import.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone
from typing import Any


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--partitions", action="store_true", help="per-partition counts, closed at and dwell (spec partition_by)")
    p.add_argument("--sort", default=None, help="partition column to sort by (default time_to_last_s, slowest first)")
    p.add_argument("--limit", type=int, default=None, help="at most this many partitions")
    p.add_argument("--json", action="store_true", help="--partitions as one JSON object")
    p.add_argument("--dag-id", default=None, help="the DAG of the run (part of its keys): recounting results without dims needs it")


def spec_and_batch(args: argparse.Namespace, command: str) -> tuple[Any, str]:
    """The ledger commands' ``--spec``/``--batch``: the spec (or None) and the batch name it gives."""
    spec = None
    if args.spec:
        from batchq.spec import BatchSpec

        spec = BatchSpec.from_yaml(args.spec)
    batch = args.batch or (spec.name if spec else None)
    if not batch:
        raise SystemExit(f"{command}: give --batch or --spec")
    return spec, batch


def cmd_partitions(args: argparse.Namespace) -> int:
    from batchq.store import ResultsStore, tolerated_failures
    from batchq.monitor.lag import describe_partition_lag
    from batchq.monitor.partition_table import PartitionTable
    from batchq.store.partitions import PartitionLedger, partition_rows_xcom

    spec, batch = spec_and_batch(args, "batchq ledger --partitions")
    store = ResultsStore(args.store)
    try:
        if spec is not None and spec.partition_by:
            from batchq.plan import Plan

            plan = Plan(spec.resolve(), args.run_id, dag_id=args.dag_id)
            pct = args.tolerated_failure_percentage if args.tolerated_failure_percentage is not None else spec.tolerated_failure_percentage
            count = args.tolerated_failure_count if args.tolerated_failure_count is not None else spec.tolerated_failure_count
            ledger = PartitionLedger(
                store.engine, batch, args.run_id, spec.partition_by, plan.partition_expected(),
                plan_fingerprint=(store.get_run(batch, args.run_id) or {}).get("plan") or plan.fingerprint,
                tolerated=lambda n: tolerated_failures(n, count, pct), key_partitions=plan.key_partitions,
            )
            statuses = ledger.refresh()
        else:
            statuses = PartitionLedger(store.engine, batch, args.run_id, ()).statuses()
    finally:
        store.close()
    if not statuses:
        print(f"batchq ledger: no partitions recorded for run {args.run_id!r} of {batch!r} (does the spec have partition_by?)", file=sys.stderr)
        return 3
    table = PartitionTable(partition_rows_xcom(statuses))
    page = table.page(args.sort, None, 1, per_page=len(table))
    rows = page.rows[: args.limit] if args.limit else page.rows
    counts, lag = table.counts(), table.lag()
    if args.json:
        print(json.dumps({"batch": batch, "run_id": args.run_id, **counts, "partition_lag": lag, "partitions": rows}, default=str), flush=True)
    else:
        print(_format(rows), flush=True)
    print(f"{counts['done']} done, {counts['pending']} pending, {counts['failed']} failed of {counts['partitions']} partition(s)", file=sys.stderr)
    print(describe_partition_lag(lag), file=sys.stderr)
    return 3 if counts["pending"] else (1 if counts["failed"] else 0)


def _format(rows: list[dict[str, Any]]) -> str:
    head = f"{'partition':<32} {'state':<8} {'expected':>9} {'succeeded':>9} {'failed':>7} {'pending':>8}  {'closed at (UTC)':<19} {'input wait':>10} {'to last':>9}"
    lines = [head]
    for r in rows:
        closed = datetime.fromtimestamp(r["closed_at"], tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S") if r.get("closed_at") else "open"
        state = {"succeeded": "done", "failed": "failed"}.get(r.get("outcome"), "pending")
        lines.append(
            f"{str(r['partition']):<32} {state:<8} {r['expected']:>9} {r['succeeded']:>9} {r['failed']:>7} {r['pending']:>8}  {closed:<19} "
            f"{_secs(r.get('input_wait_s')):>10} {_secs(r.get('time_to_last_s')):>9}"
        )
    return "\n".join(lines)


def _secs(value: Any) -> str:
    return "-" if value is None else f"{value:.1f}s"
