"""Adaptive prefetch: the depth rule, the duration average, its config, and early flushes of results."""

from __future__ import annotations

import threading
import time

import pytest
from batchq.cli import build_parser
from batchq.cli.worker import worker_argv
from batchq.worker import WorkerConfig
from batchq.worker.batcher import MicroBatcher
from batchq.worker.prefetch import DurationAverage, prefetch_limit


@pytest.mark.parametrize(("concurrency", "avg", "horizon", "cap", "expected"), [
    (1, 0.020, 1.0, 10, 10),     # short jobs: capped at ten, one ReceiveMessage worth
    (1, 0.200, 1.0, 10, 5),      # what one thread starts within the horizon
    (1, 0.300, 1.0, 10, 4),      # rounded up
    (4, 0.500, 1.0, 10, 8),
    (1, 1.0, 1.0, 10, 1),        # jobs as long as the horizon: the old rule, prefetch = concurrency
    (2, 300.0, 1.0, 10, 2),      # long jobs never hoard
    (16, 0.001, 1.0, 10, 16),    # concurrency above the cap is still the floor
    (1, None, 1.0, 10, 1),       # duration not known yet
    (3, 0.010, 0.0, 10, 3),      # horizon 0: adapting off
    (1, 0.0, 1.0, 10, 10),       # instant handlers
    (1, 0.020, 1.0, 0, 1),
])
def test_prefetch_limit(concurrency, avg, horizon, cap, expected):
    assert prefetch_limit(concurrency, avg, horizon, cap) == expected


def test_prefetch_limit_is_monotonic_and_bounded():
    for c in (1, 2, 4, 8, 12):
        values = [prefetch_limit(c, d / 1000, 1.0, 10) for d in range(1, 3000, 7)]
        assert values == sorted(values, reverse=True)  # longer jobs never get a deeper buffer
        assert all(c <= v <= max(c, 10) for v in values)


def test_prefetch_limit_rejects_bad_input():
    for kwargs in ({"concurrency": 0}, {"horizon_s": -1}, {"cap": -1}):
        with pytest.raises(ValueError):
            prefetch_limit(**{"concurrency": 1, "avg_handler_s": 0.1, **kwargs})


def test_duration_average_waits_for_samples_then_follows_the_trend():
    avg = DurationAverage(alpha=0.5, min_samples=3)
    avg.add(0.01)
    avg.add(0.03)
    assert avg.value is None and avg.count == 2  # two quick jobs do not open a deep buffer yet
    avg.add(0.02)
    assert avg.value == pytest.approx(0.02)
    for _ in range(20):
        avg.add(2.0)  # the jobs became slow: the average follows, and prefetch falls back
    assert avg.value == pytest.approx(2.0, rel=1e-4)
    assert prefetch_limit(1, avg.value) == 1
    with pytest.raises(ValueError):
        avg.add(-1)
    with pytest.raises(ValueError):
        DurationAverage(alpha=0)


def test_config_prefetch_is_adaptive_unless_fixed():
    assert not WorkerConfig("q", "r", concurrency=2).prefetch_fixed
    assert WorkerConfig("q", "r", concurrency=2, prefetch=1).prefetch_fixed
    off = WorkerConfig("q", "r", concurrency=2, prefetch_horizon_s=0)
    assert off.prefetch_fixed and off.prefetch == 2
    for bad in ({"prefetch_horizon_s": -0.5}, {"prefetch_cap": 11}, {"prefetch_cap": -1}):
        with pytest.raises(ValueError):
            WorkerConfig("q", "r", **bad)


def test_prefetch_horizon_option_reaches_the_config_and_the_supervisor():
    args = build_parser().parse_args(["workers", "--queue", "in", "--results-queue", "out", "--prefetch-horizon", "0.25"])
    again = build_parser().parse_args(["worker", *worker_argv(args)])
    assert again.prefetch_horizon == 0.25
    assert build_parser().parse_args(["worker", "--queue", "q"]).prefetch_horizon == 1.0


def test_sequential_items_share_a_batch_and_flush_soon_ends_the_wait():
    batches: list[tuple[float, list[int]]] = []
    lock = threading.Lock()

    def flush(b):
        with lock:
            batches.append((time.monotonic(), list(b)))

    # One handler thread finishing a job every 20 ms: the wait groups successive results in one call.
    mb = MicroBatcher(flush, max_items=10, max_wait_s=0.5, workers=1)
    for i in range(6):
        mb.put(i)
        time.sleep(0.02)
    # ... and when the worker goes idle, what is pending is flushed without waiting out max_wait_s.
    mb.put(99)
    t_idle = time.monotonic()
    mb.flush_soon()
    deadline = time.monotonic() + 5
    while sum(len(b) for _, b in batches) < 7 and time.monotonic() < deadline:
        time.sleep(0.002)
    assert mb.close(5)
    items = [x for _, b in batches for x in b]
    assert sorted(items) == [0, 1, 2, 3, 4, 5, 99]
    assert [b for _, b in batches] == [[0, 1, 2, 3, 4, 5, 99]]
    assert batches[0][0] - t_idle < 0.2  # flushed at once, not 0.5 s after the batch's first item
    mb2 = MicroBatcher(flush, max_items=10, max_wait_s=0.05, workers=1)
    mb2.flush_soon()  # nothing pending: no empty flush
    assert mb2.close(5) and mb2.flushes == 0


def test_should_receive_waits_for_a_whole_prefetch_unless_the_handlers_would_starve():
    from batchq.worker.prefetch import should_receive

    assert not should_receive(free=5, prefetch=10, buffered=3)  # half free: keep waiting for a full batch
    assert should_receive(free=10, prefetch=10, buffered=3)  # a whole batch of ten is free
    assert should_receive(free=10, prefetch=12, buffered=0)  # never ask for more than ten at once
    assert should_receive(free=1, prefetch=10, buffered=0)  # nothing buffered: refill at once
    assert not should_receive(free=0, prefetch=1, buffered=0)
