"""``batchq plan --spec FILE --run-id X``: what a run would send, without sending anything.

Prints the plan summary (product, exclusions, expected payloads, shard count) and the shard ranges as
JSON; ``--sample N`` adds the first N payload bodies of shard 0. No network.
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path
from typing import Any

from batchq.plan import Plan
from batchq.spec import BatchSpec


def spec_file(value: str) -> str:
    """argparse type for ``--spec``: an existing file (a clear usage error instead of a traceback)."""
    if not Path(value).is_file():
        raise argparse.ArgumentTypeError(f"spec file {value!r} does not exist")
    return value


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("plan", help="show a run's plan (counts and shards) without sending")
    p.add_argument("--spec", required=True, type=spec_file, help="BatchSpec YAML file")
    p.add_argument("--run-id", required=True, help="run key (part of every idempotency key)")
    p.add_argument("--sample", type=int, default=0, metavar="N", help="also print N payloads of shard 0")
    p.set_defaults(func=_plan)


def _plan(args: argparse.Namespace) -> int:
    # Only callable: sources resolve outside Airflow; a variable: source is a clear SpecError.
    spec = BatchSpec.from_yaml(args.spec).resolve()
    plan = Plan(spec, args.run_id)
    shards = plan.shards()
    out: dict[str, Any] = {**plan.summary(), "shard_ranges": [{**s.to_dict(), "label": s.label} for s in shards]}
    if args.sample > 0 and shards:
        out["sample"] = [json.loads(body) for _, body in itertools.islice(plan.iter_bodies(shards[0]), args.sample)]
    print(json.dumps(out, indent=2, ensure_ascii=False))
    return 0
