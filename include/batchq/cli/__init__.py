"""The ``batchq`` command. Each sub-command lives in its own module of this package, exposing
``register(subparsers)``; modules are discovered, so the worker, drain and queue commands are owned
separately. Nothing here imports Airflow: ``batchq worker`` runs in an Airflow-free install."""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="batchq", description="Decoupled batch runs over Amazon SQS.")
    parser.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(sub)
    return parser


def _command(argv: list[str] | None) -> str | None:
    """The sub-command named in ``argv`` (without importing the sub-command modules)."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--log-level")
    pre.add_argument("command", nargs="?")
    known, _ = pre.parse_known_args(argv)
    return known.command


def main(argv: list[str] | None = None) -> int:
    early_stop = None
    if _command(argv) == "worker":
        # Before the sub-command modules (and pydantic, botocore) are imported: see _early_stop.
        from batchq.cli._early_stop import EarlyStop

        early_stop = EarlyStop.install()
    parser = build_parser()
    args = parser.parse_args(argv)
    args.early_stop = early_stop
    logging.basicConfig(
        level=getattr(logging, str(args.log_level).upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    try:
        from batchq.cli._urls import resolve_url_options

        resolve_url_options(args)
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - one clear line for the user, the traceback in debug
        from batchq.errors import BatchqError

        if isinstance(exc, BatchqError):
            logging.getLogger("batchq").debug("error", exc_info=True)
            print(f"batchq: error: {exc}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
