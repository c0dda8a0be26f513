"""MicroBatcher: groups one-at-a-time items into calls of up to ten."""

from __future__ import annotations

import threading
import time

from batchq.worker.batcher import MicroBatcher


def test_full_batches_flush_at_once_and_the_rest_after_max_wait():
    batches: list[list[int]] = []
    lock = threading.Lock()

    def flush(b):
        with lock:
            batches.append(list(b))

    mb = MicroBatcher(flush, max_items=10, max_wait_s=0.2, workers=2)
    t0 = time.monotonic()
    for i in range(23):
        mb.put(i)
    while sum(len(b) for b in batches) < 20:
        time.sleep(0.005)
    assert time.monotonic() - t0 < 0.2  # two full batches did not wait for the timer
    while sum(len(b) for b in batches) < 23:
        time.sleep(0.005)
    assert time.monotonic() - t0 >= 0.15  # the partial batch waited for company
    assert mb.close(5)
    assert sorted(x for b in batches for x in b) == list(range(23))
    assert max(len(b) for b in batches) == 10 and len(batches) == 3


def test_close_flushes_what_is_queued_and_survives_a_failing_flush():
    seen: list[int] = []

    def flush(b):
        if 0 in b:
            raise RuntimeError("endpoint down")
        seen.extend(b)

    mb = MicroBatcher(flush, max_items=1, max_wait_s=10, workers=1)
    for i in range(5):
        mb.put(i)
    assert mb.close(5)
    assert sorted(seen) == [1, 2, 3, 4]
