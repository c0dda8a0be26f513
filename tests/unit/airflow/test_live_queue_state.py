"""The live queue state's budget, on real threads: single flight, a shared cache, a total deadline."""

from __future__ import annotations

import asyncio
import threading
import time


from batchq.airflow.views.live import LiveQueueState


class Gate:
    """A probe that blocks until released and counts its calls (an SQS that does not answer)."""

    def __init__(self):
        self.release = threading.Event()
        self.calls = 0

    def __call__(self, item):
        self.calls += 1
        if not self.release.wait(timeout=30):
            raise TimeoutError("never released")
        return {"item": item}


def test_many_requests_during_an_outage_cost_one_probe_per_spec_and_return_by_the_deadline():
    gate = Gate()
    live = LiveQueueState(gate, ttl_s=60)

    async def many():
        return await asyncio.gather(*(live.answers({"a": "spec-a", "b": "spec-b"}, deadline_s=0.5) for _ in range(50)))

    t0 = time.monotonic()
    answers = asyncio.run(many())
    elapsed = time.monotonic() - t0
    assert elapsed < 2.0  # 50 concurrent requests, each within its 0.5 s deadline
    assert gate.calls == 2 and live.probes == 2  # one probe per spec, shared by all 50
    assert all(a["a"].result is None and a["a"].last_ok_at is None for a in answers)

    gate.release.set()
    deadline = time.monotonic() + 5
    while live._inflight and time.monotonic() < deadline:
        time.sleep(0.01)
    (answer,) = asyncio.run(live.answers({"a": "spec-a"}, deadline_s=0.5)).values()
    assert answer.result.value == {"item": "spec-a"} and answer.last_ok_at is not None
    assert live.probes == 2  # served from the cache


def test_a_failure_is_cached_too_and_expires():
    now = [1000.0]
    calls = []

    def failing(item):
        calls.append(item)
        raise ConnectionError("no route")

    live = LiveQueueState(failing, ttl_s=10, clock=lambda: now[0])
    first = asyncio.run(live.answers({"a": 1}, deadline_s=2))["a"]
    assert isinstance(first.result.error, ConnectionError)
    asyncio.run(live.answers({"a": 1}, deadline_s=2))
    assert len(calls) == 1  # within the TTL: the failure answers, no new probe
    now[0] += 11
    asyncio.run(live.answers({"a": 1}, deadline_s=2))
    assert len(calls) == 2


def test_probe_clients_try_once_with_short_timeouts():
    from botocore.config import Config

    from batchq.airflow.views.live import PROBE_CONNECT_TIMEOUT_S, PROBE_READ_TIMEOUT_S, probe_config
    from batchq.sqs.client import botocore_config

    config = probe_config(botocore_config())
    assert config.retries["total_max_attempts"] == 1
    assert (config.connect_timeout, config.read_timeout) == (PROBE_CONNECT_TIMEOUT_S, PROBE_READ_TIMEOUT_S)
    # A connection's own botocore config cannot bring retries back.
    assert probe_config(botocore_config().merge(Config(retries={"mode": "standard", "total_max_attempts": 10}))).retries["total_max_attempts"] == 1
