"""Worker throughput: 1, 2, 4 and 8 worker processes over a pre-filled queue, and per-message overhead.

For each measurement the input queue is filled first (4,000 payloads by default), then N worker
processes — each ``batchq worker --concurrency C`` — are started, wait until all have imported, and
are released together. Throughput = results confirmed / (first receive → last result confirmed), from
the workers' own timestamps. The handler waits 20 ms (an I/O-bound job).

* ``per_s_N``: N processes × C handler threads with the 20 ms handler.
* ``threads_per_s_N``: one process with N handler threads (the same concurrency, batched together).
* ``noop_per_s``: one process, a handler that does nothing (``--noop-concurrency`` threads, default 10,
  so a receive can fill a whole batch of ten like the raw loop).
* ``raw_loop_per_s``: one thread of plain boto3: ReceiveMessage(10) → SendMessageBatch(10 results) →
  DeleteMessageBatch(10), the floor any worker has to beat.

Endpoint: LocalStack when available (bench/_endpoint.py), else moto; printed as ``endpoint``.
Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _endpoint import boto3_client, sqs_endpoint
from batchq.plan import Plan
from batchq.spec import BatchSpec, QueueSpec
from batchq.sqs import get_snapshot, send_bodies
from batchq.sqs.queues import delete_queue, ensure_queues

BOOT = r"""
import json, sys
from batchq.cli import build_parser
from batchq.cli.worker import build_worker
args = build_parser().parse_args(sys.argv[1:])
worker = build_worker(args)
print("ready", flush=True)
sys.stdin.readline()  # released together with the other processes
worker.install_signal_handlers()
stats = worker.run()
print(json.dumps(stats.to_dict()), flush=True)
"""


#: extra `batchq worker` options for every worker process (bench --worker-arg)
EXTRA_WORKER_ARGS: list[str] = []


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def fresh_queues(client, tag: str):
    spec = QueueSpec(input=f"bw-{tag}-{uuid.uuid4().hex[:6]}-in", results=f"bw-{tag}-{uuid.uuid4().hex[:6]}-out",
                     visibility_timeout_s=60, max_receive_count=5)
    return ensure_queues(client, spec)


def fill(client, url: str, n: int, job_type: str) -> float:
    spec = BatchSpec.from_dict({
        "name": "benchw", "dimensions": {"customer": [f"c{i:06d}" for i in range(n)]}, "job_type": job_type,
        "queues": {"input": "x", "results": "y"}, "target_payloads_per_shard": 1000,
    })
    plan = Plan(spec, f"run-{uuid.uuid4().hex[:6]}")
    t0 = time.perf_counter()
    send_bodies(client, url, (kb for shard in plan.shards() for kb in plan.iter_bodies(shard)), max_in_flight=4)
    return time.perf_counter() - t0


def cleanup(client, urls) -> None:
    for url in urls.to_dict().values():
        with contextlib.suppress(Exception):  # best effort: the endpoint is discarded anyway
            delete_queue(client, url)


def run_workers(ep_url: str, client, n_procs: int, concurrency: int, job_type: str, payloads: int,
                handler_ms: float, batch_wait_ms: float, tag: str) -> dict:
    urls = fresh_queues(client, tag)
    try:
        fill_s = fill(client, urls.input, payloads, job_type)
        env = dict(os.environ, BATCHQ_SQS_ENDPOINT=ep_url, BATCHQ_BENCH_HANDLER_MS=str(handler_ms),
                   AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1",
                   PYTHONPATH=os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]))
        argv = ["--log-level", "WARNING", "worker", "--queue", urls.input, "--results-queue", urls.results,
                "--handlers", "_bench_handlers", "--no-entry-points", "--concurrency", str(concurrency),
                "--wait-seconds", "2", "--batch-wait-ms", str(batch_wait_ms), "--grace-period", "10",
                *EXTRA_WORKER_ARGS]
        procs = [subprocess.Popen([sys.executable, "-c", BOOT, *argv], env=env, stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True) for _ in range(n_procs)]
        try:
            for p in procs:
                line = p.stdout.readline().strip()
                if line != "ready":
                    raise RuntimeError(f"worker did not start (got {line!r}, rc={p.poll()})")
            for p in procs:
                p.stdin.write("go\n")
                p.stdin.flush()
            deadline = time.monotonic() + 600
            while get_snapshot(client, urls.results).visible < payloads:
                if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                    raise RuntimeError("workers did not finish")
                time.sleep(0.25)
            for p in procs:
                p.send_signal(signal.SIGTERM)
            stats = []
            for p in procs:
                out, _ = p.communicate(timeout=60)
                stats.append(json.loads(out.strip().splitlines()[-1]))
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
        done = sum(s["succeeded"] for s in stats)
        start = min(s["first_receive_at"] for s in stats if s["first_receive_at"])
        end = max(s["last_confirmed_at"] for s in stats if s["last_confirmed_at"])
        left = get_snapshot(client, urls.input).backlog
        return {"per_s": done / (end - start), "seconds": end - start, "succeeded": done, "fill_s": fill_s,
                "left_in_input": left, "per_worker": [s["succeeded"] for s in stats]}
    finally:
        cleanup(client, urls)


def raw_loop(client, payloads: int) -> dict:
    """The baseline: plain boto3 receive → send result → delete, no batchq runtime (raw SDK calls on purpose)."""
    urls = fresh_queues(client, "raw")
    try:
        fill(client, urls.input, payloads, "bench-noop")
        done = 0
        first = last = None
        while done < payloads:
            msgs = client.receive_message(QueueUrl=urls.input, MaxNumberOfMessages=10, WaitTimeSeconds=2,
                                          MessageSystemAttributeNames=["ApproximateReceiveCount", "SentTimestamp"]
                                          ).get("Messages", [])
            if first is None:
                first = time.time()
            if not msgs:
                continue
            entries = [{"Id": str(i), "MessageBody": json.dumps({"key": json.loads(m["Body"])["key"], "status": "succeeded",
                                                                   "output": {}})} for i, m in enumerate(msgs)]
            client.send_message_batch(QueueUrl=urls.results, Entries=entries)
            last = time.time()
            client.delete_message_batch(QueueUrl=urls.input, Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(msgs)])
            done += len(msgs)
        return {"per_s": done / (last - first), "seconds": last - first, "succeeded": done}
    finally:
        cleanup(client, urls)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--payloads", type=int, default=4000)
    ap.add_argument("--workers", default="1,2,4,8", help="worker-process counts to measure")
    ap.add_argument("--concurrency", type=int, default=1, help="handler threads per worker process (C)")
    ap.add_argument("--noop-concurrency", type=int, default=10)
    ap.add_argument("--handler-ms", type=float, default=20.0)
    ap.add_argument("--batch-wait-ms", type=float, default=50.0)
    ap.add_argument("--prefer", default="localstack", choices=["localstack", "moto"])
    ap.add_argument("--skip-noop", action="store_true")
    ap.add_argument("--no-thread-scaling", dest="thread_scaling", action="store_false",
                    help="skip the 1-process x N-threads series")
    ap.add_argument("--worker-arg", action="append", default=[],
                    help="extra option for every worker process, e.g. --worker-arg=--receivers=2")
    args = ap.parse_args()
    EXTRA_WORKER_ARGS.extend(args.worker_arg)
    counts = [int(x) for x in args.workers.split(",")]
    out: dict = {}
    with sqs_endpoint(prefer=args.prefer) as ep:
        client = boto3_client(ep)
        out.update(endpoint=ep.kind, payloads=args.payloads, concurrency_per_worker=args.concurrency,
                   handler_ms=args.handler_ms, batch_wait_ms=args.batch_wait_ms, cpus=os.cpu_count())
        for n in counts:
            r = run_workers(ep.url, client, n, args.concurrency, "bench-io", args.payloads, args.handler_ms,
                            args.batch_wait_ms, f"w{n}")
            ideal = n * args.concurrency * 1000.0 / args.handler_ms
            print(f"{n} worker(s) x {args.concurrency} thread(s), {args.handler_ms:g} ms handler: "
                  f"{r['per_s']:8.1f} msg/s ({r['succeeded']} in {r['seconds']:.2f}s; ideal {ideal:.0f}/s; "
                  f"per worker {r['per_worker']}; left {r['left_in_input']})", flush=True)
            out[f"per_s_{n}"] = round(r["per_s"], 1)
        if args.thread_scaling:
            # The same handler threads in ONE process: receives, result sends and deletes then share
            # batches of up to ten, where N processes of one thread each cannot.
            for n in counts:
                if n == 1 and args.concurrency == 1 and "per_s_1" in out:
                    out["threads_per_s_1"] = out["per_s_1"]
                    continue
                r = run_workers(ep.url, client, 1, n, "bench-io", args.payloads, args.handler_ms,
                                args.batch_wait_ms, f"t{n}")
                print(f"1 worker x {n} thread(s), {args.handler_ms:g} ms handler: {r['per_s']:8.1f} msg/s "
                      f"({r['succeeded']} in {r['seconds']:.2f}s; ideal {n * 1000.0 / args.handler_ms:.0f}/s)", flush=True)
                out[f"threads_per_s_{n}"] = round(r["per_s"], 1)
        if not args.skip_noop:
            r = run_workers(ep.url, client, 1, args.noop_concurrency, "bench-noop", args.payloads, 0,
                            args.batch_wait_ms, "noop")
            print(f"noop handler, 1 worker x {args.noop_concurrency} threads: {r['per_s']:8.1f} msg/s "
                  f"({r['succeeded']} in {r['seconds']:.2f}s)", flush=True)
            out["noop_per_s"] = round(r["per_s"], 1)
            out["noop_concurrency"] = args.noop_concurrency
            r = raw_loop(client, args.payloads)
            print(f"raw boto3 loop (receive 10 -> send batch -> delete batch): {r['per_s']:8.1f} msg/s "
                  f"({r['succeeded']} in {r['seconds']:.2f}s)", flush=True)
            out["raw_loop_per_s"] = round(r["per_s"], 1)
    ratios = {}
    if "per_s_1" in out and "per_s_4" in out:
        ratios["ratio_4_1"] = round(out["per_s_4"] / out["per_s_1"], 2)
    if "per_s_4" in out and "per_s_8" in out:
        ratios["ratio_8_4"] = round(out["per_s_8"] / out["per_s_4"], 2)
    if "threads_per_s_1" in out and "threads_per_s_4" in out and "threads_per_s_8" in out:
        ratios["threads_ratio_4_1"] = round(out["threads_per_s_4"] / out["threads_per_s_1"], 2)
        ratios["threads_ratio_8_4"] = round(out["threads_per_s_8"] / out["threads_per_s_4"], 2)
    if "noop_per_s" in out:
        ratios["ratio_noop_raw"] = round(out["noop_per_s"] / out["raw_loop_per_s"], 2)
    out.update(ratios)
    for k, v in ratios.items():
        print(f"{k}: {v}")
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
