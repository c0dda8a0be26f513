"""SQS requests per payload of a whole batchq run, counted by a loopback proxy, and the idle cost.

Every SQS call of a run goes through a counting HTTP proxy in front of the endpoint: the fan-out
(:func:`batchq.sqs.send_bodies`, as the fan-out operator calls it), ``batchq worker`` processes
(receives incl. empty long polls, result sends, deletes, visibility changes), ``batchq drain`` into a
SQLite sink, and the drain sensor's polls (GetQueueAttributes of the input queue and its DLQ every
``--sensor-poke`` seconds, as :class:`~batchq.airflow.sensors.QueueDrainedSensor` pokes). Queue
provisioning is not counted (done once, not per run).

Cases, for each ``--payloads`` size:

* ``deep``: workers start after the fan-out (a deep queue: receives of ten);
* ``shallow``: workers run during the fan-out (receives return what is there).

Then ``--idle-seconds`` with nothing to do: requests per hour per idle consumer (workers, drainer),
the drainer's and one worker's apart, and per month at the default SQS price. ``--idle-only`` measures
just that (idle workers and one idle ``batchq drain`` on empty queues). Requests are also billed per 64 KiB chunk (``billed``).

Endpoint: LocalStack when available (bench/_endpoint.py; set ``LOCALSTACK_VENV``), else moto (slow:
keep ``--payloads`` small). Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _endpoint import boto3_client, sqs_endpoint
from batchq.capacity import PRICES_TAKEN, Prices
from batchq.plan import Plan
from batchq.spec import BatchSpec, QueueSpec
from batchq.sqs import get_snapshot, send_bodies
from batchq.sqs.queues import delete_queue, ensure_queues

MONTH_HOURS = 730.0

#: extra `batchq worker` options for every worker process (--worker-arg)
EXTRA_WORKER_ARGS: list[str] = []


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------ counting proxy


class CountingProxy:
    """A loopback HTTP proxy that forwards everything and counts SQS calls by action.

    ``calls[action]``, ``entries[action]`` (batch entries or messages received), ``empty_receives``,
    ``billed`` (64 KiB chunks of request + response bodies, as SQS bills), per phase (``phase``).
    """

    def __init__(self, upstream: str):
        u = urlsplit(upstream)
        self.host, self.port = u.hostname or "127.0.0.1", u.port or 80
        self.lock = threading.Lock()
        self.phase = "setup"
        self.calls: dict[str, Counter] = defaultdict(Counter)
        self.entries: dict[str, Counter] = defaultdict(Counter)
        self.empty: Counter = Counter()
        self.billed: Counter = Counter()
        self.by_queue: dict[str, Counter] = defaultdict(Counter)  # "Action@role" (role: input/results/dlq)
        self._local = threading.local()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()

    def _conn(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
        return conn

    def forward(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, list, bytes]:
        for attempt in range(2):
            conn = self._conn()
            try:
                conn.request(method, path, body=body, headers=headers)
                resp = conn.getresponse()
                return resp.status, resp.getheaders(), resp.read()
            except (http.client.HTTPException, OSError):
                conn.close()
                self._local.conn = None
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def record(self, action: str, req: bytes, resp: bytes, request_json: dict[str, Any] | None, response_json: Any) -> None:
        n = 0
        if action == "ReceiveMessage":
            n = len((response_json or {}).get("Messages", []) or [])
        elif request_json and isinstance(request_json.get("Entries"), list):
            n = len(request_json["Entries"])
        queue = str((request_json or {}).get("QueueUrl", "")).rsplit("/", 1)[-1]
        role = "dlq" if queue.endswith("dlq") else "input" if queue.endswith("-in") else "results" if queue.endswith("-out") else "?"
        with self.lock:
            self.calls[self.phase][action] += 1
            self.by_queue[self.phase][f"{action}@{role}"] += 1
            self.entries[self.phase][action] += n
            self.billed[self.phase] += max(1, math.ceil(max(len(req), len(resp) if action == "ReceiveMessage" else 0) / 65536))
            if action == "ReceiveMessage" and n == 0:
                self.empty[self.phase] += 1

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                target = self.headers.get("X-Amz-Target", "")
                req_json = None
                if target:
                    action = target.split(".")[-1]
                    try:
                        req_json = json.loads(body or b"{}")
                    except ValueError:
                        pass
                else:  # query protocol
                    action = parse_qs(body.decode(errors="replace")).get("Action", ["?"])[0]
                status, resp_headers, data = proxy.forward("POST", self.path, headers, body)
                resp_json = None
                if action == "ReceiveMessage" and target:
                    try:
                        resp_json = json.loads(data or b"{}")
                    except ValueError:
                        pass
                if status < 300:
                    proxy.record(action, body, data, req_json, resp_json)
                self.send_response(status)
                for k, v in resp_headers:
                    if k.lower() not in ("content-length", "connection", "transfer-encoding", "date", "server"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST

        return Handler


# --------------------------------------------------------------------------------------------- a run


def _spec(n: int, job_type: str) -> BatchSpec:
    # The example's shape (customers × job types × periods), sized to n: ⌈n/9⌉ customers.
    customers = [f"cust-{i:05d}" for i in range(math.ceil(n / 9))]
    return BatchSpec.from_dict({
        "name": f"rpp{uuid.uuid4().hex[:6]}",
        "dimensions": {"customer": customers, "job_type": [job_type], "period": ["daily", "weekly", "monthly",
                                                                                    "q1", "q2", "q3", "q4", "h1", "h2"]},
        "queues": {"input": "x", "results": "y"}, "target_payloads_per_shard": 2500, "max_shards": 64,
        "max_payloads": 1_000_000,
    })


def fan_out(client: Any, url: str, plan: Plan, limit: int) -> int:
    """Send the plan's payloads shard by shard (each shard as the fan-out task sends it)."""
    sent = 0
    for shard in plan.shards():
        items = []
        for kb in plan.iter_bodies(shard):
            if sent + len(items) >= limit:
                break
            items.append(kb)
        send_bodies(client, url, items, max_in_flight=4)
        sent += len(items)
        if sent >= limit:
            break
    return sent


