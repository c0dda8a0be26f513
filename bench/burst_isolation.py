"""Burst isolation: the claim of the pattern, measured.

A small real-time service on loopback with fixed capacity (``--capacity`` concurrent requests, each
``--service-ms`` + ``--per-item-ms`` per result posted) serves a steady foreground load whose latency is
measured (``GET /fg``, ``--fg-rate`` requests/s from its own process). Scenarios, one run:

1. ``idle``     foreground only;
2. ``sync``     the anti-pattern: ``--results`` results POSTed one by one the moment they are ready, by
                ``--jobs`` concurrent "jobs";
3. ``batchq``   the same results from an SQS results queue through batchq's drainer (``HttpSink``,
                batches of 10) at ``--max-rate`` results/s, a fraction of the service's capacity.

Then, against an uncapped fast receiver: the drainer's throughput with no rate cap (``drain_per_s``)
versus a raw receive → POST → delete loop (``raw_drain_per_s``), both single-threaded; the achieved rate
of scenario 3 against ``--max-rate`` (``rate_error_pct``); and ``detect_delay_s``: the time from the
queue actually becoming empty to :class:`~batchq.airflow.triggers.QueueDrainedTrigger`'s event, with a
small ``stable_for`` (``stable_for_s``).

The service, the foreground load and the SQS endpoint each run in their own process. In production
the real-time service does not share a host with SQS or the batch side; here everything shares two
cores, and the emulator's CPU alone raises the foreground p99 by ~50 % (measured: SQS calls at the
drain's pace with no writes to the service). So, where the machine has ≥ 2 CPUs, the service and its
foreground load are pinned to CPU 0 and everything else (SQS emulator, drainer, the sync "jobs") to the
others (``--no-cpu-split`` turns this off; ``cpu_split`` in the JSON says which). The split is lifted
for the throughput comparison, which measures per-message cost rather than isolation. SQS: LocalStack via bench/_endpoint.py when installed
(else moto — its numbers say little; ``endpoint`` in the JSON says which).

Last line: one JSON object with p99_idle_ms, p99_sync_ms, p99_batchq_ms, drain_per_s, raw_drain_per_s,
rate_error_pct, detect_delay_s, stable_for_s (and context).
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO))

os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")

from batchq.sqs.queues import delete_queue, ensure_queue  # noqa: E402


def log(msg: str) -> None:
    print(f"[burst_isolation] {msg}", file=sys.stderr, flush=True)


# -- child processes: the service and the foreground load ---------------------------------------------------


SERVICE_CPUS = {0}


def pin_service_side() -> None:
    """Child processes of the real-time side run on CPU 0 when the parent split the CPUs."""
    if os.environ.get("BURST_CPU_SPLIT") == "1":
        os.sched_setaffinity(0, SERVICE_CPUS)


def split_cpus(enabled: bool) -> str:
    """Pin this process (and the SQS emulator it starts) off CPU 0; returns the split for the report."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if not enabled or len(cpus) < 2 or 0 not in cpus:
        os.environ.pop("BURST_CPU_SPLIT", None)
        return "none"
    os.sched_setaffinity(0, set(cpus) - SERVICE_CPUS)
    os.environ["BURST_CPU_SPLIT"] = "1"
    return f"service+fg: cpu0; sqs+drainer+jobs: cpu{','.join(map(str, sorted(set(cpus) - SERVICE_CPUS)))}"


def widen_cpus(pids: list[int | None]) -> None:
    """Undo the split for this process and the SQS emulator (every thread: affinity is per thread)."""
    everything = set(range(os.cpu_count() or 1))
    for pid in {os.getpid(), *(p for p in pids if p)}:
        try:
            for tid in os.listdir(f"/proc/{pid}/task"):
                os.sched_setaffinity(int(tid), everything)
        except (OSError, ValueError):
            pass


def serve(capacity: int, service_ms: float, per_item_ms: float) -> None:
    """Child: run the real-time service until stdin closes; print its port first."""
    pin_service_side()
    from tests.support.http_receiver import Receiver

    with Receiver(capacity=capacity, service_ms=service_ms, per_item_ms=per_item_ms) as rx:
        print(rx.port, flush=True)
        sys.stdin.read()


