"""The local autoscaler with real worker processes: 0 → N on a backlog, restart after a kill, back to 0."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from _worker_helpers import (
    log_events,
    read_all,
    read_results,
    send_payloads,
    subprocess_env,
    wait_for,
)
from batchq.sqs import get_snapshot
from batchq.worker.supervisor import Supervisor, worker_command

pytestmark = pytest.mark.integration


def test_scales_up_from_zero_restarts_dead_workers_and_scales_back_to_zero(sqs_endpoint, sqs_client, queue_spec_factory):
    _, urls = queue_spec_factory(visibility_timeout_s=4)
    keys = send_payloads(sqs_client, urls.input, 60, "t-echo", params={"sleep_s": 0.4})
    sup = Supervisor(
        sqs_client, urls.input,
        worker_command(["--queue", urls.input, "--results-queue", urls.results, "--handlers", "worker_testjobs",
                        "--no-entry-points", "--concurrency", "2", "--wait-seconds", "1", "--grace-period", "5"]),
        min_workers=0, max_workers=3, backlog_per_worker=10, poll_interval_s=0.5, scale_down_cooldown_s=2.0,
        stop_timeout_s=15, restart_backoff_s=0.5, min_uptime_s=0.0, env=subprocess_env(sqs_endpoint),
    )
    assert sup.step() == 3 and len(sup.running) == 3  # 60 waiting / 10 per worker = 6, clamped to max 3

    done = threading.Event()

    empty_since: list[float] = []

    def finished(s: Supervisor) -> bool:
        # Done when the backlog has read 0, with no worker running or still stopping, for longer than the
        # visibility timeout: a worker stopping on scale-down hands its prefetched messages back, and the
        # killed worker's come back only when their 4 s lease ends (LocalStack once read 0 meanwhile and
        # the test stopped the supervisor with 3 payloads still to do; in a real deployment the loop goes
        # on and scales up again).
        if get_snapshot(sqs_client, urls.input).backlog or s.running or s.stopping:
            empty_since.clear()
            return False
        empty_since.append(time.monotonic())
        return empty_since[-1] - empty_since[0] >= 6.0

    t = threading.Thread(target=lambda: (sup.run(until=finished), done.set()), daemon=True)
    t.start()
    try:
        # Kill one worker outright once results are flowing: the supervisor must replace it.
        wait_for(lambda: get_snapshot(sqs_client, urls.results).visible >= 5, 60, what="first results")
        victim = sup.pids[0]
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: sup.stats.restarted >= 1 and victim not in sup.pids and len(sup.running) >= 1, 20,
                 what="dead worker replaced")
        assert done.wait(120), f"did not scale back to zero: {sup.stats.history[-5:]}"
    finally:
        sup.stop()
        t.join(60)
    assert sup.stats.max_running == 3
    assert sup.stats.started >= 4  # 3 at first + the replacement
    assert not sup.running and not sup.stopping
    # Scale-down was graceful: every started worker that was not SIGKILLed exited by itself, cleanly.
    assert sup.stats.killed == 0
    assert len(sup.stats.stop_exit_codes) == sup.stats.started - sup.stats.restarted
    assert sup.stats.stop_exit_codes and set(sup.stats.stop_exit_codes) == {0}
    backlogs = [b for _, b, _ in sup.stats.history]
    assert backlogs[-1] == 0 and max(backlogs) >= 50
    results = read_results(sqs_client, urls.results, expect=60)
    assert set(keys) <= {r.key for r in results}  # nothing lost, even the killed worker's messages


def test_supervisor_sigterm_stops_every_worker_gracefully_holding_nothing(sqs_endpoint, sqs_client, queue_spec_factory, tmp_path):
    # Visibility 120 s: a message still held by a worker that did not hand it back would stay in flight.
    _, urls = queue_spec_factory(visibility_timeout_s=120)
    keys = send_payloads(sqs_client, urls.input, 40, "t-echo", params={"sleep_s": 0.5})
    log = tmp_path / "supervisor.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "batchq.cli", "--log-level", "INFO", "workers", "--min", "2", "--max", "2",
             "--poll-interval", "0.5", "--queue", urls.input, "--results-queue", urls.results, "--handlers",
             "worker_testjobs", "--no-entry-points", "--concurrency", "2", "--wait-seconds", "1", "--grace-period", "10"],
            env=subprocess_env(sqs_endpoint), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
        try:
            wait_for(lambda: get_snapshot(sqs_client, urls.results).visible >= 4, 60, what="results flowing")
            wait_for(lambda: len(log_events(log, "worker_process_started")) >= 2, 10, what="two workers started")
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(60)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert code == 0, log.read_text(errors="replace")[-3000:]
    pids = [e["pid"] for e in log_events(log, "worker_process_started")]
    assert len(pids) == 2
    for pid in pids:  # reaped by the supervisor: gone, not orphaned
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    # Each worker got SIGTERM (not SIGKILL) and stopped by itself.
    assert [e["signal"] for e in log_events(log, "worker_stopping")] == ["SIGTERM", "SIGTERM"]
    assert len(log_events(log, "worker_stopped")) == 2
    # Nothing held: no message in flight; every key has a result or is back on the queue.
    snap = get_snapshot(sqs_client, urls.input)
    assert snap.in_flight == 0
    left = {m["Body"] for m in read_all(sqs_client, urls.input, delete=False)}
    done = {r.key for r in read_results(sqs_client, urls.results)}
    from batchq.messages import parse_payload

    assert done | {parse_payload(b).key for b in left} == set(keys)
    assert snap.visible == len(left)


def test_supervisor_waits_for_the_queue_saying_so_and_starts_workers_once_it_exists(sqs_endpoint, sqs_client, tmp_path):
    # Issue 20, item 3: `batchq workers` started before the DAG's ensure_queues waits instead of exiting.
    import uuid

    from batchq.spec import QueueSpec
    from batchq.sqs.queues import ensure_queues

    base = f"bqwait-{uuid.uuid4().hex[:10]}"
    queues = QueueSpec(input=f"{base}-in", results=f"{base}-out")
    log = tmp_path / "supervisor.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "batchq.cli", "--log-level", "INFO", "workers", "--min", "1", "--max", "1",
             "--poll-interval", "0.5", "--queue", queues.input, "--results-queue", queues.results, "--handlers",
             "worker_testjobs", "--no-entry-points", "--wait-seconds", "1", "--grace-period", "5"],
            env=subprocess_env(sqs_endpoint), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
        urls = None
        try:
            wait_for(lambda: log_events(log, "waiting_for_queue"), 60, what="the supervisor saying it waits")
            assert proc.poll() is None, log.read_text(errors="replace")
            assert log_events(log, "waiting_for_queue")[0]["queue"] == queues.input
            assert not log_events(log, "worker_process_started")
            urls = ensure_queues(sqs_client, queues)
            wait_for(lambda: log_events(log, "worker_process_started"), 60, what="a worker once the queue exists")
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(60) == 0, log.read_text(errors="replace")[-3000:]
        finally:
            if proc.poll() is None:
                proc.kill()
            for url in (urls.to_dict().values() if urls else ()):
                sqs_client.delete_queue(QueueUrl=url)


def test_a_single_worker_keeps_its_clear_error_when_the_queue_does_not_exist(sqs_endpoint, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "batchq.cli", "worker", "--queue", "bq-never-created-in", "--results-queue",
         "bq-never-created-out", "--handlers", "worker_testjobs", "--no-entry-points"],
        env=subprocess_env(sqs_endpoint), capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL, check=False,
    )
    assert proc.returncode == 2
    assert "queue 'bq-never-created-in' does not exist" in proc.stderr
