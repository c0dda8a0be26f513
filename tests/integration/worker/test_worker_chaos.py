"""Chaos: 600 payloads through a supervisor-managed pool while worker processes are SIGKILLed at
random. At-least-once means every key ends with a result; duplicates are allowed, counted and printed."""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections import Counter

import pytest
from _worker_helpers import make_plan, subprocess_env
from batchq.messages import parse_result
from batchq.sqs import delete_messages, get_snapshot, receive_messages, send_bodies
from batchq.worker.supervisor import Supervisor, worker_command

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(600)]

PAYLOADS = 600
MIN_KILLS = 5
FEED_DEPTH = 300
MAX_KILLS = 8
WORKER_CONCURRENCY = 8


def test_sigkill_chaos_loses_nothing(sqs_endpoint, sqs_client, queue_spec_factory):
    rng = random.Random(int(os.environ.get("BATCHQ_CHAOS_SEED", "20261129")))
    stop = threading.Event()
    # Short visibility so the work of a killed worker reappears soon (10 s: moto's slow calls must not
    # outlast the heartbeat's renewals). Eight threads per worker make
    # receives of several messages (moto's calls cost O(queue depth), so fewer calls matter there).
    _, urls = queue_spec_factory(visibility_timeout_s=10, max_receive_count=10)
    plan = make_plan(PAYLOADS, "t-echo", params={"sleep_s": 0.12})
    items = [kb for shard in plan.shards() for kb in plan.iter_bodies(shard)]
    keys = {k for k, _ in items}
    assert len(keys) == PAYLOADS
    t0 = time.monotonic()
    # All of them go in, but fed so that the backlog stays around FEED_DEPTH: moto's calls cost O(queue
    # depth), and a real batch is fanned out while workers already run anyway.
    send_bodies(sqs_client, urls.input, items[:FEED_DEPTH], max_in_flight=4)
    fed = {"n": FEED_DEPTH, "done_at": None}

    def feed() -> None:
        while fed["n"] < PAYLOADS and not stop.is_set():
            if get_snapshot(sqs_client, urls.input).backlog < FEED_DEPTH:
                chunk = items[fed["n"]: fed["n"] + 100]
                send_bodies(sqs_client, urls.input, chunk, max_in_flight=2)
                fed["n"] += len(chunk)
            else:
                stop.wait(0.3)
        fed["done_at"] = round(time.monotonic() - t0, 1)

    sup = Supervisor(
        sqs_client, urls.input,
        worker_command(["--queue", urls.input, "--results-queue", urls.results, "--handlers", "worker_testjobs",
                        "--no-entry-points", "--concurrency", str(WORKER_CONCURRENCY), "--wait-seconds", "1", "--grace-period", "5"]),
        min_workers=0, max_workers=3, backlog_per_worker=25, poll_interval_s=1.0, scale_down_cooldown_s=3.0,
        stop_timeout_s=20, restart_backoff_s=0.5, min_uptime_s=0.0, env=subprocess_env(sqs_endpoint),
    )
    seen: Counter[str] = Counter()
    statuses: Counter[str] = Counter()
    attempts: Counter[int] = Counter()

    def record(msgs) -> None:
        for m in msgs:
            r = parse_result(m["Body"])
            seen[r.key] += 1
            statuses[r.status] += 1
            attempts[r.attempts] += 1

    def collect() -> None:
        # Plays the drainer: consume results as they arrive, so the results queue stays shallow.
        while not stop.is_set():
            msgs = receive_messages(sqs_client, urls.results, wait_seconds=1, visibility_timeout=60)
            record(msgs)
            if msgs:
                delete_messages(sqs_client, urls.results, msgs)

    kills: list[tuple[float, int]] = []
    killed: set[int] = set()
    collector = threading.Thread(target=collect, daemon=True)
    collector.start()
    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    sup_thread = threading.Thread(target=lambda: sup.run(until=lambda s: stop.is_set()), daemon=True)
    sup_thread.start()
    deadline = time.monotonic() + 480
    try:
        while time.monotonic() < deadline and keys - set(seen):
            # At least MIN_KILLS while work remains, whatever the endpoint's speed: the pool (3 workers x
            # 8 threads, 120 ms jobs) needs >= 3 s for 600 payloads; the kills come every ~1 s, capped so
            # that restarts are not all the pool ever does on a slow endpoint.
            time.sleep(rng.uniform(0.7, 1.5) if len(kills) < MAX_KILLS else 0.5)
            pids = [p for p in sup.pids if p not in killed]  # not one already killed but not yet reaped
            if pids and len(kills) < MAX_KILLS and len(seen) > 0 and keys - set(seen):
                victim = rng.choice(pids)
                killed.add(victim)
                try:
                    os.kill(victim, signal.SIGKILL)
                    kills.append((round(time.monotonic() - t0, 1), victim))
                except ProcessLookupError:
                    pass
    finally:
        all_seen_s = round(time.monotonic() - t0, 1)
        stop.set()
        sup_thread.join(60)
        collector.join(30)
        feeder.join(30)
        stopped_s = round(time.monotonic() - t0, 1)
    # Late duplicates still on the results queue count too.
    while True:
        msgs = receive_messages(sqs_client, urls.results, wait_seconds=1)
        if not msgs:
            break
        record(msgs)
        delete_messages(sqs_client, urls.results, msgs)

    missing = keys - set(seen)
    duplicates = {k: n for k, n in seen.items() if n > 1}
    elapsed = time.monotonic() - t0
    print(f"\nchaos: {PAYLOADS} payloads (all fed by {fed['done_at']}s), {len(kills)} SIGKILLs at {kills}, "
          f"{sup.stats.started} worker starts, {sup.stats.restarted} deaths replaced, elapsed {elapsed:.1f}s")
    print(f"chaos: every key had a result at {all_seen_s}s; pool stopped at {stopped_s}s")
    print(f"chaos: results {sum(seen.values())}, distinct keys {len(seen)}, missing {len(missing)}, "
          f"duplicated keys {len(duplicates)} (extra results {sum(n - 1 for n in duplicates.values())})")
    print(f"chaos: statuses {dict(statuses)}, attempts {dict(sorted(attempts.items()))}")
    if duplicates:
        print("chaos: duplicates:", dict(sorted(duplicates.items())[:50]))
    assert len(kills) >= MIN_KILLS, f"only {len(kills)} kills before the run finished"
    assert not missing, f"{len(missing)} keys without a result: {sorted(missing)[:20]}"
    assert set(seen) == keys
    # Every handler succeeds: a kill may cost a redo, never a failed result.
    assert set(statuses) == {"succeeded"}, statuses
    # The kills hit work in flight: a killed worker's messages came back and were redone.
    assert any(n > 1 for n in attempts), f"no result with attempts > 1: no kill hit work in flight ({attempts})"
    # Duplicates come only from work a killed worker held (running + prefetched, at most
    # concurrency + 10 each), not from anything that runs on its own.
    extra = sum(n - 1 for n in duplicates.values())
    assert extra <= len(kills) * (WORKER_CONCURRENCY + 10), f"{extra} duplicate results for {len(kills)} kills"
    assert sup.stats.restarted >= MIN_KILLS
    assert get_snapshot(sqs_client, urls.input).backlog == 0
    # Nothing was dead-lettered on either side.
    assert get_snapshot(sqs_client, urls.input_dlq).backlog == 0
    assert get_snapshot(sqs_client, urls.results_dlq).backlog == 0
