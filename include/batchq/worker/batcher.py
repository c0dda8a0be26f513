"""Micro-batching: group items produced one at a time into calls of up to ten.

Handlers finish one message at a time; sending each result and deleting each input separately would
cost two SQS calls per message. A :class:`MicroBatcher` collects items until it has ``max_items`` or
the oldest has waited ``max_wait_s``, then hands the batch to ``flush`` on a small pool, so calls
overlap and a slow call does not stall the collection of the next batch.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Generic, TypeVar

from batchq import limits

log = logging.getLogger(__name__)

T = TypeVar("T")
_CLOSE = object()
_FLUSH = object()


class MicroBatcher(Generic[T]):
    """Collects items and calls ``flush(batch)`` with up to ``max_items`` of them.

    :param flush: called with each batch on a pool thread; must handle its own errors. An exception that
        escapes is only logged: the batcher does not retry, and a message the items refer to is still
        held (its heartbeat keeps extending it), so the worker's flush functions catch everything and
        hand such messages back themselves.
    :param max_items: batch size that triggers a flush at once (SQS batch calls take ten).
    :param max_wait_s: longest time the first item of a batch waits for company.
    :param workers: flushes that may run at the same time.
    """

    def __init__(
        self,
        flush: Callable[[list[T]], None],
        *,
        max_items: int = limits.MAX_BATCH_ENTRIES,
        max_wait_s: float = 0.05,
        workers: int = 2,
        name: str = "batchq-batcher",
    ):
        if max_items < 1 or workers < 1 or max_wait_s < 0:
            raise ValueError("need max_items >= 1, workers >= 1 and max_wait_s >= 0")
        self._flush = flush
        self.max_items = max_items
        self.max_wait_s = max_wait_s
        self._queue: queue.Queue[object] = queue.Queue()
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix=f"{name}-flush")
        # Bound the batches waiting for a flush thread, so a slow endpoint applies back-pressure.
        self._slots = threading.BoundedSemaphore(2 * workers)
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()
        self.flushes = 0

    def put(self, item: T) -> None:
        self._queue.put(item)

    def flush_soon(self) -> None:
        """Flush what has been put so far without waiting out ``max_wait_s`` (call it when no more items
        are coming soon, e.g. the worker went idle: waiting would only add latency)."""
        self._queue.put(_FLUSH)

    def close(self, timeout: float | None = None) -> bool:
        """Flush what is queued, wait for every flush to finish. Returns False on timeout."""
        self._queue.put(_CLOSE)
        self._thread.join(timeout)
        alive = self._thread.is_alive()
        self._pool.shutdown(wait=not alive)
        return not alive

    def _submit(self, batch: list[T]) -> None:
        self._slots.acquire()
        self.flushes += 1

        def run() -> None:
            try:
                self._flush(batch)
            except Exception:
                log.exception("flush of %d item(s) raised; the flush function should have handled it", len(batch))
            finally:
                self._slots.release()

        self._pool.submit(run)

    def _run(self) -> None:
        closing = False
        while not closing:
            first = self._queue.get()
            if first is _CLOSE:
                break
            if first is _FLUSH:
                continue  # nothing pending
            batch: list[T] = [first]  # type: ignore[list-item]
            deadline = time.monotonic() + self.max_wait_s
            while len(batch) < self.max_items:
                remaining = deadline - time.monotonic()
                try:
                    item = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _CLOSE:
                    closing = True
                    break
                if item is _FLUSH:
                    break
                batch.append(item)  # type: ignore[arg-type]
            self._submit(batch)
