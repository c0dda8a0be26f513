"""The worker as a real process: graceful SIGTERM with prefetched messages, and no Airflow anywhere."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
import uuid

import pytest
from _worker_helpers import (
    log_events,
    read_results,
    send_payloads,
    start_worker_process,
    subprocess_env,
    wait_for,
)
from batchq.plan import Plan
from batchq.spec import BatchSpec
from batchq.sqs import get_snapshot, send_bodies

pytestmark = pytest.mark.integration


def test_sigterm_returns_prefetched_messages_at_once_and_finishes_running_one(sqs_endpoint, sqs_client, queue_spec_factory, tmp_path):
    _, urls = queue_spec_factory(visibility_timeout_s=120)
    trace = tmp_path / "trace.txt"
    send_payloads(sqs_client, urls.input, 6, "t-echo", params={"sleep_s": 3, "trace_file": str(trace)})
    log = tmp_path / "worker.log"
    proc = start_worker_process(sqs_endpoint, [
        "--queue", urls.input, "--results-queue", urls.results, "--handlers", "worker_testjobs",
        "--no-entry-points", "--concurrency", "1", "--prefetch", "1", "--wait-seconds", "1",
        "--grace-period", "20",
    ], log)
    try:
        # One message running, one prefetched: both invisible, with a 120 s visibility timeout.
        wait_for(lambda: get_snapshot(sqs_client, urls.input).in_flight == 2 and trace.exists(), 30,
                 what="one running + one prefetched")
        assert get_snapshot(sqs_client, urls.input).visible == 4
        t_sig = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        # The prefetched message is visible again at once, not after 120 s.
        wait_for(lambda: get_snapshot(sqs_client, urls.input).visible == 5, 5, interval=0.1,
                 what="prefetched message returned")
        returned_after = time.monotonic() - t_sig
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert returned_after < 5
    snap = get_snapshot(sqs_client, urls.input)
    assert (snap.visible, snap.in_flight) == (5, 0)
    # The running handler was allowed to finish: its result is published and its input deleted.
    assert len(trace.read_text().splitlines()) == 1
    results = read_results(sqs_client, urls.results, expect=1)
    assert len(results) == 1 and results[0].status == "succeeded"
    returned = log_events(log, "messages_returned")
    assert sum(e["count"] for e in returned) == 1 and "prefetched" in returned[0]["why"]
    stopped = log_events(log, "worker_stopped")
    assert stopped and stopped[0]["succeeded"] == 1 and stopped[0]["returned"] == 1


BLOCKER = textwrap.dedent('''
    # Installed by the no-Airflow test: any attempt to import airflow fails, and is recorded.
    import os, sys
    class _NoAirflow:
        def find_spec(self, name, path=None, target=None):
            if name == "airflow" or name.startswith("airflow."):
                with open(os.environ["NO_AIRFLOW_LOG"], "a") as f:
                    f.write(name + "\\n")
                raise ImportError(f"airflow is blocked in this test (import of {name})")
            return None
    sys.meta_path.insert(0, _NoAirflow())
''')


def test_worker_runs_end_to_end_without_airflow(sqs_endpoint, sqs_client, queue_spec_factory, tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BLOCKER)
    attempts = tmp_path / "airflow-imports.txt"
    env = subprocess_env(sqs_endpoint, NO_AIRFLOW_LOG=str(attempts))
    env["PYTHONPATH"] = f"{site}:{env['PYTHONPATH']}"

    # 1. The blocker works, and importing the whole worker side pulls in no Airflow module.
    check = subprocess.run([sys.executable, "-c", textwrap.dedent('''
        import sys
        try:
            import airflow
        except ImportError as e:
            assert "blocked" in str(e), e
        else:
            raise SystemExit("blocker did not block")
        import batchq, batchq.worker, batchq.examples, batchq.metrics, batchq.cli, batchq.cli.worker
        import batchq.worker.lambda_adapter, batchq.worker.supervisor
        batchq.cli.build_parser()
        bad = sorted(m for m in sys.modules if m == "airflow" or m.startswith("airflow."))
        assert not bad, bad
        print("clean")
    ''')], env=env, capture_output=True, text=True, timeout=120, check=False)
    assert check.returncode == 0 and check.stdout.strip() == "clean", check.stderr
    attempts.unlink()  # the deliberate probe above

    # 2. A real worker process handles real payloads of all three example job types.
    _, urls = queue_spec_factory(visibility_timeout_s=60)
    spec = BatchSpec.from_dict({
        "name": f"noaf{uuid.uuid4().hex[:6]}",
        "dimensions": {"customer": ["cust-0001", "cust-0002"],
                       "job_type": ["classification", "segmentation", "use_case_analysis"],
                       "period": ["weekly"]},
        "params": {"lookback_days": 30, "model_version": "t"},
        "queues": {"input": "x", "results": "y"},
    })
    plan = Plan(spec, "run-1")
    items = [kb for shard in plan.shards() for kb in plan.iter_bodies(shard)]
    send_bodies(sqs_client, urls.input, items, max_in_flight=2)
    log = tmp_path / "worker.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "batchq.cli", "worker", "--queue", urls.input, "--results-queue", urls.results,
             "--handlers", "batchq.examples", "--no-entry-points", "--wait-seconds", "1", "--stats-json"],
            env=env, stdout=out, stderr=subprocess.STDOUT,
        )
        try:
            wait_for(lambda: get_snapshot(sqs_client, urls.results).visible >= 6 or proc.poll() is not None, 60,
                     what="6 results")
            assert proc.poll() is None, log.read_text()
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(30) == 0, log.read_text()
        finally:
            if proc.poll() is None:
                proc.kill()
    assert not attempts.exists(), f"something tried to import airflow: {attempts.read_text()}"
    results = read_results(sqs_client, urls.results, expect=6)
    assert sorted(r.key for r in results) == sorted(k for k, _ in items)
    by_type = {r.job_type: r for r in results}
    assert all(r.status == "succeeded" for r in results), [r.error for r in results if r.error]
    assert 0.5 < by_type["classification"].output["test_accuracy"] <= 1.0
    assert sum(by_type["segmentation"].output["sizes"]) == by_type["segmentation"].output["rows"]
    assert by_type["use_case_analysis"].output["recommended"] in ("churn_prevention", "upsell", "anomaly_review")
    assert '"succeeded": 6' in log.read_text()  # --stats-json
