"""Retry backoff bounds and worker settings validation."""

from __future__ import annotations

import random

import pytest
from batchq.worker import WorkerConfig
from batchq.worker.retry import retry_visibility, retry_visibility_bound


def test_backoff_grows_with_receive_count_and_is_capped():
    random.seed(7)
    bounds = [retry_visibility_bound(n, 2.0, 60) for n in range(1, 8)]
    assert bounds == [2, 4, 8, 16, 32, 60, 60]
    for n, bound in enumerate(bounds, start=1):
        samples = [retry_visibility(n, 2.0, 60) for _ in range(200)]
        assert all(0 <= s <= bound for s in samples)
        assert max(samples) >= bound * 0.75  # jitter spreads over the whole range
    assert retry_visibility(30, 2.0, 10**9) <= 43_200  # never above SQS's 12 h limit
    with pytest.raises(ValueError):
        retry_visibility(0, 1, 1)


def test_config_defaults_and_validation():
    cfg = WorkerConfig("q", "r", concurrency=3)
    assert cfg.prefetch == 3 and cfg.slots == 6
    assert WorkerConfig("q", "r", concurrency=3, prefetch=0).slots == 3
    for bad in ({"concurrency": 0}, {"concurrency": 2, "prefetch": 3}, {"wait_seconds": 21},
                {"visibility_timeout": 0}, {"max_attempts": 0}, {"heartbeat_fraction": 1.0}, {"receivers": 0}):
        with pytest.raises(ValueError):
            WorkerConfig("q", "r", **bad)
    with pytest.raises(ValueError, match="invisible to other workers"):
        WorkerConfig("q", "r", concurrency=1, prefetch=2)
