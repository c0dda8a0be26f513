"""Live queue state under a budget: the only way the API server's plugin waits on SQS.

The plugin runs inside Airflow's API server, next to every other team's DAGs. Without a budget an SQS
outage would turn each Batches page load into minutes of blocked threads (5 attempts × 30 s reads per
call, ~8 calls per spec, one spec after another) and a few dozen loads would starve the server's shared
thread pool, taking all of Airflow's API down with them. So:

- **one attempt per call**, 2 s to connect and 3 s to read (:func:`probe_client`): a call that does
  not answer fails in seconds, and the probe stops at its first failure;
- **probes run on this module's own small thread pool**, never on the server's: a request awaits them
  without holding a server thread;
- **a total deadline per request** (``[batchq] api_queue_deadline_s``, default 3 s): whatever has not
  answered by then is shown as unavailable, with when it was last seen, and the page still renders;
- **a short shared cache with single flight** (``[batchq] api_queue_cache_s``, default 10 s): the
  answer (or the failure) of a spec's probe serves every request for that long, and requests that
  arrive while a probe runs wait for that probe, so N page loads during an outage cost one probe per
  spec, not N.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

#: Seconds to open a connection / to wait for an answer, for one probe call (one attempt).
PROBE_CONNECT_TIMEOUT_S = 2
PROBE_READ_TIMEOUT_S = 3
#: Probes running at once per API server process (each holds one of these threads, never a server one).
PROBE_THREADS = 4


@dataclass(frozen=True)
class ProbeResult:
    """The outcome of one probe of a spec's queues.

    :param at: when the probe finished (epoch seconds).
    :param value: what the probe function returned, or ``None`` when it failed.
    :param error: the failure (an exception whose ``str`` may be shown), or ``None``.
    """

    at: float
    value: Any = None
    error: BaseException | None = None


@dataclass(frozen=True)
class LiveAnswer:
    """What one request gets for one spec within its deadline.

    :param result: the probe's result, or ``None`` when it did not finish in time.
    :param last_ok_at: when this spec's queues last answered (epoch seconds), ``None`` if never.
    """

    result: ProbeResult | None
    last_ok_at: float | None


class LiveQueueState:
    """A per-process cache of probe results with single flight and a bounded thread pool.

    :param probe: called with the item to probe (e.g. a spec); returns the value to cache or raises.
    :param ttl_s: how long a result (success or failure) serves every request; a callable is read at
        each look-up, so configuration changes apply without a restart.
    :param threads: probe threads (this pool's, not the server's).
    :param clock: epoch-seconds clock (tests).
    """

    def __init__(self, probe: Callable[[Any], Any], ttl_s: float | Callable[[], float], threads: int = PROBE_THREADS, clock: Callable[[], float] = time.time):
        self._probe = probe
        self._ttl = ttl_s if callable(ttl_s) else (lambda: float(ttl_s))
        self._clock = clock
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=threads, thread_name_prefix="batchq-sqs-probe")
        self._lock = threading.Lock()
        self._done: dict[Hashable, ProbeResult] = {}
        self._inflight: dict[Hashable, concurrent.futures.Future[ProbeResult]] = {}
        self._last_ok: dict[Hashable, float] = {}
        #: Probes started (for tests and the docs' claim "one probe per spec").
        self.probes = 0

    def future(self, key: Hashable, item: Any) -> concurrent.futures.Future[ProbeResult]:
        """The fresh cached result of ``key``, the probe already running for it, or a new probe."""
        with self._lock:
            cached = self._done.get(key)
            if cached is not None and self._clock() - cached.at < self._ttl():
                done: concurrent.futures.Future[ProbeResult] = concurrent.futures.Future()
                done.set_result(cached)
                return done
            running = self._inflight.get(key)
            if running is not None:
                return running
            self.probes += 1
            fut = self._pool.submit(self._run, key, item)
            self._inflight[key] = fut
            return fut

    def _run(self, key: Hashable, item: Any) -> ProbeResult:
        try:
            result = ProbeResult(at=self._clock(), value=self._probe(item))
        except Exception as exc:  # noqa: BLE001 - a failed probe is an answer, cached like one
            result = ProbeResult(at=self._clock(), error=exc)
        with self._lock:
            self._done[key] = result
            if result.error is None:
                self._last_ok[key] = result.at
            self._inflight.pop(key, None)
        return result

    def last_ok_at(self, key: Hashable) -> float | None:
        with self._lock:
            return self._last_ok.get(key)

    async def answers(self, items: Mapping[Hashable, Any], deadline_s: float) -> dict[Hashable, LiveAnswer]:
        """Probe results of every ``key → item`` that arrive within ``deadline_s`` seconds in total;
        the rest answer ``result=None``. Never raises and never waits longer than the deadline."""
        futures = {key: self.future(key, item) for key, item in items.items()}
        waiting = [asyncio.wrap_future(f) for f in set(futures.values()) if not f.done()]
        if waiting:
            _, pending = await asyncio.wait(waiting, timeout=deadline_s)
            for task in pending:
                # Stop listening; the probe itself finishes on its own thread and fills the cache.
                task.cancel()
        out = {}
        for key, fut in futures.items():
            out[key] = LiveAnswer(fut.result() if fut.done() else None, self.last_ok_at(key))
        return out

    def clear(self) -> None:
        """Forget every cached result (tests)."""
        with self._lock:
            self._done.clear()
            self._last_ok.clear()


def probe_config(config: Any) -> Any:
    """``config`` (a botocore Config) with one attempt per call and the probe's short timeouts."""
    from botocore.config import Config

    from batchq.sqs.client import single_attempt

    return single_attempt(config).merge(Config(connect_timeout=PROBE_CONNECT_TIMEOUT_S, read_timeout=PROBE_READ_TIMEOUT_S))


_clients: dict[str, tuple[float, Any]] = {}
_clients_lock = threading.Lock()
#: Seconds a probe client is reused before it is built again from its connection (picks up edits).
CLIENT_TTL_S = 300.0


def probe_client(conn_id: str) -> Any:
    """An SQS client for the API server's connection with :func:`probe_config`, reused for a few minutes."""
    from batchq.airflow.hook import BatchqSqsHook

    now = time.monotonic()
    with _clients_lock:
        cached = _clients.get(conn_id)
        if cached is not None and now - cached[0] < CLIENT_TTL_S:
            return cached[1]
    hook = BatchqSqsHook(aws_conn_id=conn_id)
    client = hook.get_client_type(config=probe_config(hook.config))
    with _clients_lock:
        _clients[conn_id] = (now, client)
    return client


def deadline_s() -> float:
    from batchq.airflow import settings

    return settings.api_queue_deadline_s()


def cache_s() -> float:
    from batchq.airflow import settings

    return settings.api_queue_cache_s()


__all__: Sequence[str] = ["LiveAnswer", "LiveQueueState", "ProbeResult", "probe_client", "probe_config"]