def foreground(port: int, rate: float, threads: int) -> None:
    """Child: GET /fg at ``rate`` requests/s (evenly split over ``threads``) until SIGTERM; then print
    the latencies (ms) as JSON. Requests are scheduled on a fixed timetable (open loop), and latency is
    measured from the scheduled time, so a slow response cannot hide queueing (no coordinated omission)."""
    pin_service_side()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    lat: list[list[float]] = [[] for _ in range(threads)]
    period = threads / rate

    def run(i: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        due = time.perf_counter() + i * period / threads
        while not stop.is_set():
            now = time.perf_counter()
            if due > now:
                time.sleep(due - now)
            conn.request("GET", "/fg")
            conn.getresponse().read()
            lat[i].append((time.perf_counter() - due) * 1000)
            due += period

    ts = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(threads)]
    for t in ts:
        t.start()
    while not stop.is_set():
        stop.wait(0.1)
    for t in ts:
        t.join(timeout=5)
    print(json.dumps([x for part in lat for x in part]), flush=True)


class Service:
    def __init__(self, capacity: int, service_ms: float, per_item_ms: float):
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(capacity), str(service_ms), str(per_item_ms)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO,
        )
        self.port = int(self.proc.stdout.readline())
        self.url = f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=10)


class Foreground:
    """Foreground load in its own process, for the duration of a ``with`` block."""

    def __init__(self, port: int, rate: float, threads: int):
        self.args = [sys.executable, __file__, "--fg", str(port), str(rate), str(threads)]
        self.latencies: list[float] = []

    def __enter__(self) -> Foreground:
        self.proc = subprocess.Popen(self.args, stdout=subprocess.PIPE, text=True, cwd=REPO)
        time.sleep(0.5)  # warm-up: connections open, timetable running
        return self

    def __exit__(self, *exc: object) -> None:
        self.proc.send_signal(signal.SIGTERM)
        out, _ = self.proc.communicate(timeout=30)
        self.latencies = json.loads(out)


def p99(xs: list[float]) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(0.99 * (len(xs) - 1)))] if xs else float("nan")


# -- results ------------------------------------------------------------------------------------------------


def make_bodies(n: int, batch: str) -> list[tuple[str, str]]:
    from batchq.messages import WorkResult
    run = uuid.uuid4().hex[:8]
    return [
        (f"{run}-{i}", WorkResult(batch=batch, run_id=run, key=f"{run}-{i:06d}", status="succeeded", output={"score": i % 97, "segment": i % 5}).model_dump_json())
        for i in range(n)
    ]


def load_queue(client, url: str, bodies: list[tuple[str, str]]) -> None:
    from batchq.sqs import send_bodies

    send_bodies(client, url, bodies, max_in_flight=4)


# -- scenarios --------------------------------------------------------------------------------------------------


def scenario_sync(service: Service, bodies: list[tuple[str, str]], jobs: int) -> None:
    """Every job POSTs each of its results the moment it is ready (one request per result)."""
    chunks = [bodies[i::jobs] for i in range(jobs)]

    def job(items: list[tuple[str, str]]) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", service.port, timeout=60)
        for _, body in items:
            conn.request("POST", "/results", body='{"results":[' + body + "]}", headers={"Content-Type": "application/json"})
            conn.getresponse().read()

    ts = [threading.Thread(target=job, args=(c,)) for c in chunks]
    for t in ts:
        t.start()
    for t in ts:
        t.join()


def run_drainer(client, url: str, sink_url: str, *, max_rate: float | None, max_in_flight: int, n: int, ledger_dir: str):
    """Drain ``n`` results into the HTTP sink; return (report, commit times)."""
    from batchq.drain import Drainer, HttpSink
    from batchq.store import ResultsStore

    store = ResultsStore(f"sqlite:///{ledger_dir}/ledger-{uuid.uuid4().hex[:6]}.db")
    store.create_tables()
    commits: list[tuple[float, int]] = []
    drainer = Drainer(
        client, url, HttpSink(sink_url), store, max_rate=max_rate, max_in_flight=max_in_flight, receive_wait_s=1,
        on_batch=lambda r: commits.append((time.perf_counter(), r.applied)),
    )
    started = time.perf_counter()
    report = drainer.run(until_empty=True, max_results=n)
    store.close()
    return report, started, commits