def start_workers(proxy_url: str, urls: Any, n: int, concurrency: int, handler_ms: float) -> list[subprocess.Popen]:
    env = dict(os.environ, BATCHQ_SQS_ENDPOINT=proxy_url, BATCHQ_BENCH_HANDLER_MS=str(handler_ms),
               AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1",
               PYTHONPATH=os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]))
    handler_module = "_bench_handlers"
    argv = [sys.executable, "-m", "batchq.cli", "--log-level", "WARNING", "worker", "--queue", urls.input,
            "--results-queue", urls.results, "--handlers", handler_module, "--no-entry-points",
            "--concurrency", str(concurrency), "--grace-period", "10", "--stats-json", *EXTRA_WORKER_ARGS]
    return [subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL) for _ in range(n)]


def start_drainer(proxy_url: str, urls: Any, sink: str) -> subprocess.Popen:
    env = dict(os.environ, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1")
    argv = [sys.executable, "-m", "batchq.cli", "--log-level", "WARNING", "drain", "--endpoint-url", proxy_url,
            "--queue", urls.results, "--sink", sink]
    return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)


def stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            p.kill()
            p.communicate()


def wait_ready(proxy: CountingProxy, phase: str, n: int, timeout: float = 60) -> None:
    """Until ``n`` processes made their first ReceiveMessage (their start-up calls are over)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with proxy.lock:
            if proxy.calls[phase]["ReceiveMessage"] >= n:
                return
        time.sleep(0.2)
    raise RuntimeError("consumers did not start")


def idle_per_role(proxy: CountingProxy, phase: str, idle_s: float, workers: int) -> dict[str, float]:
    """Idle requests per hour of the drainer (it alone calls the results queue while idle) and of one
    worker (the input queue's calls, shared by ``workers``)."""
    roles: Counter = Counter()
    for key, n in proxy.by_queue[phase].items():
        roles[key.rsplit("@", 1)[-1]] += n
    return {
        "idle_drainer_requests_per_hour": round(roles["results"] * 3600 / idle_s, 1),
        "idle_worker_requests_per_hour": round(roles["input"] / max(workers, 1) * 3600 / idle_s, 1),
    }


def idle_only(ep_url: str, direct: Any, args: argparse.Namespace) -> dict[str, Any]:
    """``--idle-only``: workers and a ``batchq drain`` on empty queues for ``--idle-seconds`` (after their
    first receive), nothing else: what each costs per hour doing nothing."""
    proxy = CountingProxy(ep_url)
    tag = uuid.uuid4().hex[:6]
    urls = ensure_queues(direct, QueueSpec(input=f"rpp-{tag}-in", results=f"rpp-{tag}-out", visibility_timeout_s=120, max_receive_count=5))
    sink = f"sqlite:///{tempfile.mkdtemp(prefix='batchq-rpp-')}/sink.db"
    procs: list[subprocess.Popen] = []
    try:
        proxy.phase = "start"
        procs = start_workers(proxy.url, urls, args.workers, args.concurrency, args.handler_ms)
        procs.append(start_drainer(proxy.url, urls, sink))
        wait_ready(proxy, "start", len(procs))
        time.sleep(2)  # every thread's first receive is out
        proxy.phase = "idle"
        time.sleep(args.idle_seconds)
        proxy.phase = "stopping"
    finally:
        stop(procs)
        proxy.close()
        for url in urls.to_dict().values():
            with contextlib.suppress(Exception):
                delete_queue(direct, url)
    return {**idle_per_role(proxy, "idle", args.idle_seconds, args.workers), "idle_by_action": dict(proxy.by_queue["idle"]), "idle_seconds": args.idle_seconds}


def one_run(ep_url: str, direct: Any, n: int, mode: str, args: argparse.Namespace, idle_s: float) -> dict[str, Any]:
    proxy = CountingProxy(ep_url)
    counted = boto3_client(proxy.url)
    tag = uuid.uuid4().hex[:6]
    urls = ensure_queues(direct, QueueSpec(input=f"rpp-{tag}-in", results=f"rpp-{tag}-out", visibility_timeout_s=120,
                                           max_receive_count=5))
    sink = f"sqlite:///{tempfile.mkdtemp(prefix='batchq-rpp-')}/sink.db"
    plan = Plan(_spec(n, "bench-io" if args.handler_ms > 0 else "bench-noop"), f"run-{tag}")
    procs: list[subprocess.Popen] = []
    stop_sensor = threading.Event()

    def sensor() -> None:
        while not stop_sensor.wait(args.sensor_poke):
            get_snapshot(counted, urls.input, urls.input_dlq)

    try:
        proxy.phase = "run"
        t0 = time.monotonic()
        if mode == "shallow":
            procs = start_workers(proxy.url, urls, args.workers, args.concurrency, args.handler_ms)
            procs.append(start_drainer(proxy.url, urls, sink))
            wait_ready(proxy, "run", len(procs))
        threading.Thread(target=sensor, daemon=True).start()
        sent = fan_out(counted, urls.input, plan, n)
        fanout_s = time.monotonic() - t0
        if mode == "deep":
            procs = start_workers(proxy.url, urls, args.workers, args.concurrency, args.handler_ms)
            procs.append(start_drainer(proxy.url, urls, sink))
        deadline = time.monotonic() + args.timeout
        empty_polls = 0
        while empty_polls < 2:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{mode} n={n}: not drained within {args.timeout}s")
            empty = get_snapshot(direct, urls.input).backlog == 0 and get_snapshot(direct, urls.results).backlog == 0
            empty_polls = empty_polls + 1 if empty else 0
            time.sleep(0.5)
        run_s = time.monotonic() - t0
        stop_sensor.set()
        # Idle: the same consumers, nothing to do (between runs).
        proxy.phase = "idle"
        time.sleep(idle_s)
        proxy.phase = "stopping"
    finally:
        stop_sensor.set()
        stop(procs)
        proxy.close()
        for url in urls.to_dict().values():
            with contextlib.suppress(Exception):  # best effort: the endpoint is discarded anyway
                delete_queue(direct, url)
    run_calls = proxy.calls["run"]
    total = sum(run_calls.values())
    idle_total = sum(proxy.calls["idle"].values())
    consumers = args.workers + 1  # workers + drainer
    idle_per_hour = idle_total / consumers * 3600 / idle_s if idle_s else None
    recv = run_calls["ReceiveMessage"]
    return {
        "mode": mode, "payloads": sent, "requests": total, "billed": proxy.billed["run"],
        "per_payload": round(total / sent, 3), "billed_per_payload": round(proxy.billed["run"] / sent, 3),
        "by_action": dict(run_calls),
        "by_queue": dict(proxy.by_queue["run"]),
        "messages_per_receive": round(proxy.entries["run"]["ReceiveMessage"] / max(recv, 1), 2),
        "empty_receives": proxy.empty["run"],
        "entries_per_send_batch": round(proxy.entries["run"]["SendMessageBatch"] / max(run_calls["SendMessageBatch"], 1), 2),
        "entries_per_delete_batch": round(proxy.entries["run"]["DeleteMessageBatch"] / max(run_calls["DeleteMessageBatch"], 1), 2),
        "fanout_s": round(fanout_s, 1), "run_s": round(run_s, 1),
        "idle_requests_per_hour_per_consumer": None if idle_per_hour is None else round(idle_per_hour, 1),
        "idle_by_action": dict(proxy.by_queue["idle"]),
        "idle_seconds": idle_s,
        **(idle_per_role(proxy, "idle", idle_s, args.workers) if idle_s else {}),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--payloads", default="1000,20000", help="comma-separated run sizes (default 1000,20000)")
    ap.add_argument("--modes", default="deep,shallow")
    ap.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    ap.add_argument("--concurrency", type=int, default=4, help="handler threads per worker (default 4)")
    ap.add_argument("--handler-ms", type=float, default=20.0, help="handler time (default 20 ms, bench-io)")
    ap.add_argument("--sensor-poke", type=float, default=10.0, help="drain sensor poll interval (default 10 s)")
    ap.add_argument("--idle-seconds", type=float, default=60.0, help="idle window measured after the first run")
    ap.add_argument("--timeout", type=float, default=900.0)
    ap.add_argument("--prefer", default="localstack", choices=["localstack", "moto"])
    ap.add_argument("--worker-arg", action="append", default=[],
                    help="extra option for every worker process, e.g. --worker-arg=--batch-wait-ms=200")
    ap.add_argument("--idle-only", action="store_true", help="measure only idle consumers (workers and one batchq drain) for --idle-seconds")
    args = ap.parse_args()
    EXTRA_WORKER_ARGS.extend(args.worker_arg)
    os.environ.setdefault("BATCHQ_BENCH_HANDLER_MS", str(args.handler_ms))
    sizes = [int(x) for x in args.payloads.split(",")]
    modes = args.modes.split(",")
    out: dict[str, Any] = {"prices_taken": PRICES_TAKEN}
    with sqs_endpoint(prefer=args.prefer) as ep:
        direct = boto3_client(ep)
        out.update(endpoint=ep.kind, worker_args=args.worker_arg, workers=args.workers, concurrency=args.concurrency, handler_ms=args.handler_ms)
        if args.idle_only:
            r = idle_only(ep.url, direct, args)
            print(f"idle: batchq drain {r['idle_drainer_requests_per_hour']:.0f} requests/hour, a worker "
                  f"{r['idle_worker_requests_per_hour']:.0f} requests/hour ({r['idle_by_action']} in {args.idle_seconds:.0f}s)", flush=True)
            out.update(r)
            print(json.dumps(out))
            return 0
        idle_done = False
        for n in sizes:
            for mode in modes:
                idle_s = args.idle_seconds if not idle_done else 0.0
                r = one_run(ep.url, direct, n, mode, args, idle_s)
                idle_done = True
                log(f"{mode:8s} {r['payloads']:6d} payloads: {r['per_payload']:.3f} req/payload "
                    f"(billed {r['billed_per_payload']:.3f}); {r['messages_per_receive']} msg/receive, "
                    f"{r['empty_receives']} empty receives, send batch {r['entries_per_send_batch']}, "
                    f"delete batch {r['entries_per_delete_batch']}; {r['by_queue']}; run {r['run_s']}s")
                print(f"{mode} {n}: {r['per_payload']:.3f} requests/payload", flush=True)
                out[f"{mode}_{n}"] = r
                if r["idle_requests_per_hour_per_consumer"] is not None:
                    per_hour = r["idle_requests_per_hour_per_consumer"]
                    out["idle_requests_per_hour_per_consumer"] = per_hour
                    out["idle_by_action"] = r["idle_by_action"]
                    out["idle_drainer_requests_per_hour"] = r.get("idle_drainer_requests_per_hour")
                    out["idle_worker_requests_per_hour"] = r.get("idle_worker_requests_per_hour")
                    out["idle_usd_per_month_per_consumer"] = round(per_hour * MONTH_HOURS * Prices().sqs_per_million / 1e6, 4)
                    print(f"idle: {per_hour:.1f} requests/hour per consumer = "
                          f"{per_hour * MONTH_HOURS:.0f}/month = ${out['idle_usd_per_month_per_consumer']}/month", flush=True)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
