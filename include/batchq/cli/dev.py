"""``batchq dev run``: run a DAG, its spec and your handlers end to end on this machine (embedded SQS
endpoint, SQLite Airflow home, workers in the background, a live view and a summary). See
docs/first-batch.md. Airflow runs as the ``airflow`` command; nothing here imports it."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("dev", help="run your batch locally: `batchq dev run --dag DAG --handlers MODULE`")
    sub = p.add_subparsers(dest="dev_command", required=True, metavar="COMMAND")
    r = sub.add_parser(
        "run", help="any DAG/spec/handlers end to end on an embedded SQS endpoint, with live progress",
        description="Start an SQS endpoint (LocalStack if installed, else moto's server), an Airflow home "
                    "(SQLite) with aws_default pointing at it and a SQLite batchq_sink, the spec's queues and "
                    "`batchq workers` with your handlers; then `airflow dags test DAG` with a live view and a "
                    "summary. Exit 0 when the run's ledger closed as succeeded.",
    )
    r.add_argument("--dag", required=True, help="the DAG id to run")
    r.add_argument("--handlers", action="append", default=[], metavar="MODULE",
                   help="module whose @batchq.job handlers the workers load (repeatable)")
    r.add_argument("--spec", type=Path, help="the spec YAML the workers consume (default: <spec-dir>/<dag>.yaml, "
                                             "or the only YAML there)")
    r.add_argument("--project", type=Path, default=Path.cwd(), help="project directory, put on PYTHONPATH (default .)")
    r.add_argument("--dags-folder", type=Path, help="default <project>/dags")
    r.add_argument("--plugins-folder", type=Path, help="Airflow plugins folder (default: none; batchq's plugin "
                                                       "registers by entry point)")
    r.add_argument("--spec-dir", type=Path, help="[batchq] spec_dir (default <project>/specs, else <project>/include/specs)")
    r.add_argument("--home", type=Path, help="Airflow home, logs and the SQLite sink (default <project>/.batchq-dev)")
    r.add_argument("--endpoint", default="auto", help="auto (LocalStack if installed, else moto), localstack, moto, "
                                                      "or an http(s):// URL of a running endpoint")
    r.add_argument("--logical-date", help="the run's logical date (default: now)")
    r.add_argument("--min-workers", type=int, default=1, help="default 1")
    r.add_argument("--max-workers", type=int, default=2, help="default 2")
    r.add_argument("--backlog-per-worker", type=int, default=200, help="default 200")
    r.add_argument("--concurrency", type=int, default=4, help="handler threads per worker (default 4)")
    r.add_argument("--stable-for", type=float, default=5.0, metavar="SECONDS",
                   help="[batchq] wait_stable_for_s for the run (default 5: emulator counters are exact)")
    r.add_argument("--allow-missing-handlers", action="store_true",
                   help="start the workers even without a handler for some of the spec's job types")
    r.add_argument("--png", type=Path, help="where the drain curve goes (default <home>/drain-curve.png)")
    r.add_argument("--plain", action="store_true", help="a progress line every 5 s even on a terminal")
    r.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from batchq.dev.run import DevRunOptions, dev_run

    return dev_run(DevRunOptions(
        dag=args.dag, handlers=args.handlers, project=args.project, dags_folder=args.dags_folder,
        plugins_folder=args.plugins_folder, spec=args.spec, spec_dir=args.spec_dir, home=args.home,
        endpoint=args.endpoint, logical_date=args.logical_date, min_workers=args.min_workers,
        max_workers=args.max_workers, backlog_per_worker=args.backlog_per_worker, concurrency=args.concurrency,
        stable_for_s=args.stable_for, allow_missing_handlers=args.allow_missing_handlers, png=args.png,
        plain=args.plain,
    ))