def raw_loop(client, url: str, port: int, n: int) -> float:
    """The baseline: receive 10 → POST their bodies → delete, single-threaded, no parsing, no ledger.
    Raw boto3 calls on purpose: this is the plain-SDK loop the drainer is measured against."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    done = 0
    started = time.perf_counter()
    while done < n:
        msgs = client.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
        if not msgs:
            break
        conn.request("POST", "/results", body='{"results":[' + ",".join(m["Body"] for m in msgs) + "]}", headers={"Content-Type": "application/json"})
        conn.getresponse().read()
        client.delete_message_batch(QueueUrl=url, Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(msgs)])
        done += len(msgs)
    return done / (time.perf_counter() - started)


def detect_delay(client, sqs_url: str, stable_for_s: float, poll_s: float, n: int = 200) -> float:
    """Seconds from the queue actually emptying (last delete returned) to QueueDrainedTrigger's event."""
    os.environ["AIRFLOW_CONN_BATCHQ_BENCH"] = json.dumps(
        {"conn_type": "aws", "login": "testing", "password": "testing", "extra": {"endpoint_url": sqs_url, "region_name": "us-east-1"}}
    )
    from batchq.airflow.triggers import QueueDrainedTrigger
    from batchq.sqs import delete_messages, receive_messages

    url = ensure_queue(client, f"bench-detect-{uuid.uuid4().hex[:8]}")
    load_queue(client, url, make_bodies(n, "detect"))
    emptied: list[float] = []

    def consume() -> None:
        time.sleep(1.0)
        while True:
            msgs = receive_messages(client, url, wait_seconds=1)
            if not msgs:
                return
            delete_messages(client, url, msgs)
            emptied[:] = [time.time()]

    async def wait_event() -> float:
        trigger = QueueDrainedTrigger(url, stable_for_s=stable_for_s, poll_interval_s=poll_s, aws_conn_id="batchq_bench", emit_metrics=False)
        async for event in trigger.run():
            assert event.payload["reason"] == "drained", event.payload
            return time.time()
        raise RuntimeError("trigger ended without an event")

    t = threading.Thread(target=consume)
    t.start()
    fired = asyncio.run(wait_event())
    t.join()
    delete_queue(client, url)
    return fired - emptied[0]


