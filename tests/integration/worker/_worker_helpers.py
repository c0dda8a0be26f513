"""Shared helpers for the worker integration tests: real payloads on a real queue, results read back."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from batchq.messages import WorkResult, parse_result
from batchq.plan import Plan
from batchq.spec import BatchSpec
from batchq.sqs import delete_messages, get_snapshot, receive_messages, send_bodies

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]


def make_plan(n: int, job_type: str, *, params: dict | None = None, batch: str | None = None) -> Plan:
    spec = BatchSpec.from_dict({
        "name": batch or f"b{uuid.uuid4().hex[:8]}",
        "dimensions": {"customer": [f"cust-{i:05d}" for i in range(n)]},
        "job_type": job_type,
        "params": params or {},
        "queues": {"input": "unused-in", "results": "unused-out"},
    })
    return Plan(spec, f"run-{uuid.uuid4().hex[:6]}")


def send_payloads(client, url: str, n: int, job_type: str, **kw: Any) -> list[str]:
    """Send ``n`` real WorkPayload bodies; return their keys."""
    plan = make_plan(n, job_type, **kw)
    items = [kb for shard in plan.shards() for kb in plan.iter_bodies(shard)]
    send_bodies(client, url, items, max_in_flight=4)
    return [k for k, _ in items]


def read_all(client, url: str, *, expect: int | None = None, timeout: float = 60.0, idle_polls: int = 2,
             delete: bool = True) -> list[dict[str, Any]]:
    """Receive (and delete) messages until ``expect`` are read, or the queue reads empty ``idle_polls``
    times in a row. Returns the raw messages."""
    got: list[dict[str, Any]] = []
    empty = 0
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msgs = receive_messages(client, url, wait_seconds=1, visibility_timeout=300,
                                max_messages=10)
        if not msgs:
            empty += 1
            if (expect is None or len(got) >= expect) and empty >= idle_polls:
                break
            continue
        empty = 0
        got.extend(msgs)
        if delete:
            delete_messages(client, url, msgs)
    return got


def read_results(client, url: str, **kw: Any) -> list[WorkResult]:
    return [parse_result(m["Body"]) for m in read_all(client, url, **kw)]


def read_dead_letters(client, url: str, **kw: Any) -> list[dict[str, Any]]:
    msgs: list[dict[str, Any]] = []
    deadline = time.monotonic() + kw.pop("timeout", 30.0)
    expect = kw.pop("expect", None)
    while time.monotonic() < deadline:
        r = client.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1,
                                   MessageAttributeNames=["All"], VisibilityTimeout=300)
        batch = r.get("Messages", [])
        msgs.extend(batch)
        if not batch and (expect is None or len(msgs) >= expect):
            break
    return msgs


def wait_for(cond: Callable[[], Any], timeout: float, interval: float = 0.2, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def backlog(client, url: str) -> int:
    return get_snapshot(client, url).backlog


def visible(client, url: str) -> int:
    return get_snapshot(client, url).visible


@contextlib.contextmanager
def running_worker(worker) -> Iterator[Any]:
    """Run ``worker.run()`` in a thread; stop it and join on exit (re-raising what run() raised)."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["stats"] = worker.run()
        except BaseException as exc:  # noqa: BLE001
            box["error"] = exc

    t = threading.Thread(target=target, name="test-worker", daemon=True)
    t.start()
    try:
        yield worker
    finally:
        worker.stop()
        t.join(90)
        assert not t.is_alive(), "worker did not stop"
    if "error" in box:
        raise box["error"]


def subprocess_env(sqs_endpoint: str, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["BATCHQ_SQS_ENDPOINT"] = sqs_endpoint
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), str(REPO / "include"), env.get("PYTHONPATH", "")])
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def worker_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "batchq.cli", "--log-level", "INFO", "worker", *args]


def start_worker_process(sqs_endpoint: str, args: list[str], log_path: Path, **env: str) -> subprocess.Popen:
    log = open(log_path, "wb")  # noqa: SIM115 - the child process writes to it for its lifetime
    return subprocess.Popen(worker_cmd(*args), env=subprocess_env(sqs_endpoint, **env), stdout=log,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def log_events(log_path: Path, event: str) -> list[dict[str, Any]]:
    """Structured log events named ``event`` from a worker's log file."""
    out = []
    for line in log_path.read_text(errors="replace").splitlines():
        i = line.find("{")
        if i < 0:
            continue
        try:
            obj = json.loads(line[i:])
        except ValueError:
            continue
        if isinstance(obj, dict) and obj.get("event") == event:
            out.append(obj)
    return out
