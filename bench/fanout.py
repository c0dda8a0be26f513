#!/usr/bin/env python
"""Fan-out benchmark (issue 2): batchq's fan-out path against the provider-style and raw paths.

One SQS endpoint for the whole run (LocalStack preferred, see bench/_endpoint.py), a fresh queue per path,
N payloads of the example batch's shape each:

- ``batchq_per_s``       batchq.sqs.send_bodies streaming Plan.iter_bodies (planning + serialising
                         included), SendMessageBatch with several calls in flight (tuned below);
- ``per_message_per_s``  one SendMessage per payload, single-threaded (what SqsPublishOperator does per task);
- ``raw_batch_per_s``    a plain single-threaded boto3 send_message_batch loop over pre-built bodies;
- ``tasks_for_1m``       mapped fan-out task instances for 1,000,000 payloads (len(Plan.shards()));
- ``peak_rss_mb_1m``     peak RSS of a subprocess (batchq only, no Airflow) that plans, serialises and
                         batches 1,000,000 payloads into a counting sink.

Each path's queue depth is checked after sending (every message must be there). Figures are printed,
then one JSON object as the last line. ``--n`` changes N; ``--in-flight 8`` skips the tuning sweep.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _endpoint import boto3_client, sqs_endpoint  # noqa: E402
from batchq.plan import Plan, Shard  # noqa: E402
from batchq.spec import BatchSpec  # noqa: E402
from batchq.sqs import get_snapshot, send_bodies  # noqa: E402
from batchq.sqs.queues import delete_queue, ensure_queue  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
SPEC_FILE = REPO / "include" / "specs" / "customer_batch.yaml"


def scaled_spec(customers: int, *, max_payloads: int = 2_000_000) -> BatchSpec:
    """The example spec (3 job types x 3 periods, daily use-case analysis excluded: 8 payloads per
    customer) with ``customers`` synthetic customers."""
    data = BatchSpec.from_yaml(SPEC_FILE).model_dump(mode="python")
    data["dimensions"][0]["values"] = [f"cust-{i:07d}" for i in range(customers)]
    data["max_payloads"] = max_payloads
    return BatchSpec.from_dict(data)


def bodies_for(n: int, run_id: str) -> tuple[Plan, Shard]:
    """One shard covering exactly ``n`` payloads (8 per customer: n/8 customers)."""
    plan = Plan(scaled_spec(-(-n // 8)), run_id)
    shard = Shard(0, 0, plan.size)
    if plan.expected != n:
        raise SystemExit(f"n must be a multiple of 8 (got {n})")
    return plan, shard


def fresh_queue(client, label: str) -> str:
    return ensure_queue(client, f"bench-fanout-{label}-{uuid.uuid4().hex[:8]}")


def depth(client, url: str) -> int:
    return get_snapshot(client, url).visible


def check_depth(client, url: str, n: int, label: str) -> None:
    got = depth(client, url)
    for _ in range(20):  # exact on emulators, eventually consistent on AWS
        if got == n:
            break
        time.sleep(0.25)
        got = depth(client, url)
    status = "ok" if got == n else "MISMATCH"
    print(f"  {label}: queue depth {got} of {n} ({status})", flush=True)
    if got != n:
        raise SystemExit(f"{label}: {n - got} messages missing from the queue")


def run_batchq(url_client, n: int, in_flight: int, label: str = "batchq") -> float:
    client = boto3_client(url_client, max_pool_connections=max(in_flight, 10))
    url = fresh_queue(client, label)
    plan, shard = bodies_for(n, f"bench-{uuid.uuid4().hex[:6]}")
    t0 = time.perf_counter()
    report = send_bodies(client, url, plan.iter_bodies(shard), max_in_flight=in_flight)
    dt = time.perf_counter() - t0
    check_depth(client, url, n, f"{label} (in_flight={in_flight})")
    delete_queue(client, url)
    assert report.sent == n and not report.failed
    return n / dt


# The two baselines below call boto3 directly on purpose: they are the plain-SDK paths batchq is measured
# against (one SendMessage per payload; a single-threaded SendMessageBatch loop).


def run_per_message(endpoint_url, items: list[tuple[str, str]]) -> float:
    client = boto3_client(endpoint_url)
    url = fresh_queue(client, "single")
    t0 = time.perf_counter()
    for _, body in items:
        client.send_message(QueueUrl=url, MessageBody=body)
    dt = time.perf_counter() - t0
    check_depth(client, url, len(items), "per-message")
    delete_queue(client, url)
    return len(items) / dt


def run_raw_batch(endpoint_url, items: list[tuple[str, str]]) -> float:
    client = boto3_client(endpoint_url)
    url = fresh_queue(client, "raw")
    chunks = [
        [{"Id": str(j), "MessageBody": body} for j, (_, body) in enumerate(items[i : i + 10])]
        for i in range(0, len(items), 10)
    ]
    t0 = time.perf_counter()
    for entries in chunks:
        resp = client.send_message_batch(QueueUrl=url, Entries=entries)
        if resp.get("Failed"):
            raise SystemExit(f"raw batch loop: {len(resp['Failed'])} entries failed")
    dt = time.perf_counter() - t0
    check_depth(client, url, len(items), "raw batch loop")
    delete_queue(client, url)
    return len(items) / dt


_RSS_CHILD = textwrap.dedent(
    """
    import json, resource, sys, time
    sys.path.insert(0, {bench!r})
    from fanout import scaled_spec
    from batchq.plan import Plan
    from batchq.sqs import SendReport, chunk_entries

    t0 = time.perf_counter()
    plan = Plan(scaled_spec(125_000), "manual__2026-11-29T07:00:00+00:00")
    payloads = nbytes = batches = 0
    for shard in plan.shards():
        report = SendReport()
        for chunk in chunk_entries(plan.iter_bodies(shard), report):  # the send path's batching
            batches += 1
            payloads += len(chunk)
            nbytes += sum(len(body) for _, body in chunk)
    assert payloads == plan.expected == 1_000_000, payloads
    assert not any(m == "airflow" or m.startswith("airflow.") for m in sys.modules), "Airflow was imported"
    print(json.dumps({{
        "payloads": payloads, "batches": batches, "bytes": nbytes, "shards": len(plan.shards()),
        "seconds": time.perf_counter() - t0,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }}))
    """
)


def peak_rss_1m() -> dict:
    code = _RSS_CHILD.format(bench=str(Path(__file__).parent))
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=20_000, help="payloads per path (multiple of 8)")
    ap.add_argument("--in-flight", type=int, default=None, help="skip tuning; use this max_in_flight")
    ap.add_argument("--prefer", choices=("localstack", "moto"), default="localstack")
    args = ap.parse_args()
    n = args.n

    print("== planning (no network)", flush=True)
    plan_1m = Plan(scaled_spec(125_000), "manual__2026-11-29T07:00:00+00:00")
    tasks_for_1m = len(plan_1m.shards())
    print(f"  1M spec: product {plan_1m.size:,}, expected {plan_1m.expected:,}, mapped fan-out tasks {tasks_for_1m}")
    rss = peak_rss_1m()
    print(
        f"  plan + serialise + batch 1M payloads: {rss['seconds']:.1f}s ({rss['payloads'] / rss['seconds']:,.0f}/s), "
        f"{rss['bytes'] / 1e6:,.0f} MB of bodies in {rss['batches']:,} batches, peak RSS {rss['peak_rss_mb']:.1f} MB"
    )

    with sqs_endpoint(prefer=args.prefer) as ep:
        print(f"== SQS endpoint: {ep.kind} at {ep.url}; N = {n:,} per path", flush=True)
        plan, shard = bodies_for(n, "bench-prebuilt")
        items = list(plan.iter_bodies(shard))  # pre-built for the reference paths: they measure the server

        if args.in_flight:
            best = args.in_flight
        else:
            sample = min(n, 4_000)
            print(f"== tuning max_in_flight on {sample:,} payloads", flush=True)
            sweep = {k: run_batchq(ep.url, sample, k, label=f"tune{k}") for k in (2, 4, 8, 16)}
            for k, rate in sweep.items():
                print(f"  max_in_flight={k:>2}: {rate:,.0f} msg/s")
            best = max(sweep, key=sweep.get)

        print("== measuring", flush=True)
        raw = run_raw_batch(ep.url, items)
        print(f"  raw_batch_per_s      {raw:10,.0f}   (single-threaded send_message_batch loop)", flush=True)
        batchq = run_batchq(ep.url, n, best)
        print(f"  batchq_per_s         {batchq:10,.0f}   (send_bodies, max_in_flight={best}, bodies built on the fly)", flush=True)
        single = run_per_message(ep.url, items)
        print(f"  per_message_per_s    {single:10,.0f}   (one SendMessage per payload)", flush=True)
        kind = ep.kind

    result = {
        "batchq_per_s": round(batchq, 1),
        "per_message_per_s": round(single, 1),
        "raw_batch_per_s": round(raw, 1),
        "tasks_for_1m": tasks_for_1m,
        "peak_rss_mb_1m": round(rss["peak_rss_mb"], 1),
        "n": n,
    }
    checks = {
        "batchq/per_message >= 8": batchq / single >= 8,
        "batchq/raw_batch >= 1.0": batchq / raw >= 1.0,
        "tasks_for_1m <= 64": tasks_for_1m <= 64,
        "peak_rss_mb_1m <= 200": rss["peak_rss_mb"] <= 200,
    }
    print(f"== targets (endpoint {kind}): batchq/per_message = {batchq / single:.1f}x, batchq/raw_batch = {batchq / raw:.2f}x")
    for name, ok in checks.items():
        print(f"  {'PASS' if ok else 'FAIL'}  {name}")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