# -- main ----------------------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--results", type=int, default=2000)
    ap.add_argument("--jobs", type=int, default=50)
    ap.add_argument("--capacity", type=int, default=4)
    ap.add_argument("--service-ms", type=float, default=5.0)
    ap.add_argument("--per-item-ms", type=float, default=0.5)
    ap.add_argument("--fg-rate", type=float, default=100.0)
    ap.add_argument("--fg-threads", type=int, default=4)
    ap.add_argument("--idle-s", type=float, default=6.0)
    ap.add_argument("--rounds", type=int, default=3, help="alternating idle/batchq windows and throughput rounds")
    ap.add_argument("--max-rate", type=float, default=200.0)
    ap.add_argument("--max-in-flight", type=int, default=1)
    ap.add_argument("--throughput-results", type=int, default=2000)
    ap.add_argument("--stable-for", type=float, default=2.0)
    ap.add_argument("--poll-interval", type=float, default=0.5)
    ap.add_argument("--prefer", default="localstack", choices=("localstack", "moto"))
    ap.add_argument("--no-cpu-split", action="store_true", help="do not pin the service side to CPU 0")
    args = ap.parse_args()
    cpu_split = split_cpus(not args.no_cpu_split)
    log(f"cpu split: {cpu_split}")

    from _endpoint import boto3_client, sqs_endpoint

    capacity_results_per_s = args.capacity * 1000 / (args.service_ms + 10 * args.per_item_ms) * 10
    with sqs_endpoint(prefer=args.prefer) as ep, tempfile.TemporaryDirectory() as tmp:
        client = boto3_client(ep.url)
        log(f"endpoint: {ep.kind} {ep.url}")
        service = Service(args.capacity, args.service_ms, args.per_item_ms)
        try:
            # Idle and batchq windows alternate (``--rounds``) and their samples are pooled, so both see the
            # same background load on a shared machine; the sync burst is measured once.
            idle: list[float] = []
            bq: list[float] = []
            achieved_rates: list[float] = []
            for rnd in range(args.rounds):
                # 1. idle
                with Foreground(service.port, args.fg_rate, args.fg_threads) as fg:
                    time.sleep(args.idle_s)
                idle += fg.latencies
                log(f"round {rnd + 1}: idle: {len(fg.latencies)} fg requests, p50 {statistics.median(fg.latencies):.2f} ms, p99 {p99(fg.latencies):.2f} ms")

                # 3. batchq drainer at max_rate (queue loaded beforehand: the burst lands on SQS, not the service)
                url = ensure_queue(client, f"bench-burst-{uuid.uuid4().hex[:8]}")
                load_queue(client, url, make_bodies(args.results, "batchq"))
                with Foreground(service.port, args.fg_rate, args.fg_threads) as fg:
                    _, started, commits = run_drainer(client, url, f"{service.url}/results", max_rate=args.max_rate, max_in_flight=args.max_in_flight, n=args.results, ledger_dir=tmp)
                bq += fg.latencies
                last_t, applied = commits[-1]
                achieved_rates.append(applied / (last_t - started))
                log(f"round {rnd + 1}: batchq: {applied} results at max_rate {args.max_rate}/s: achieved {achieved_rates[-1]:.1f}/s; fg p99 {p99(fg.latencies):.2f} ms")
                delete_queue(client, url)

            # 2. sync burst
            bodies = make_bodies(args.results, "sync")
            with Foreground(service.port, args.fg_rate, args.fg_threads) as fg:
                t0 = time.perf_counter()
                scenario_sync(service, bodies, args.jobs)
                sync_s = time.perf_counter() - t0
            sync = fg.latencies
            log(f"sync burst: {args.results} POSTs by {args.jobs} jobs in {sync_s:.1f}s; fg p99 {p99(sync):.2f} ms")
            achieved = statistics.mean(achieved_rates)
            rate_error_pct = (achieved - args.max_rate) / args.max_rate * 100
        finally:
            service.close()

        # 4. throughput with no rate cap against a fast receiver: drainer vs raw loop, one thread each,
        # alternating rounds, medians. This compares per-message cost, not isolation, so the CPU split is
        # lifted: pinned to the emulator's core, any client CPU is taken from SQS itself, which no real
        # deployment does (SQS never runs on the drainer's host).
        if cpu_split != "none":
            widen_cpus([ep.pid])
        fast = Service(64, 0.0, 0.0)
        raw_rates: list[float] = []
        drain_rates: list[float] = []
        try:
            url = ensure_queue(client, f"bench-tput-{uuid.uuid4().hex[:8]}")
            for rnd in range(args.rounds):
                load_queue(client, url, make_bodies(args.throughput_results, "raw"))
                raw_rates.append(raw_loop(client, url, fast.port, args.throughput_results))
                load_queue(client, url, make_bodies(args.throughput_results, "drain"))
                _, started, commits = run_drainer(client, url, f"{fast.url}/results", max_rate=None, max_in_flight=1, n=args.throughput_results, ledger_dir=tmp)
                drain_rates.append(commits[-1][1] / (commits[-1][0] - started))
                log(f"round {rnd + 1}: throughput (1 thread, no cap): drainer {drain_rates[-1]:.0f}/s vs raw loop {raw_rates[-1]:.0f}/s")
            delete_queue(client, url)
        finally:
            fast.close()
        raw_per_s, drain_per_s = statistics.median(raw_rates), statistics.median(drain_rates)
        log(f"throughput medians: drainer {drain_per_s:.0f}/s vs raw {raw_per_s:.0f}/s ({drain_per_s / raw_per_s:.2f})")

        # 5. detection delay of the drain trigger
        delay = detect_delay(client, ep.url, args.stable_for, args.poll_interval)
        log(f"detect delay: {delay:.2f}s with stable_for {args.stable_for}s, poll {args.poll_interval}s (target <= {args.stable_for + 2 * args.poll_interval:.1f}s)")

    out = {
        "p99_idle_ms": round(p99(idle), 2),
        "p99_sync_ms": round(p99(sync), 2),
        "p99_batchq_ms": round(p99(bq), 2),
        "drain_per_s": round(drain_per_s, 1),
        "raw_drain_per_s": round(raw_per_s, 1),
        "rate_error_pct": round(rate_error_pct, 2),
        "detect_delay_s": round(delay, 2),
        "stable_for_s": args.stable_for,
        "poll_interval_s": args.poll_interval,
        "sync_over_idle": round(p99(sync) / p99(idle), 2),
        "batchq_over_idle": round(p99(bq) / p99(idle), 2),
        "drain_over_raw": round(drain_per_s / raw_per_s, 3),
        "max_rate": args.max_rate,
        "max_in_flight": args.max_in_flight,
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "service_capacity_results_per_s": round(capacity_results_per_s),
        "results": args.results,
        "rounds": args.rounds,
        "endpoint": ep.kind,
        "cpu_split": cpu_split,
    }
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--serve":
        serve(int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]))
    elif len(sys.argv) > 1 and sys.argv[1] == "--fg":
        foreground(int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]))
    else:
        main()
