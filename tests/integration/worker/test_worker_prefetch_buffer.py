"""Adaptive prefetch on a real SQS endpoint: short jobs deepen the buffer, every held message (started or
not) keeps its lease, and a stop hands the whole buffer back at once."""

from __future__ import annotations

import threading
import time

import pytest
from _worker_helpers import read_results, running_worker, send_payloads, wait_for
from batchq.sqs import get_snapshot
from batchq.worker import Worker, WorkerConfig
from batchq.worker.registry import Registry

pytestmark = pytest.mark.integration

QUICK_JOBS = 5
PAYLOADS = 30


def test_deep_prefetch_buffer_is_leased_and_fully_handed_back(sqs_client, queue_spec_factory):
    _, urls = queue_spec_factory(visibility_timeout_s=60)
    send_payloads(sqs_client, urls.input, PAYLOADS, "t-gate")
    gate = threading.Event()
    calls = {"n": 0}
    registry = Registry()

    @registry.job("t-gate")
    def gated(payload, ctx):
        calls["n"] += 1
        if calls["n"] > QUICK_JOBS:
            gate.wait(60)  # the running job holds the only handler thread: the buffer stops moving
        else:
            time.sleep(0.03)  # quick jobs: adaptive prefetch deepens to the cap
        return {"n": calls["n"]}

    worker = Worker(sqs_client, WorkerConfig(
        queue_url=urls.input, results_url=urls.results, concurrency=1, wait_seconds=1, grace_period_s=30,
        prefetch_horizon_s=1.0,
    ), registry=registry)
    stopper = None
    try:
        with running_worker(worker):
            # Settled: the gated job runs, no receive is in flight, and the buffer is too full for the
            # receiver to top it up (it refills once a whole prefetch is free), so nothing moves.
            wait_for(lambda: calls["n"] > QUICK_JOBS and worker._active == 1 + worker._buffered >= 7, 30,
                     interval=0.05, what="quick jobs done and a deep, settled buffer")
            time.sleep(0.3)
            assert worker.prefetch() == 10 and worker.stats.prefetch_max == 10
            depth = worker._buffered
            assert depth >= 6  # the old rule (prefetch <= concurrency) held at most one
            held = worker.leases.all()
            buffered = [lease for lease in held if lease.state == "buffered"]
            assert len(buffered) == depth and sum(lease.state == "running" for lease in held) == 1
            snap = get_snapshot(sqs_client, urls.input)
            assert snap.in_flight == depth + 1 and snap.visible == PAYLOADS - QUICK_JOBS - depth - 1

            # Heartbeat: every held message is due an extension here, started or not, and SQS accepts
            # each one (a lease it did not cover would be missing, or fail as lost).
            extended = worker.leases.renew_due(time.monotonic() + 60)
            assert extended == len(held) == depth + 1 and worker.leases.lost == 0
            assert all(lease.renewed_at > time.monotonic() + 50 for lease in buffered)

            # Stop while one job runs: every waiting message is visible again at once.
            stopper = threading.Thread(target=worker.shutdown, daemon=True)
            stopper.start()
            wait_for(lambda: worker.stats.returned == depth, 10, interval=0.05, what="the buffer handed back")
            snap = get_snapshot(sqs_client, urls.input)
            assert (snap.visible, snap.in_flight) == (PAYLOADS - QUICK_JOBS - 1, 1)
            gate.set()  # the running job finishes within the grace period
            stopper.join(60)
            assert not stopper.is_alive()
    finally:
        gate.set()
    stats = worker.stats
    assert stats.succeeded == QUICK_JOBS + 1 and stats.returned == depth and stats.retried == 0
    assert stats.received == stats.succeeded + stats.returned
    snap = get_snapshot(sqs_client, urls.input)
    assert (snap.visible, snap.in_flight) == (PAYLOADS - QUICK_JOBS - 1, 0)
    assert len(read_results(sqs_client, urls.results, expect=QUICK_JOBS + 1)) == QUICK_JOBS + 1


def test_long_jobs_keep_prefetch_at_the_concurrency(sqs_client, queue_spec_factory):
    _, urls = queue_spec_factory(visibility_timeout_s=60)
    send_payloads(sqs_client, urls.input, 12, "t-slow")
    registry = Registry()

    @registry.job("t-slow")
    def slow(payload, ctx):
        time.sleep(0.4)  # with a 0.2 s horizon this is a "long" job
        return {}

    worker = Worker(sqs_client, WorkerConfig(
        queue_url=urls.input, results_url=urls.results, concurrency=2, wait_seconds=1, grace_period_s=10,
        prefetch_horizon_s=0.2,
    ), registry=registry)
    peak = 0
    with running_worker(worker):
        wait_for(lambda: hasattr(worker, "leases"), 10, interval=0.01, what="worker started")
        deadline = time.monotonic() + 30
        while worker.stats.deleted < 8 and time.monotonic() < deadline:
            # Held and not finished (finished ones wait only for their result to be confirmed).
            peak = max(peak, sum(lease.state != "done" for lease in worker.leases.all()))
            time.sleep(0.02)
        assert worker.stats.deleted >= 8
    assert worker.stats.prefetch_max == 2 and peak <= 4  # 2 running + 2 prefetched, never more
