"""The drain loop: results queue → sink, paced, committed before delete.

For each received batch (up to 10 messages):

1. parse and check every body (:func:`batchq.messages.parse_result`, then
   :func:`batchq.drain.checks.check_result`: the values must fit the store's columns). *Any* exception
   there — a malformed body, JSON too deep for the parser, a NUL, NaN, an oversize field — quarantines
   that one message with the reason (never retried forever, never stopping the loop);
2. take tokens from the shared :class:`~batchq.drain.limiter.TokenBucket` (``max_rate`` results/s for the
   whole drainer: a hard ceiling, off by default) and a slot of the shared
   :class:`~batchq.drain.pace.ConcurrencyGate`: the :class:`~batchq.drain.pace.PaceController` finds how
   many writes the sink takes at once from the sink's own latency (``latency_tolerance`` × its baseline),
   at most ``max_in_flight``;
3. write to the sink and **commit** (upsert on ``key``), recording the results and quarantine entries in
   the results store (the run ledger) in the same step. A non-transient error (the sink or the database
   refuses the batch) is bisected down to the entries that cause it: those are quarantined with the
   error, their neighbours commit;
4. only then delete the batch (``Failed`` entries are reported; those messages come back and are
   applied again idempotently). The delete runs in the background while the thread receives its next
   batch — still strictly after the commit, one pending delete per thread.

A sink outage keeps the batch: :func:`batchq.sqs.retry.backoff_delay` (or the sink's capped ``Retry-After``),
extending the messages' visibility while the outage lasts, so there is no loss and no duplicate row; a
wait that would pass the drain's ``deadline`` hands the batch back to the queue and ends the drain
instead. A sink that refuses every write (:class:`~batchq.drain.sink.SinkMisconfigured`: credentials,
a redirect) hands the batch back and stops the drain with that error.
The same loop serves the Airflow operator (``until_empty``) and ``batchq drain`` (until stopped).

The round trip the pace controller learns from is the sink's alone: an HTTP sink's POST (the ledger's
local commit is not timed), a SQL sink's commit (the store's ``apply``, timed here around the call).
While the queue reads empty, one thread long-polls and the others wait for it to find results, so an
idle ``batchq drain`` costs one receive per ``receive_wait_s``, like an idle worker.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

from batchq import limits
from batchq.drain.checks import check_result
from batchq.drain.limiter import TokenBucket
from batchq.drain.pace import (
    DEFAULT_LATENCY_TOLERANCE,
    ConcurrencyGate,
    PaceController,
    PaceState,
)
from batchq.drain.sink import Sink, SinkMisconfigured, SinkRejected, SinkUnavailable
from batchq.errors import InvalidMessage
from batchq.messages import WorkResult, describe_key, parse_result
from batchq.monitor.lag import sqs_times
from batchq.sqs import change_visibility, delete_messages, receive_messages
from batchq.sqs.retry import backoff_delay
from batchq.store import QuarantineEntry, Store

log = logging.getLogger(__name__)


@dataclass
class DrainReport:
    """What a drain did (JSON-friendly via :meth:`to_dict`)."""

    received: int = 0
    applied: int = 0
    quarantined: int = 0
    deleted: int = 0
    delete_failed: int = 0
    batches: int = 0
    sink_retries: int = 0
    backpressure: int = 0
    visibility_extensions: int = 0
    handed_back: int = 0
    paced_s: float = 0.0
    duration_s: float = 0.0
    #: the drain stopped because a sink outage would have outlived its deadline
    deadline_reached: bool = False
    #: the pace controller after the last committed batch (``None``: fixed concurrency)
    pace_limit: float | None = None
    pace_rtt_ms: float | None = None
    pace_baseline_ms: float | None = None

    @property
    def rate_per_s(self) -> float:
        return self.applied / self.duration_s if self.duration_s > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["duration_s"] = round(self.duration_s, 3)
        out["paced_s"] = round(self.paced_s, 3)
        out["rate_per_s"] = round(self.rate_per_s, 2)
        return out


class _Stopped(Exception):
    """Internal: a stop was requested while a batch waited out a sink outage."""


class Drainer:
    """Drain a results queue into a sink at a bounded rate, exactly-once in effect.

    :param client: boto3 SQS client (thread-safe).
    :param queue_url: the results queue.
    :param sink: where results go (:class:`~batchq.drain.sql_sink.SqlSink` or a
        :class:`~batchq.store.ResultsStore` for SQL, or :class:`~batchq.drain.http_sink.HttpSink`).
    :param store: the results store (:class:`~batchq.store.Store`) holding the run ledger and the
        quarantine; defaults to the SQL sink's own store (then one transaction writes both).
    :param max_rate: results per second for the whole drainer, a hard ceiling; ``None`` = no cap (the
        pace controller finds the pace).
    :param max_in_flight: drain threads: the most batches ever written at once (the pace controller's
        ceiling; with ``latency_tolerance=None``, exactly this many).
    :param latency_tolerance: how far the sink's round trip may rise above its lightly-loaded baseline
        before the drainer writes fewer batches at once (:class:`~batchq.drain.pace.PaceController`;
        default :data:`~batchq.drain.pace.DEFAULT_LATENCY_TOLERANCE`). ``None``: no adaptive pace.
    :param pace: a ready :class:`~batchq.drain.pace.PaceController` (overrides ``latency_tolerance``).
    :param receive_wait_s: long-poll wait per ReceiveMessage; an empty poll means "empty" for
        ``until_empty`` runs.
    :param lease_s: visibility timeout taken on receive, and re-taken while a sink outage lasts.
    :param backoff_base_s: first retry delay after a sink error (the ceiling doubles per attempt;
        :func:`batchq.sqs.retry.backoff_delay`, full jitter).
    :param backoff_cap_s: longest retry delay.
    :param on_batch: called after each committed batch with the running report (metrics hook).
    :param limiter: a ready :class:`TokenBucket` (overrides ``max_rate``), e.g. shared between drainers.
    """

    def __init__(
        self,
        client: Any,
        queue_url: str,
        sink: Sink,
        store: Store | None = None,
        *,
        max_rate: float | None = None,
        max_in_flight: int = 1,
        receive_wait_s: int = 2,
        lease_s: int = 60,
        backoff_base_s: float = 0.5,
        backoff_cap_s: float = 30.0,
        on_batch: Callable[[DrainReport], None] | None = None,
        limiter: TokenBucket | None = None,
        latency_tolerance: float | None = DEFAULT_LATENCY_TOLERANCE,
        pace: PaceController | None = None,
    ):
        if store is None:
            # A results store given as the sink: its results table is the destination.
            store = sink if hasattr(sink, "apply") else getattr(sink, "store", None)
            if store is None:
                raise ValueError("a non-SQL sink needs store= (a ResultsStore) for the run ledger and the quarantine")
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be >= 1, got {max_in_flight}")
        if lease_s < 2:
            raise ValueError(f"lease_s must be >= 2 seconds, got {lease_s}")
        self.client, self.queue_url, self.sink, self.store = client, queue_url, sink, store
        self.limiter = limiter or TokenBucket(max_rate, burst=limits.MAX_RECEIVE_MESSAGES)
        self.max_in_flight = max_in_flight
        self.receive_wait_s = receive_wait_s
        self.lease_s = lease_s
        self.backoff_base_s, self.backoff_cap_s = backoff_base_s, backoff_cap_s
        self.on_batch = on_batch
        if pace is None and latency_tolerance is not None:
            pace = PaceController(latency_tolerance=latency_tolerance, max_limit=max_in_flight, initial_limit=min(2, max_in_flight))
        self.gate = ConcurrencyGate(pace) if pace is not None else None
        self._lock = threading.Lock()

    def pace_state(self) -> PaceState | None:
        """The pace controller's limit, round trip and baseline now (``None`` without adaptive pace)."""
        return self.gate.state() if self.gate is not None else None

    # -- public ------------------------------------------------------------------------------------------
    def run(
        self,
        *,
        until_empty: bool = True,
        stop: threading.Event | None = None,
        max_results: int | None = None,
        deadline: float | None = None,
    ) -> DrainReport:
        """Drain until the queue reads empty (``until_empty``), ``stop`` is set, ``max_results`` messages
        were handled, or ``deadline`` (``time.monotonic()``) passes. Raises the first unexpected error of
        any drain thread (its in-flight batch was not deleted, so it comes back)."""
        report = DrainReport()
        stop = stop or threading.Event()
        local_stop = threading.Event()
        errors: list[BaseException] = []
        started = time.perf_counter()

        def stopping() -> bool:
            if stop.is_set() or local_stop.is_set():
                return True
            if deadline is not None and time.monotonic() >= deadline:
                return True
            return max_results is not None and report.received >= max_results

        # Per drain thread: one receive prefetched and one delete pending in the background, so the
        # thread's critical path is "apply a batch", not "receive + apply + delete". The delete of a
        # batch still strictly follows its commit; a prefetched batch not applied is handed back.
        io = ThreadPoolExecutor(2 * self.max_in_flight, thread_name_prefix="batchq-drain-io")

        def receive() -> list[dict[str, Any]]:
            return receive_messages(
                self.client,
                self.queue_url,
                max_messages=limits.MAX_RECEIVE_MESSAGES,
                wait_seconds=self.receive_wait_s,
                visibility_timeout=self.lease_s,
            )

        turns = None if until_empty or self.max_in_flight == 1 else _ReceiveTurns()

        def loop() -> None:
            pending: Future[None] | None = None
            prefetch: Future[list[dict[str, Any]]] | None = None
            try:
                while not stopping():
                    if prefetch is not None:
                        msgs = prefetch.result()
                    elif turns is not None:
                        if not turns.take(stopping):
                            continue
                        msgs = receive()
                    else:
                        msgs = receive()
                    if turns is not None:
                        turns.result(bool(msgs))
                    prefetch = None
                    if not msgs:
                        if until_empty:
                            return
                        continue
                    with self._lock:
                        report.received += len(msgs)
                    if not stopping():
                        prefetch = io.submit(receive)
                    applied, quarantined = self._apply(msgs, report, _AnyEvent(stop, local_stop), deadline)
                    if pending is not None:
                        pending.result()
                    pending = io.submit(self._delete, msgs, applied, quarantined, report)
            except _Stopped:
                return
            except BaseException as exc:  # noqa: BLE001 - re-raised by run() after the others stop
                errors.append(exc)
                local_stop.set()
            finally:
                for fut, finish in ((pending, None), (prefetch, self._hand_back)):
                    if fut is None:
                        continue
                    try:
                        got = fut.result()
                        if finish is not None and got:
                            finish(got, report)
                    except BaseException as exc:  # noqa: BLE001
                        errors.append(exc)

        if self.max_in_flight == 1:
            loop()
        else:
            threads = [threading.Thread(target=loop, name=f"batchq-drain-{i}", daemon=True) for i in range(self.max_in_flight)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        io.shutdown(wait=True)
        report.duration_s = time.perf_counter() - started
        report.backpressure = self.limiter.backpressure_events
        if errors:
            raise errors[0]
        return report

    # -- one batch ---------------------------------------------------------------------------------------
    def _apply(
        self, msgs: Sequence[dict[str, Any]], report: DrainReport, stop: _AnyEvent, deadline: float | None
    ) -> tuple[int, int]:
        """Parse, check, pace and commit one batch; returns (results applied, entries quarantined)."""
        items = [self._parse(m) for m in msgs]
        n_results = sum(it.result is not None for it in items)
        if n_results:
            waited = self.limiter.acquire(n_results)
            with self._lock:
                report.paced_s += waited
        lease = [time.monotonic() + self.lease_s]
        return self._commit(msgs, items, report, stop, lease, deadline)

    def _timed(self, write: Callable[[], None], stop: _AnyEvent) -> None:
        """One sink write inside a pace slot, its round trip fed to the pace controller: a transient
        failure (push-back, a timeout, a 5xx, an outage) counts as a loss; a refusal is no sample."""
        if self.gate is None:
            write()
            return
        self.gate.acquire(stop.is_set)
        started = time.perf_counter()
        try:
            write()
        except SinkUnavailable:
            self.gate.release(time.perf_counter() - started, loss=True)
            raise
        except BaseException:
            self.gate.release(0.0, sample=False)
            raise
        self.gate.release(time.perf_counter() - started)

    @staticmethod
    def _parse(m: dict[str, Any]) -> _Item:
        """One message → a result to write, or a quarantine entry with the reason. Never raises: whatever
        one body does (not JSON, too deep for the parser, a value its column cannot hold), it is that
        message's problem only."""
        body = m.get("Body", "")
        try:
            result = parse_result(body)
            check_result(result)
            sent, _ = sqs_times(m)
            if sent is not None:  # the results wait (sent → applied) of the run's lag figures
                result = result.model_copy(update={"result_sent_at": sent})
            return _Item(m, result, None)
        except InvalidMessage as exc:
            reason, key = exc.reason, exc.key
        except Exception as exc:  # noqa: BLE001 - RecursionError, MemoryError, a parser bug: isolate it
            reason, key = f"{type(exc).__name__} while reading the result: {str(exc)[:500]}", None
        log.warning("quarantining malformed result %s: %s", m.get("MessageId"), reason[:500])
        return _Item(m, None, QuarantineEntry.from_body(m.get("MessageId", "?"), body, reason, key))

    def _hand_back(self, msgs: Sequence[dict[str, Any]], report: DrainReport) -> None:
        """Return messages to the queue at once (visibility 0): prefetched-but-unapplied ones, or a batch
        the drain stops waiting for (stop, deadline, misconfigured sink)."""
        failed = change_visibility(self.client, self.queue_url, msgs, 0)
        with self._lock:
            report.handed_back += len(msgs) - len(failed)

    def _delete(self, msgs: Sequence[dict[str, Any]], applied: int, quarantined: int, report: DrainReport) -> None:
        """Delete a committed batch (``Failed`` entries are reported, and come back to be re-applied)."""
        failed = delete_messages(self.client, self.queue_url, msgs)
        if failed:
            # Already committed: these come back after their lease and are applied again idempotently.
            log.warning("%d result message(s) not deleted (will be redelivered): %s", len(failed), list(failed.items())[:3])
        pace = self.pace_state()
        with self._lock:
            if pace is not None:
                report.pace_limit = round(pace.limit, 2)
                report.pace_rtt_ms = None if pace.rtt_s is None else round(pace.rtt_s * 1000, 2)
                report.pace_baseline_ms = None if pace.baseline_s is None else round(pace.baseline_s * 1000, 2)
            report.batches += 1
            report.applied += applied
            report.quarantined += quarantined
            report.deleted += len(msgs) - len(failed)
            report.delete_failed += len(failed)
        if self.on_batch:
            self.on_batch(report)

    def _commit(
        self,
        msgs: Sequence[dict[str, Any]],
        items: list[_Item],
        report: DrainReport,
        stop: _AnyEvent,
        lease: list[float],
        deadline: float | None,
    ) -> tuple[int, int]:
        """Write ``items``; a non-transient error is bisected down to the entries that cause it, which
        are quarantined with the error as reason, while their good neighbours commit."""
        try:
            self._write(msgs, items, report, stop, lease, deadline)
            return sum(it.result is not None for it in items), sum(it.entry is not None for it in items)
        except (_Stopped, SinkMisconfigured):
            raise
        except Exception as exc:
            if len(items) > 1:
                log.warning("writing %d entries failed (%s: %s); bisecting", len(items), type(exc).__name__, str(exc).splitlines()[0][:300] if str(exc) else "")
                mid = len(items) // 2
                a = self._commit(msgs, items[:mid], report, stop, lease, deadline)
                b = self._commit(msgs, items[mid:], report, stop, lease, deadline)
                return a[0] + b[0], a[1] + b[1]
            item = items[0]
            if item.result is None:
                raise  # the store refuses even a bounded, escaped quarantine row: nothing sane is left
            first = str(exc).splitlines()[0][:1000] if str(exc) else ""
            reason = f"sink rejected: {first}" if isinstance(exc, SinkRejected) else f"store refused: {type(exc).__name__}: {first}"
            log.error("quarantining result %s: %s", describe_key(item.result.key, item.result.dims), reason)
            entry = QuarantineEntry.from_body(item.msg.get("MessageId", "?"), item.msg.get("Body", ""), reason, item.result.key)
            self._write(msgs, [_Item(item.msg, None, entry)], report, stop, lease, deadline)
            return 0, 1

    def _write(
        self,
        msgs: Sequence[dict[str, Any]],
        items: list[_Item],
        report: DrainReport,
        stop: _AnyEvent,
        lease: list[float],
        deadline: float | None,
    ) -> None:
        """Commit ``items`` to the sink and the store, waiting out transient outages (back-off or the
        sink's capped ``Retry-After``) within the drain's deadline."""
        results = [it.result for it in items if it.result is not None]
        entries = [it.entry for it in items if it.entry is not None]
        attempt = 0
        while True:
            try:
                # A sink writing through this very store is written by the store's apply (one transaction):
                # then the commit is the sink's round trip; else the sink's own write is (an HTTP POST),
                # and the ledger's local commit is not the sink's pace.
                if results and self.sink is not self.store and getattr(self.sink, "store", None) is not self.store:
                    self._timed(lambda: self.sink.write(results), stop)
                # The time left before the deadline bounds the transaction's statements and lock waits.
                left = None if deadline is None else max(0.001, deadline - time.monotonic())
                if results and (self.sink is self.store or getattr(self.sink, "store", None) is self.store):
                    self._timed(lambda: self.store.apply(results, entries, timeout_s=left), stop)
                else:
                    self.store.apply(results, entries, timeout_s=left)  # the ledger's local commit: not the sink's pace
                self.limiter.accepted()
                return
            except SinkMisconfigured:
                # Retrying cannot help and quarantining would lose nothing but blame the results: give
                # the whole batch back to the queue at once and stop.
                self._hand_back(msgs, report)
                raise
            except SinkUnavailable as exc:
                attempt += 1
                with self._lock:
                    report.sink_retries += 1
                delay = exc.retry_after_s
                if delay is None or not math.isfinite(delay) or delay < 0:
                    delay = backoff_delay(attempt, base=self.backoff_base_s, cap=self.backoff_cap_s)
                if exc.backpressure:
                    self.limiter.backpressure(delay if exc.retry_after_s is not None else None)
                if deadline is not None and time.monotonic() + delay >= deadline:
                    # Outages do not outlive the drain: the batch goes back to the queue for a later drain.
                    log.warning("sink unavailable and the drain deadline is near: handing back %d message(s): %s", len(msgs), exc)
                    self._hand_back(msgs, report)
                    with self._lock:
                        report.deadline_reached = True
                    raise _Stopped from exc
                log.warning("sink unavailable (attempt %d), retrying %d entries in %.1fs: %s", attempt, len(items), delay, exc)
                # Keep the batch invisible while we wait: otherwise it would reappear and be drained twice
                # in parallel (harmless, but wasteful) — extend the lease before it runs out.
                if time.monotonic() + delay > lease[0] - self.lease_s / 3:
                    failed = change_visibility(self.client, self.queue_url, msgs, self.lease_s)
                    lease[0] = time.monotonic() + self.lease_s
                    with self._lock:
                        report.visibility_extensions += 1
                    if failed:
                        log.warning("could not extend the lease of %d message(s): %s", len(failed), list(failed.items())[:3])
                if stop.wait(delay):
                    # Stopping mid-outage: hand the batch back at once instead of waiting out the lease.
                    self._hand_back(msgs, report)
                    raise _Stopped from exc


@dataclass
class _Item:
    """One received message: the result to write, or the quarantine entry it became."""

    msg: dict[str, Any]
    result: WorkResult | None
    entry: QuarantineEntry | None


class _AnyEvent:
    """Wait on two events at once (the caller's stop and the drainer's own)."""

    def __init__(self, *events: threading.Event):
        self.events = events

    def is_set(self) -> bool:
        return any(e.is_set() for e in self.events)

    def wait(self, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while True:
            if self.is_set():
                return True
            left = end - time.monotonic()
            if left <= 0:
                return False
            self.events[0].wait(min(left, 0.2))


class _ReceiveTurns:
    """While the queue reads empty, one drain thread long-polls and the others wait for it to find
    results (then all of them receive again). Idle, the drainer costs what one worker loop costs."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._idle = False
        self._poller: int | None = None

    def take(self, stopping: Callable[[], bool]) -> bool:
        """Wait for this thread's turn to receive; False when it should re-check for a stop first."""
        me = threading.get_ident()
        with self._cond:
            while self._idle and self._poller not in (None, me):
                if stopping():
                    return False
                self._cond.wait(0.5)
            if self._idle:
                self._poller = me
            return True

    def result(self, got_messages: bool) -> None:
        me = threading.get_ident()
        with self._cond:
            if got_messages:
                self._idle, self._poller = False, None
                self._cond.notify_all()
            else:
                self._idle = True
                if self._poller is None:
                    self._poller = me
