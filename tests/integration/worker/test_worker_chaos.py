"""Chaos: 2,000 payloads through a supervisor-managed pool while worker processes are SIGKILLed at
random. At-least-once means every key ends with a result; duplicates are allowed, counted and printed."""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections import Counter

import pytest

from _worker_helpers import send_payloads, subprocess_env
from batchq.contract import parse_result
from batchq.sqs import delete_messages, get_snapshot, receive_messages
from batchq.worker.supervisor import Supervisor, worker_command

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(600)]

PAYLOADS = 2000
MIN_KILLS = 5
MAX_KILLS = 8


def test_sigkill_chaos_loses_nothing(sqs_endpoint, sqs_client, queue_spec_factory):
    rng = random.Random(int(os.environ.get("BATCHQ_CHAOS_SEED", "20261129")))
    # Short visibility so the work of a killed worker reappears quickly. Eight threads per worker make
    # receives of several messages (moto's calls cost O(queue depth), so fewer calls matter there).
    _, urls = queue_spec_factory(visibility_timeout_s=5, max_receive_count=10)
    t0 = time.monotonic()
    keys = set(send_payloads(sqs_client, urls.input, PAYLOADS, "t-echo", params={"sleep_s": 0.12}))
    sent_s = time.monotonic() - t0
    assert len(keys) == PAYLOADS

    sup = Supervisor(
        sqs_client, urls.input,
        worker_command(["--queue", urls.input, "--results-queue", urls.results, "--handlers", "worker_testjobs",
                        "--no-entry-points", "--concurrency", "8", "--wait-seconds", "1", "--grace-period", "5"]),
        min_workers=0, max_workers=3, backlog_per_worker=100, poll_interval_s=1.0, scale_down_cooldown_s=3.0,
        stop_timeout_s=20, restart_backoff_s=0.5, min_uptime_s=0.0, env=subprocess_env(sqs_endpoint),
    )
    seen: Counter[str] = Counter()
    stop = threading.Event()

    def collect() -> None:
        # Plays the drainer: consume results as they arrive, so the results queue stays shallow.
        while not stop.is_set():
            msgs = receive_messages(sqs_client, urls.results, wait_seconds=1, visibility_timeout=60)
            for m in msgs:
                seen[parse_result(m["Body"]).key] += 1
            if msgs:
                delete_messages(sqs_client, urls.results, msgs)

    kills: list[tuple[float, int]] = []
    collector = threading.Thread(target=collect, daemon=True)
    collector.start()
    sup_thread = threading.Thread(target=lambda: sup.run(until=lambda s: stop.is_set()), daemon=True)
    sup_thread.start()
    deadline = time.monotonic() + 480
    try:
        while time.monotonic() < deadline and keys - set(seen):
            # At least MIN_KILLS while work remains, whatever the endpoint's speed: the pool (3 workers x
            # 8 threads, 120 ms jobs) needs >= 10 s for 2,000 payloads; the kills come every ~1 s, capped so
            # that restarts are not all the pool ever does on a slow endpoint.
            time.sleep(rng.uniform(0.7, 1.5) if len(kills) < MAX_KILLS else 0.5)
            pids = sup.pids
            if pids and len(kills) < MAX_KILLS and len(seen) > 0 and keys - set(seen):
                victim = rng.choice(pids)
                try:
                    os.kill(victim, signal.SIGKILL)
                    kills.append((round(time.monotonic() - t0, 1), victim))
                except ProcessLookupError:
                    pass
    finally:
        stop.set()
        sup_thread.join(60)
        collector.join(30)
    # Late duplicates still on the results queue count too.
    while True:
        msgs = receive_messages(sqs_client, urls.results, wait_seconds=1)
        if not msgs:
            break
        for m in msgs:
            seen[parse_result(m["Body"]).key] += 1
        delete_messages(sqs_client, urls.results, msgs)

    missing = keys - set(seen)
    duplicates = {k: n for k, n in seen.items() if n > 1}
    elapsed = time.monotonic() - t0
    print(f"\nchaos: {PAYLOADS} payloads (sent in {sent_s:.1f}s), {len(kills)} SIGKILLs at {kills}, "
          f"{sup.stats.started} worker starts, {sup.stats.restarted} deaths replaced, elapsed {elapsed:.1f}s")
    print(f"chaos: results {sum(seen.values())}, distinct keys {len(seen)}, missing {len(missing)}, "
          f"duplicated keys {len(duplicates)} (extra results {sum(n - 1 for n in duplicates.values())})")
    if duplicates:
        print("chaos: duplicates:", dict(sorted(duplicates.items())[:50]))
    assert len(kills) >= MIN_KILLS, f"only {len(kills)} kills before the run finished"
    assert not missing, f"{len(missing)} keys without a result: {sorted(missing)[:20]}"
    assert set(seen) == keys
    assert sup.stats.restarted >= MIN_KILLS
    assert get_snapshot(sqs_client, urls.input).backlog == 0
