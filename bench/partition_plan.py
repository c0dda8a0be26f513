#!/usr/bin/env python
"""Per-partition expected counts for a 1,000,000-payload plan (issue 18), no SQS.

The spec: 10,000 customers × 10 periods × 10 kinds, ``partition_by: [customer]``, with exclusions
(a few customers skip some periods, one kind is never run for a period). Measured:

- ``arithmetic_s``  :meth:`batchq.plan.Plan.partition_expected` (grouped inclusion-exclusion, what
                    batchq uses up to 16 rules): never walks the product;
- ``streamed_s``    one pass over the plan's digits counting per partition (the fallback above 16 rules);
- ``keys_s``        one pass that also builds every payload's key and body (what a fan-out does), for scale;
- ``peak_rss_mb``   of this process (the product is never materialised; one counter per partition).

Both counts are checked equal and summing to the plan's expected. Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "include"))

from batchq.plan import Plan  # noqa: E402
from batchq.spec import BatchSpec  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--skip-keys", action="store_true", help="skip the key+body pass")
    args = parser.parse_args()
    customers = [f"c{i:05d}" for i in range(args.customers)]
    spec = BatchSpec.from_dict(
        {
            "name": "bench",
            "job_type": "j",
            "queues": {"input": "in", "results": "out"},
            "dimensions": {"customer": customers, "period": list(range(10)), "kind": [f"k{i}" for i in range(10)]},
            "exclude": [
                {"customer": customers[::7], "period": [0, 1, 2]},
                {"kind": "k9", "period": 9},
                {"customer": customers[::13], "kind": ["k0", "k1"]},
            ],
            "partition_by": ["customer"],
            "order": "interleave",
            "max_payloads": 2_000_000,
        }
    )
    plan = Plan(spec, "bench-run")
    t0 = time.perf_counter()
    arithmetic = plan.partition_expected()
    t1 = time.perf_counter()
    streamed = plan._partition_expected_streamed()
    t2 = time.perf_counter()
    assert arithmetic == streamed, "arithmetic and streamed per-partition counts differ"
    assert sum(arithmetic.values()) == plan.expected
    keys_s = None
    if not args.skip_keys:
        t3 = time.perf_counter()
        n = sum(1 for s in plan.shards() for _ in plan.iter_messages(s, grouped=True))
        keys_s = round(time.perf_counter() - t3, 2)
        assert n == plan.expected
    out = {
        "product": plan.size,
        "expected": plan.expected,
        "partitions": len(arithmetic),
        "rules": len(spec.exclude),
        "arithmetic_s": round(t1 - t0, 3),
        "streamed_s": round(t2 - t1, 2),
        "keys_s": keys_s,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    for k, v in out.items():
        print(f"{k:>14}: {v}")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
