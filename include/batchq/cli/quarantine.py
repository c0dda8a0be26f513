"""``batchq quarantine list|replay``: inspect the results the drainer quarantined, and re-apply them
through the sink once the cause is fixed (idempotent: replayed rows are marked and never replayed
twice). No Airflow import here."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from batchq.cli._urls import add_url_option


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("quarantine", help="list or replay quarantined results")
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")

    def filters(q: argparse.ArgumentParser) -> None:
        add_url_option(q, "store", env="BATCHQ_STORE_URL", help="SQLAlchemy URL of the results store (the sink database or the ledger)")
        q.add_argument("--batch", help="only this batch")
        q.add_argument("--run-id", help="only this run")
        q.add_argument("--limit", type=int, default=None, help="at most this many rows")

    q = sub.add_parser("list", help="print quarantined results as JSON lines (oldest first)")
    filters(q)
    q.add_argument("--all", action="store_true", help="include rows already replayed")
    q.add_argument("--body-chars", type=int, default=300, help="characters of each raw body shown (default 300)")
    q.set_defaults(func=cmd_list)

    q = sub.add_parser(
        "replay",
        help="re-apply quarantined results through the sink and mark them replayed",
        description="Bodies that now pass the checks are written to the sink (default: the store itself) and "
        "recorded in the store, so the run's ledger counts them. Rows still invalid stay quarantined. Exit 0 when "
        "every selected row was replayed, 1 otherwise.",
    )
    filters(q)
    add_url_option(q, "sink", env="BATCHQ_SINK_URL", required=False, help="http(s):// endpoint (or another SQLAlchemy URL) to write to; default: the store")
    q.add_argument("--message-id", action="append", default=[], help="only this quarantined message (repeatable)")
    q.add_argument("--header-env", action="append", default=[], metavar="NAME=ENVVAR", help="HTTP sink header from an environment variable (repeatable)")
    q.set_defaults(func=cmd_replay)


def cmd_list(args: argparse.Namespace) -> int:
    from batchq.store import ResultsStore

    store = ResultsStore(args.store)
    try:
        rows = store.quarantined(args.batch, args.run_id, include_replayed=args.all, limit=args.limit)
    finally:
        store.close()
    for row in rows:
        body = row["body"]
        shown = body if len(body) <= args.body_chars else body[: args.body_chars] + f"…({len(body)} chars)"
        print(json.dumps({**_jsonable(row), "body": shown}), flush=True)
    print(f"{len(rows)} quarantined result(s)", file=sys.stderr)
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from batchq.cli.drain import sink_headers_from_env
    from batchq.drain import open_sink
    from batchq.store import ResultsStore
    from batchq.drain.quarantine import replay_quarantine

    store = ResultsStore(args.store)
    sink = None
    try:
        if args.sink:
            sink, _ledger = open_sink(args.sink, ledger_url=args.store, headers=sink_headers_from_env(args.header_env))
            if _ledger is not sink:
                _ledger.close()
        report = replay_quarantine(store, sink, batch=args.batch, run_id=args.run_id, message_ids=args.message_id or None, limit=args.limit)
    finally:
        if sink is not None:
            sink.close()
        store.close()
    print(json.dumps(report.to_dict()), flush=True)
    return 0 if not report.not_replayed else 1


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in row.items()}
