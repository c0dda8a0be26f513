"""TokenBucket: exact long-run rate, burst, back-pressure pause and recovery — on a fake clock."""

from __future__ import annotations

import threading

import pytest
from batchq.drain.limiter import TokenBucket


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.now += s


def bucket(rate, **kw) -> tuple[TokenBucket, FakeClock]:
    clock = FakeClock()
    return TokenBucket(rate, clock=clock, sleep=clock.sleep, **kw), clock


@pytest.mark.parametrize("rate", [5.0, 50.0, 333.0])
def test_long_run_rate_is_exact_after_the_burst(rate):
    tb, clock = bucket(rate, burst=10)
    start = clock.now
    total = 0
    for _ in range(200):
        tb.acquire(10)
        total += 10
    elapsed = clock.now - start
    # The first `burst` tokens are free; everything after is paid for at `rate`.
    assert elapsed == pytest.approx((total - 10) / rate, rel=1e-9)


def test_burst_is_available_at_once_and_refills():
    tb, clock = bucket(10.0, burst=10)
    assert tb.acquire(10) == 0
    assert tb.acquire(1) == pytest.approx(0.1)
    clock.now += 60  # idle: refills to the burst, never beyond
    assert tb.acquire(10) == 0
    assert tb.acquire(5) == pytest.approx(0.5)


def test_batch_bigger_than_burst_goes_into_debt():
    tb, _ = bucket(10.0, burst=1)
    assert tb.acquire(1) == 0
    assert tb.acquire(20) == pytest.approx(2.0)
    assert tb.acquire(1) == pytest.approx(0.1)


def test_unlimited_never_waits_but_honours_pauses():
    tb, _ = bucket(None)
    assert all(tb.acquire(10) == 0 for _ in range(1000))
    tb.backpressure(3.0)
    assert tb.acquire(1) == pytest.approx(3.0)
    assert tb.acquire(1) == 0


def test_backpressure_pauses_halves_and_recovers():
    tb, _ = bucket(100.0, burst=10, recover_step=0.25)
    tb.acquire(10)
    tb.backpressure(2.0)
    assert tb.current_rate == 50.0
    assert tb.backpressure_events == 1
    assert tb.acquire(10) >= 2.0
    tb.backpressure(None)
    assert tb.current_rate == 25.0
    for _ in range(2):
        tb.accepted()
    assert tb.current_rate == 75.0
    for _ in range(10):
        tb.accepted()
    assert tb.current_rate == 100.0  # never above the configured rate


def test_backpressure_has_a_floor():
    tb, _ = bucket(10.0, min_rate=2.0)
    for _ in range(20):
        tb.backpressure(None)
    assert tb.current_rate == 2.0


def test_shared_between_threads_counts_every_token():
    tb, _ = bucket(100.0, burst=10)
    lock = threading.Lock()
    waits = []

    def worker():
        for _ in range(50):
            with lock:  # the fake clock is not thread-safe; reservations are
                waits.append(tb.reserve(2))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # 400 tokens reserved at t=100 with 10 free: the last one is due (400 - 10) / 100 s later.
    assert max(waits) == pytest.approx(3.9)


@pytest.mark.parametrize("bad", [0, -1])
def test_rejects_non_positive_rate(bad):
    with pytest.raises(ValueError, match="rate must be > 0"):
        TokenBucket(bad)


def test_rate_on_a_real_clock_is_neither_above_nor_far_below_max_rate():
    """Real clock, real sleeps, 4 threads sharing one bucket: the rate never exceeds ``rate`` (lower
    bound on the time) and the limiter does not over-throttle (generous upper bound: the CPU is shared)."""
    import time

    rate, burst, per_thread, threads_n = 200.0, 10, 40, 4
    tb = TokenBucket(rate, burst=burst)
    started = time.monotonic()
    threads = [threading.Thread(target=lambda: [tb.acquire(1) for _ in range(per_thread)]) for _ in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    ideal = (per_thread * threads_n - burst) / rate  # 0.75 s
    assert elapsed >= ideal * 0.95, elapsed
    assert elapsed <= ideal * 2 + 1.0, f"{elapsed:.2f}s for an ideal {ideal:.2f}s: the limiter over-throttles"
