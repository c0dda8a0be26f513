#!/usr/bin/env python
"""What the fan-out order buys per customer (issue 18): one large customer and many small ones.

The spec: ``customer`` × ``item`` with exclusions, so customer ``big-000`` (the first, the worst place for
it under dimension-major) has ``--big`` payloads and each of ``--small`` customers has ``--each``;
``partition_by: [customer]``. For each ``order`` (``interleave``, ``dimension-major``):

1. a fresh standard queue; ``--shards`` fan-out threads each send their shard with batchq's
   :func:`batchq.sqs.send_bodies` (as the mapped fan-out tasks do), all starting together;
2. ``--consumers`` consumer threads start at the same time: receive up to 10, process each message for
   ``--service-ms`` (a sleep), stamp its finish time, delete the batch;
3. per partition: the finish time of its last payload, from the start of the fan-out.

Printed per order: p50/p95/max across partitions (and the large customer and the small ones apart), the
fan-out rate, and the capacity planner's prediction for the same run (:mod:`batchq.capacity.partitions`:
the drain simulator with a fixed fleet of ``--consumers`` one-slot consumers, the measured fan-out rate
and the measured per-message SQS overhead, plus the FIFO-in-aggregate assumption), with the error of each
figure. Endpoint: ``BATCHQ_BENCH_SQS_ENDPOINT`` or bench/_endpoint.py. Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "include"))

from _endpoint import boto3_client, sqs_endpoint  # noqa: E402

from batchq.capacity.partitions import predict_partitions  # noqa: E402
from batchq.capacity.policies import LocalPolicy  # noqa: E402
from batchq.capacity.simulate import simulate_run  # noqa: E402
from batchq.capacity.workload import ServiceTime, Workload  # noqa: E402
from batchq.monitor.lag import percentiles  # noqa: E402
from batchq.plan import Plan  # noqa: E402
from batchq.spec import BatchSpec  # noqa: E402
from batchq.sqs import delete_messages, receive_messages, send_bodies  # noqa: E402


def make_plan(order: str, big: int, small: int, each: int, shards: int) -> Plan:
    customers = ["big-000"] + [f"small-{i:03d}" for i in range(1, small + 1)]
    spec = BatchSpec.from_dict({
        "name": "order_bench",
        "job_type": "j",
        "queues": {"input": "in", "results": "out"},
        "dimensions": {"customer": customers, "item": list(range(big))},
        "exclude": [{"customer": customers[1:], "item": list(range(each, big))}],
        "partition_by": ["customer"],
        "order": order,
        "max_shards": shards,
        "target_payloads_per_shard": 1,
    })
    return Plan(spec, f"bench-{order}")


def run_once(client, url: str, plan: Plan, consumers: int, service_s: float) -> dict:
    n = plan.expected
    finish: dict[str, float] = {}
    sqs_time = [0.0]
    processed = [0]
    lock = threading.Lock()
    stop = threading.Event()
    start = threading.Barrier(len(plan.shards()) + consumers + 1)
    t0 = [0.0]

    def sender(shard) -> None:
        start.wait()
        send_bodies(client, url, plan.iter_messages(shard, grouped=False), max_in_flight=1)

    def consumer() -> None:
        start.wait()
        while not stop.is_set():
            a = time.perf_counter()
            msgs = receive_messages(client, url, max_messages=10, wait_seconds=1)
            spent = time.perf_counter() - a
            for m in msgs:
                time.sleep(service_s)
                part = json.loads(m["Body"])["dims"]["customer"]
                with lock:
                    finish[part] = time.perf_counter() - t0[0]
            if msgs:
                a = time.perf_counter()
                delete_messages(client, url, msgs)
                spent += time.perf_counter() - a
                with lock:
                    sqs_time[0] += spent
                    processed[0] += len(msgs)
                    if processed[0] >= n:
                        stop.set()

    threads = [threading.Thread(target=sender, args=(s,)) for s in plan.shards()]
    threads += [threading.Thread(target=consumer) for _ in range(consumers)]
    for t in threads:
        t.start()
    t0[0] = time.perf_counter()
    start.wait()
    senders = threads[: len(plan.shards())]
    for t in senders:
        t.join()
    fanout_s = time.perf_counter() - t0[0]
    stop.wait(timeout=600)
    stop.set()
    for t in threads:
        t.join()
    return {"finish": finish, "fanout_s": fanout_s, "overhead_s": sqs_time[0] / max(1, processed[0]), "processed": processed[0]}


def summary(finish: dict[str, float]) -> dict:
    small = [v for k, v in finish.items() if k != "big-000"]
    return {
        "all": percentiles(finish.values(), (50, 95)),
        "small": percentiles(small, (50, 95)),
        "big_s": round(finish.get("big-000", float("nan")), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--big", type=int, default=1000)
    parser.add_argument("--small", type=int, default=50)
    parser.add_argument("--each", type=int, default=20)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--consumers", type=int, default=8)
    parser.add_argument("--service-ms", type=float, default=20.0)
    args = parser.parse_args()
    out: dict = {"big": args.big, "small": args.small, "each": args.each, "shards": args.shards,
                 "consumers": args.consumers, "service_ms": args.service_ms}
    with sqs_endpoint() as ep:
        out["endpoint"] = ep.kind
        client = boto3_client(ep.url)
        for order in ("interleave", "dimension-major"):
            plan = make_plan(order, args.big, args.small, args.each, args.shards)
            url = client.create_queue(QueueName=f"order-bench-{uuid.uuid4().hex[:8]}")["QueueUrl"]
            try:
                measured = run_once(client, url, plan, args.consumers, args.service_ms / 1000)
            finally:
                client.delete_queue(QueueUrl=url)
            assert measured["processed"] >= plan.expected, measured["processed"]
            rate = plan.expected / measured["fanout_s"]
            workload = Workload(payloads=plan.expected, service=ServiceTime.constant(args.service_ms / 1000),
                                fanout_rate=rate, overhead_s=measured["overhead_s"])
            policy = LocalPolicy(concurrency=1, min_workers=args.consumers, max_workers=args.consumers, poll_interval_s=0.25,
                                 startup_s=0.0, prefetch=9)
            predicted = predict_partitions(plan, simulate_run(workload, policy, seed=1), rate)
            m, p = summary(measured["finish"]), summary(predicted["finish_s"])
            errors = {f"{group}_{q}": round(p[group][q] - m[group][q], 3) for group in ("all", "small") for q in ("p50", "p95", "max")}
            errors["big"] = round(p["big_s"] - m["big_s"], 3)
            out[order] = {"payloads": plan.expected, "fanout_per_s": round(rate), "overhead_ms": round(measured["overhead_s"] * 1000, 2),
                          "measured": m, "predicted": p, "predicted_minus_measured_s": errors}
            print(f"{order:>16}: measured all p50 {m['all']['p50']}s p95 {m['all']['p95']}s max {m['all']['max']}s; "
                  f"small p95 {m['small']['p95']}s; big {m['big_s']}s  |  predicted all p50 {p['all']['p50']}s "
                  f"p95 {p['all']['p95']}s max {p['all']['max']}s; small p95 {p['small']['p95']}s; big {p['big_s']}s "
                  f"(fan-out {rate:.0f}/s, overhead {measured['overhead_s'] * 1000:.1f} ms/msg)", flush=True)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
