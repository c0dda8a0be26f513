"""``batchq store prune``: retention for the results store (results, quarantine, settled repairs,
closed runs), in batches, safe while a drain runs (:mod:`batchq.store.retention`)."""

from __future__ import annotations

import argparse
import json

from batchq.cli._urls import add_url_option


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("store", help="maintain the results store (retention)")
    sub = p.add_subparsers(dest="store_command", required=True)
    q = sub.add_parser("prune", help="delete rows older than an age (results, quarantine, settled repairs, closed runs)")
    add_url_option(q, "store", env="BATCHQ_STORE_URL", help="SQLAlchemy URL of the results store")
    q.add_argument("--older-than", required=True, help="age: 30d, 12h, 2w, 90m")
    q.add_argument("--dry-run", action="store_true", help="count what would be deleted, delete nothing")
    q.add_argument("--batch-size", type=int, default=5000, help="rows per delete transaction (default 5000)")
    q.set_defaults(func=cmd_prune)


def cmd_prune(args: argparse.Namespace) -> int:
    from batchq.store import ResultsStore
    from batchq.store.retention import parse_age, prune

    age = parse_age(args.older_than)
    store = ResultsStore(args.store)
    try:
        report = prune(store, age, dry_run=args.dry_run, batch_size=args.batch_size)
    finally:
        store.close()
    print(json.dumps(report.to_dict()), flush=True)
    return 0
