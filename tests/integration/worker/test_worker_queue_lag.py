"""Queue lag end to end on a real endpoint: worker stamps SQS timestamps on results, ``batchq drain``
applies them (and sends its metrics to a real UDP StatsD listener), ``batchq ledger`` reports the run's
lag percentiles."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import worker_testjobs  # noqa: F401 - registers t-echo
from _worker_helpers import make_plan, running_worker, wait_for
from batchq.sqs import send_bodies
from batchq.worker import Worker, WorkerConfig

from tests.support.statsd_listener import StatsdListener

pytestmark = pytest.mark.integration

N = 30


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "batchq.cli", *args], check=False, capture_output=True, text=True, timeout=180)


def _value(line: str) -> float:
    return float(line.split(":", 1)[1].split("|")[0])


def test_lag_from_worker_to_ledger_and_drain_metrics(sqs_endpoint, sqs_client, queue_spec_factory, tmp_path):
    _, urls = queue_spec_factory(visibility_timeout_s=30)
    plan = make_plan(N, "t-echo")
    send_bodies(sqs_client, urls.input, [kb for shard in plan.shards() for kb in plan.iter_bodies(shard)], max_in_flight=4)
    worker = Worker(sqs_client, WorkerConfig(queue_url=urls.input, results_url=urls.results, concurrency=2, wait_seconds=1, grace_period_s=10))
    with running_worker(worker):
        wait_for(lambda: worker.stats.deleted >= N, 90, what=f"{N} inputs deleted")

    sink = f"sqlite:///{tmp_path}/sink.db"
    with StatsdListener() as listener:
        drained = _cli("drain", "--endpoint-url", sqs_endpoint, "--queue", urls.results, "--sink", sink, "--until-empty",
                       "--wait", "1", "--statsd-host", "127.0.0.1", "--statsd-port", str(listener.port))
        assert drained.returncode == 0, drained.stderr[-2000:]
        applied = listener.wait_for("batchq.drain.applied:", timeout=10)
        rate = listener.wait_for("batchq.drain.rate:", timeout=10)
    queue = urls.results.rsplit("/", 1)[-1]
    # The counter says what the drain committed, deliveries included: SQS is at-least-once (CI once saw
    # moto hand one result to two concurrent receives: 31 commits of 30 results; the ledger below still
    # counts each key once).
    report = json.loads(drained.stdout.strip().splitlines()[-1])
    assert sum(_value(x) for x in applied) == report["applied"] >= N, (applied, report)
    assert all(x.endswith(f"|c|#queue:{queue}") for x in applied), applied
    assert len(rate) == 1 and rate[0].startswith("batchq.drain.rate:") and "|g|" in rate[0] and _value(rate[0]) > 0

    shown = _cli("ledger", "--store", sink, "--batch", plan.spec.name, "--run-id", plan.run_id, "--expected", str(N))
    assert shown.returncode == 0, shown.stderr
    lag = json.loads(shown.stdout)["queue_lag"]
    print(shown.stderr.strip().splitlines()[-1])
    assert lag["source"] == "sqs-timestamps" and lag["results"] == N and lag["failures"] == 0
    for part in ("input_wait", "processing", "results_wait"):
        p = lag[part]
        assert p["count"] == N, (part, p)
        assert 0 <= p["p50"] <= p["p95"] <= p["max"], (part, p)
    # Everything happened inside the drain's span; all N were sent before the worker started.
    assert lag["input_wait"]["max"] <= lag["time_to_drain_s"]
    assert 1 <= lag["peak_depth"] <= N
    assert lag["age_source"] == "worker-receipt" and lag["oldest_age_s"] == lag["input_wait"]["max"]
    assert "queue lag (sqs-timestamps): input wait p50" in shown.stderr
