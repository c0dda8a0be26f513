"""``batchq drain --until-empty`` and ``batchq ledger`` as a user runs them (subprocesses, real endpoint)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from batchq.store import ResultsStore

from tests.integration.drain._helpers import backlog, make_results, put, sink_rows

pytestmark = pytest.mark.integration


def _cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "batchq.cli", *args], check=False, capture_output=True, text=True, timeout=timeout)


def test_drain_until_empty_then_ledger(sqs_client, sqs_endpoint, make_queue, tmp_path):
    url = make_queue()
    results = make_results(40, failed_every=20)
    batch = results[0].batch
    put(sqs_client, url, results, copies=2, extra_bodies=["{oops"])
    sink = f"sqlite:///{tmp_path}/sink.db"

    done = _cli("drain", "--endpoint-url", sqs_endpoint, "--queue", url, "--sink", sink, "--until-empty", "--wait", "1", "--max-rate", "500")
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["received"] >= 81 and report["quarantined"] >= 1
    assert backlog(sqs_client, url) == 0
    assert len(sink_rows(ResultsStore(sink), batch)) == 40

    # 2 failures: fails with 0 tolerated (exit 1), passes with 5% tolerated (exit 0) and closes the run.
    strict = _cli("ledger", "--store", sink, "--batch", batch, "--run-id", "run-1", "--expected", "40")
    assert strict.returncode == 1, strict.stderr
    assert "2 failed" in strict.stderr and "First failed keys" in strict.stderr
    ok = _cli("ledger", "--store", sink, "--batch", batch, "--run-id", "run-1", "--tolerated-failure-percentage", "5", "--close")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["outcome"] == "succeeded"
    assert ResultsStore(sink).get_run(batch, "run-1")["outcome"] == "succeeded"
    # A run with keys still missing is "open" (exit 3).
    open_ = _cli("ledger", "--store", sink, "--batch", batch, "--run-id", "run-1", "--expected", "41")
    assert open_.returncode == 3 and json.loads(open_.stdout)["pending"] == 1
