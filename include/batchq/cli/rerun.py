"""``batchq rerun``: repair a run — re-send exactly its failed (or missing, or given) keys, rebuilt from
the plan, and record the repair in the run's ledger. ``--purge-dlq`` removes the DLQ copies of repaired
keys once their new results are applied. No Airflow import here (see docs/runbook.md).
"""

from __future__ import annotations

import argparse
import getpass
import json
import socket
import sys
from typing import Any

from batchq.cli._urls import add_url_option


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "rerun",
        help="repair a run: re-send only its failed / missing / given keys, rebuilt from the plan",
        description="Rebuild the payloads of exactly the selected keys from the spec's plan (DLQ copies are never "
        "used), send them to the input queue and record the repair in the ledger (who, when, why, how many). "
        "The keys count as pending until their new results are drained; a success replaces the failure. "
        "--purge-dlq (or --wait) then deletes the DLQ copies of repaired keys whose new result succeeded.",
    )
    p.add_argument("--spec", required=True, help="BatchSpec YAML of the run (its dimension values must be the run's)")
    p.add_argument("--run-id", required=True, help="the run id (Airflow: the DAG run id)")
    add_url_option(p, "store", env="BATCHQ_STORE_URL", help="SQLAlchemy URL of the results store (the sink database / ledger)")
    p.add_argument("--dag-id", help="the DAG of the run (part of its keys); default: as the ledger recorded it")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--failed", action="store_const", dest="mode", const="failed", help="re-send the failed and quarantined keys")
    which.add_argument("--pending", action="store_const", dest="mode", const="pending", help="re-send planned keys that have no result at all")
    which.add_argument("--keys", metavar="FILE", help="re-send the keys listed in FILE (one per line; - for stdin)")
    which.add_argument("--purge-dlq", action="store_const", dest="mode", const="purge", help="only delete the DLQ copies of repaired keys whose new result succeeded")
    which.add_argument("--history", action="store_const", dest="mode", const="history", help="show the run's repairs (who, when, why, keys before/after); sends nothing")
    p.add_argument("--dry-run", action="store_true", help="show what would be sent; send and record nothing")
    p.add_argument("--keep-dlq", action="store_true", help="keep the DLQ copies of the repaired keys (default: purge once their new results succeed)")
    p.add_argument("--reason", default=None, help="why (recorded in the ledger)")
    p.add_argument("--by", default=None, help="who (recorded; default user@host)")
    p.add_argument("--wait", type=float, default=None, metavar="SECONDS",
                   help="after sending, wait this long for the new results to be drained elsewhere, then purge the DLQ copies")
    p.add_argument("--endpoint-url", help="SQS endpoint (default: env BATCHQ_SQS_ENDPOINT / AWS settings)")
    p.add_argument("--region", help="AWS region")
    p.set_defaults(func=cmd_rerun, mode=None)


def _read_keys(path: str) -> list[str]:
    if path == "-":
        text = sys.stdin.read()
    else:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def cmd_rerun(args: argparse.Namespace) -> int:
    from batchq.store import ResultsStore
    from batchq.plan import Plan
    from batchq.store.purge import purge_repaired_dlq
    from batchq.store.repairs import RepairError, check_plan, rerun, wait_repaired
    from batchq.spec import BatchSpec
    from batchq.sqs import get_queue_url
    from batchq.sqs.client import sqs_client

    spec = BatchSpec.from_yaml(args.spec)
    if not spec.is_resolved:
        raise RepairError(f"{args.spec}: a dimension names a source; give a spec file with the run's values (batchq rerun cannot resolve sources)")
    mode = "keys" if args.keys else args.mode
    store = ResultsStore(args.store)
    try:
        run = store.get_run(spec.name, args.run_id)
        if mode == "history":
            print(json.dumps({"run": run, "repairs": store.repairs(spec.name, args.run_id)}, default=str, indent=1), flush=True)
            return 0
        dag_id = args.dag_id or (run or {}).get("dag_id")
        plan = Plan(spec, args.run_id, dag_id=dag_id)
        client = sqs_client(endpoint_url=args.endpoint_url, region_name=args.region)
        if mode == "purge":
            check_plan(store, plan)
            purged = purge_repaired_dlq(client, get_queue_url(client, spec.queues.input_dlq), store, spec.name, args.run_id)
            print(json.dumps({"purge": purged.to_dict()}), flush=True)
            return 0 if not purged.failed else 1
        keys = _read_keys(args.keys) if mode == "keys" else None
        report = rerun(
            client, get_queue_url(client, spec.queues.input), store, plan, mode, keys=keys, reason=args.reason,
            requested_by=args.by or f"{getpass.getuser()}@{socket.gethostname()}", dry_run=args.dry_run, keep_dlq=args.keep_dlq,
        )
        out: dict[str, Any] = {"repair": report.to_dict()}
        verb = "would re-send" if args.dry_run else "re-sent"
        print(f"{verb} {report.sent if not args.dry_run else report.selected} of {report.selected} key(s) of run {args.run_id} "
              f"({', '.join(f'{n} {s}' for s, n in report.by_status.items()) or 'nothing to repair'})", file=sys.stderr)
        for shown in _described(plan, report.keys[:20]):
            print(f"  {shown}", file=sys.stderr)
        closed = True
        if args.wait and report.repair_id is not None:
            out["after"] = wait_repaired(store, spec.name, args.run_id, report.repair_id, timeout_s=args.wait)
            # --wait closes the run again (what `batchq ledger --close` does): the repair gets its outcome
            # after and settled time, the run its current counts and outcome.
            status = _close_again(store, spec, plan)
            out["ledger"] = status.to_dict()
            closed = status.complete
            if not closed:
                print(f"the ledger is not complete after {args.wait:g}s: {status.describe()}", file=sys.stderr)
            if not args.keep_dlq:
                out["purge"] = purge_repaired_dlq(client, get_queue_url(client, spec.queues.input_dlq), store, spec.name, args.run_id).to_dict()
        print(json.dumps(out, default=str), flush=True)
        return 0 if not report.not_sent and closed else 1
    finally:
        store.close()


def _close_again(store: Any, spec: Any, plan: Any) -> Any:
    """The run's ledger status after a repair, recorded (closed) when complete."""
    from batchq.store import RunLedger

    tolerance = {"tolerated_failure_count": spec.tolerated_failure_count, "tolerated_failure_percentage": spec.tolerated_failure_percentage}
    if store.get_run(spec.name, plan.run_id) is None:
        ledger = RunLedger.for_plan(store, plan, **tolerance)
    else:
        ledger = RunLedger(store, spec.name, plan.run_id, plan=plan.fingerprint, **tolerance)
    status = ledger.status()
    if status.complete:
        ledger.close(status)
    return status


def _described(plan: Any, keys: list[str]) -> list[str]:
    """The keys as people read them, by their dimensions (from the plan, which produced them)."""
    from batchq.messages import describe_key

    dims = plan.dims_of(keys)
    return [describe_key(key, dims.get(key)) for key in keys]
