"""The long-running worker: receive → handle → publish result → delete, with at-least-once delivery.

Threads, each with one job:

* **receivers** long-poll the input queue, but only for as many messages as there are free slots
  (``concurrency`` running + ``prefetch`` waiting), so no message sits invisible for long without a
  handler to run it. Prefetch adapts (:mod:`batchq.worker.prefetch`): what the handlers can start
  within ``prefetch_horizon_s`` at the observed handler duration — up to ten for short jobs, so each
  call carries many messages, and ``concurrency`` for long ones, so one worker never hoards;
* **handlers** (``concurrency`` threads: handlers are I/O-bound) run :func:`~batchq.worker.execute.execute`;
* a **completion batcher** sends finished results with SendMessageBatch and, only once a result is
  confirmed, deletes its input with DeleteMessageBatch (or dead-letters it) — up to ten per call, across
  handler completions (also successive ones of one thread), flushed early when the worker goes idle;
* a **retry batcher** hides failed messages for a backoff with ChangeMessageVisibilityBatch;
* the **heartbeat** (:class:`~batchq.worker.heartbeat.LeaseKeeper`) extends the visibility of every
  message still held.

Ordering is the whole safety argument: the result is on the results queue before the input is deleted,
so a worker killed at any instant loses nothing — the input reappears after its visibility timeout and
a duplicate result (same idempotency key) is the worst case.
"""

from __future__ import annotations

import logging
import queue
import signal
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

from batchq import limits
from batchq.errors import BatchqError, QueueNotFound
from batchq.metrics import Metrics, log_event
from batchq.sqs import (
    change_visibility,
    delete_messages,
    receive_messages,
    send_bodies,
)
from batchq.sqs.retry import MISSING_QUEUE_CODES, backoff_delay
from batchq.worker.batcher import MicroBatcher
from batchq.worker.config import QueueSettings, WorkerConfig, read_queue_settings
from batchq.worker.deadletter import DeadLetterTooLarge, send_to_dead_letter
from batchq.worker.execute import (
    Action,
    Outcome,
    execute,
    message_age_ms,
    receive_count_of,
    timed_out_outcome,
    with_queue_times,
)
from batchq.worker.heartbeat import Lease, LeaseKeeper
from batchq.worker.prefetch import DurationAverage, prefetch_limit, should_receive
from batchq.worker.registry import REGISTRY, Registry
from batchq.worker.retry import retry_visibility

log = logging.getLogger(__name__)

#: Error codes of a send to the results queue that no retry can cure: the queue is gone or this worker
#: may not write to it. Processing more input would only redo work whose results cannot be published.
RESULTS_REFUSED_CODES = MISSING_QUEUE_CODES | {"AccessDenied", "AccessDeniedException", "QueueNotFound"}


class ResultsQueueUnavailable(BatchqError):
    """The results queue does not exist or refuses this worker's sends: the worker stops, holding nothing."""


class HandlersStuck(BatchqError):
    """Too many handler threads ran past their timeout and never came back: the worker stops (exit
    non-zero) so that its supervisor, KEDA or ECS replaces the process."""


@dataclass
class WorkerStats:
    """Counts for one worker's lifetime (also printed as JSON at exit)."""

    received: int = 0
    succeeded: int = 0
    failed: int = 0
    retried: int = 0
    dead_lettered: int = 0
    returned: int = 0
    deleted: int = 0
    result_send_failures: int = 0
    delete_failures: int = 0
    timed_out: int = 0  # handler calls that overran their timeout
    internal_errors: int = 0
    first_receive_at: float | None = None
    last_confirmed_at: float | None = None
    prefetch_max: int = 0  # deepest prefetch the adaptive rule chose

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Completion:
    lease: Lease
    outcome: Outcome
    body: str | None


class Worker:
    """One worker process's consumer. ``run()`` blocks until :meth:`stop` (or SIGTERM/SIGINT when
    :meth:`install_signal_handlers` was called), then shuts down gracefully.

    :param client: a boto3 SQS client (thread-safe; give it ``max_pool_connections`` ≥ concurrency + 4).
    :param config: see :class:`~batchq.worker.config.WorkerConfig`.
    :param registry: handlers (default: the process-wide registry ``@batchq.job`` fills).
    :param metrics: where counters and timers go (default: a :class:`~batchq.metrics.Metrics` for
        component ``worker``, StatsD from ``BATCHQ_STATSD_HOST`` if set).
    """

    def __init__(self, client: Any, config: WorkerConfig, *, registry: Registry | None = None, metrics: Metrics | None = None):
        self.client = client
        self.config = config
        self.registry = registry or REGISTRY
        self.metrics = metrics or Metrics("worker", tags={"worker": config.worker_id})
        self.stats = WorkerStats()
        self.settings: QueueSettings | None = None
        self._stop_requested = threading.Event()
        self._stopping = threading.Event()
        self._fatal: BaseException | None = None
        self._cond = threading.Condition()
        self._active = 0  # slots in use: reserved by a receive in progress, buffered or running
        self._buffered = 0
        self._running = 0
        self._durations = DurationAverage()
        self._work: queue.Queue[Lease | None] = queue.Queue()
        self._threads: list[threading.Thread] = []
        self._receivers: list[threading.Thread] = []
        self._timed: set[Lease] = set()  # running leases with a handler deadline (under _cond)
        self._abandoned: set[threading.Thread] = set()  # handler threads still stuck past a timeout
        self._stats_lock = threading.Lock()
        self._started = False
        self._grace_override: float | None = None

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> None:
        """Read the queue's settings, then start every thread. Raises if there is no dead-letter queue."""
        if self._started:
            raise RuntimeError("worker already started")
        if not len(self.registry):
            raise BatchqError("no handlers registered: pass --handlers MODULE or install a batchq.handlers entry point")
        self.settings = read_queue_settings(self.client, self.config)
        if self.settings.dead_letter_url is None:
            raise BatchqError(
                f"input queue {self.config.queue_url} has no redrive policy, so permanent failures would have "
                "nowhere to go: create the queues with `batchq queues create` or pass --dead-letter-queue"
            )
        self.leases = LeaseKeeper(
            self.client, self.config.queue_url, self.settings.visibility_timeout, self.config.heartbeat_fraction,
            on_extend=self._on_extend,
        )
        self.completions: MicroBatcher[_Completion] = MicroBatcher(
            self._flush_completions_safely, max_wait_s=self.config.batch_wait_s, workers=self.config.flush_workers,
            name="batchq-results",
        )
        self.retries: MicroBatcher[tuple[Lease, int]] = MicroBatcher(
            self._flush_retries, max_wait_s=self.config.batch_wait_s, workers=1, name="batchq-retries"
        )
        self._started = True
        self.leases.start()
        for _ in range(self.config.concurrency):
            self._start_handler_thread()
        self._watchdog = threading.Thread(target=self._watch_loop, name="batchq-handler-watchdog", daemon=True)
        self._watchdog.start()
        for i in range(self.config.receivers):
            t = threading.Thread(target=self._receive_loop, name=f"batchq-receiver-{i}", daemon=True)
            t.start()
            self._receivers.append(t)
        log_event(
            log, logging.INFO, "worker_started", worker=self.config.worker_id, queue=self.config.queue_url,
            results=self.config.results_url, dead_letter=self.settings.dead_letter_url,
            concurrency=self.config.concurrency,
            prefetch=self.config.prefetch if self.config.prefetch_fixed else f"adaptive, horizon {self.config.prefetch_horizon_s:g}s",
            visibility_timeout=self.settings.visibility_timeout, max_attempts=self.settings.max_attempts,
            handler_timeout_s=self.config.handler_timeout_s, results_max_bytes=self.settings.results_max_bytes,
            job_types=self.registry.job_types,
        )

    def _start_handler_thread(self) -> None:
        t = threading.Thread(target=self._handle_loop, name=f"batchq-handler-{len(self._threads)}", daemon=True)
        self._threads.append(t)
        t.start()

    def run(self) -> WorkerStats:
        """Start, block until asked to stop, shut down gracefully. Returns the lifetime stats."""
        self.start()
        try:
            while not self._stop_requested.wait(1.0):
                pass
        finally:
            self.shutdown()
        if self._fatal is not None:
            raise self._fatal
        return self.stats

    def stop(self, grace_period_s: float | None = None) -> None:
        """Ask the worker to stop (safe from a signal handler or another thread)."""
        if grace_period_s is not None:
            self._grace_override = grace_period_s
        self._stop_requested.set()

    def install_signal_handlers(self) -> None:
        """SIGTERM/SIGINT: graceful stop; a second signal: stop now (grace 0)."""

        def handle(signum: int, _frame: Any) -> None:
            if self._stop_requested.is_set():
                self.stop(0)
            else:
                log_event(log, logging.INFO, "worker_stopping", signal=signal.Signals(signum).name,
                          grace_period_s=self.config.grace_period_s)
                self.stop()

        signal.signal(signal.SIGTERM, handle)
        signal.signal(signal.SIGINT, handle)

    def shutdown(self) -> None:
        """Stop receiving, hand back unstarted messages at once, let running handlers finish within the
        grace period, flush results and deletes, hand back anything still held."""
        if not self._started or self._stopping.is_set():
            return
        grace = self.config.grace_period_s if self._grace_override is None else self._grace_override
        deadline = time.monotonic() + grace
        self._stopping.set()
        with self._cond:
            self._cond.notify_all()
        unstarted: list[Lease] = []
        while True:
            try:
                lease = self._work.get_nowait()
            except queue.Empty:
                break
            if lease is not None:
                unstarted.append(lease)
        if unstarted:
            with self._cond:
                self._buffered -= len(unstarted)
                self._active -= len(unstarted)
            self._return_now(unstarted, "shutdown: prefetched, not started")
        for _ in self._threads:
            self._work.put(None)
        for t in list(self._threads):
            if t not in self._abandoned:  # a stuck thread never comes back: waiting for it is pointless
                t.join(max(0.0, deadline - time.monotonic()))
        for t in self._receivers:
            # A long poll in progress returns within wait_seconds; what it brings is handed back at once.
            t.join(max(0.0, deadline - time.monotonic()) + self.config.wait_seconds + 2)
        self.retries.close(timeout=30)
        self.completions.close(timeout=60)
        self.leases.stop()
        leftover = self.leases.all()
        if leftover:
            # Handlers that overran the grace period: their work is abandoned, so make the messages
            # visible now rather than after the visibility timeout.
            self._return_now(leftover, "shutdown: handler overran the grace period")
        self.metrics.flush_summary()
        log_event(log, logging.INFO, "worker_stopped", worker=self.config.worker_id, **self.stats.to_dict())

    # -- receiving ---------------------------------------------------------------------------------
    def prefetch(self) -> int:
        """Messages to hold waiting for a handler right now (fixed, or adapted to handler durations)."""
        cfg = self.config
        if cfg.prefetch_fixed:
            return cfg.prefetch or 0
        return prefetch_limit(cfg.concurrency, self._durations.value, cfg.prefetch_horizon_s, cfg.prefetch_cap)

    def _receive_loop(self) -> None:
        cfg = self.config
        errors = 0
        while not self._stopping.is_set():
            with self._cond:
                while not self._stopping.is_set():
                    prefetch = self.prefetch()
                    free = cfg.concurrency + prefetch - self._active
                    if should_receive(free, prefetch, self._buffered):
                        break
                    self._cond.wait(0.5)
                if self._stopping.is_set():
                    return
                ask = min(10, free)
                self._active += ask
            self.stats.prefetch_max = max(self.stats.prefetch_max, prefetch)
            try:
                messages = receive_messages(
                    self.client, cfg.queue_url, max_messages=ask, wait_seconds=cfg.wait_seconds,
                    visibility_timeout=cfg.visibility_timeout,
                )
                errors = 0
            except QueueNotFound as exc:
                with self._cond:
                    self._active -= ask
                self._fail(exc)
                return
            except Exception as exc:  # noqa: BLE001 - endpoint trouble: back off and keep polling
                errors += 1
                messages = []
                log_event(log, logging.WARNING, "receive_failed", error=f"{type(exc).__name__}: {exc}", attempt=errors)
                self._stopping.wait(backoff_delay(min(errors, 8), base=0.5, cap=20.0))
            now = time.time()
            leases = [self.leases.add(m) for m in messages]
            with self._cond:
                self._active -= ask - len(messages)
                self._buffered += len(messages)
                self._cond.notify_all()
            if not messages:
                continue
            with self._stats_lock:
                self.stats.received += len(messages)
                if self.stats.first_receive_at is None:
                    self.stats.first_receive_at = now
            for m in messages:
                age = message_age_ms(m, now)
                if age is not None:
                    self.metrics.timing("message_age_ms", age)
            self.metrics.incr("received", len(messages))
            if self._stopping.is_set():
                with self._cond:
                    self._buffered -= len(leases)
                    self._active -= len(leases)
                self._return_now(leases, "shutdown: received while stopping")
                return
            for lease in leases:
                self._work.put(lease)

    # -- handling ----------------------------------------------------------------------------------
    def _handle_loop(self) -> None:
        while True:
            lease = self._work.get()
            if lease is None:
                return
            with self._cond:
                self._buffered -= 1
                self._running += 1
            if not self._handle_one(lease):
                return  # this thread overran a timeout and was replaced: it ends here

    def _handle_one(self, lease: Lease) -> bool:
        """Run one message. Its slot is released on every path (the watchdog releases it instead when
        the handler times out). Returns False when this thread was abandoned meanwhile."""
        settings = self.settings
        assert settings is not None
        if self._stopping.is_set():
            with self._cond:
                self._active -= 1
                self._running -= 1
                self._cond.notify_all()
            self._return_now([lease], "shutdown: prefetched, not started")
            return True
        lease.state = "running"
        lease.thread = threading.current_thread()
        receive_count = lease.receive_count = receive_count_of(lease.message)
        try:
            outcome = execute(
                lease.message.get("Body", ""), receive_count=receive_count, max_attempts=settings.max_attempts,
                registry=self.registry, worker=self.config.worker_id, message_id=lease.message_id,
                max_result_bytes=settings.results_max_bytes, on_start=lambda payload: self._handler_started(lease, payload),
            )
        except BaseException as exc:
            # and the message must still be accounted for (retried), the slot freed, the thread kept.
            log.exception("internal error handling %s", lease.message_id)
            with self._stats_lock:
                self.stats.internal_errors += 1
            outcome = Outcome(Action.RETRY, reason=f"internal error: {type(exc).__name__}: {exc}")
        with self._cond:
            self._timed.discard(lease)
            if lease.state == "timed_out":
                # The watchdog already routed this message and freed its slot; a new thread took this
                # one's place. What the handler returned this late is dropped (the retry redoes it).
                self._abandoned.discard(threading.current_thread())
                log_event(log, logging.WARNING, "handler_returned_after_timeout", message_id=lease.message_id)
                return False
            lease.state = "done"
            self._active -= 1
            self._cond.notify_all()
        try:
            if outcome.payload is not None and outcome.duration_s > 0:  # a handler ran: its time steers prefetch
                self._durations.add(outcome.duration_s)
            self._route(lease, outcome, receive_count)
        except Exception:
            log.exception("could not route the outcome of %s; handing it back", lease.message_id)
            self._return_now([lease], "internal error routing the outcome")
        finally:
            with self._cond:
                self._running -= 1
                idle = self._running == 0 and self._buffered == 0
        if idle:
            # Nothing is running or waiting, so no result is about to join the batch: waiting out
            # batch_wait_s would only delay the confirmation (and the tail of a run).
            self.completions.flush_soon()
        return True

    # -- handler timeouts ----------------------------------------------------------------------------
    def _handler_started(self, lease: Lease, payload: Any) -> None:
        timeout = self.registry.timeout_for(payload.job_type) or self.config.handler_timeout_s
        if timeout is None:
            return
        lease.payload, lease.timeout_s = payload, timeout
        lease.deadline = time.monotonic() + timeout
        with self._cond:
            self._timed.add(lease)

    def _watch_loop(self) -> None:
        """Time out handlers. Python cannot kill a thread, so an overdue handler's thread is abandoned:
        its message is routed as a transient failure (its lease is released, so no longer extended),
        its slot freed and a fresh thread started; past ``max_stuck_handlers`` abandoned threads the
        worker stops itself to be replaced (see docs/workers.md, "Handler timeouts")."""
        while not self._stopping.wait(0.2):
            now = time.monotonic()
            with self._cond:
                overdue = [ls for ls in self._timed if ls.state == "running" and ls.deadline is not None and now >= ls.deadline]
                for lease in overdue:
                    lease.state = "timed_out"
                    self._timed.discard(lease)
                    self._abandoned.add(lease.thread)
                    self._active -= 1
                    self._running -= 1
                stuck = len(self._abandoned)
                if overdue:
                    self._cond.notify_all()
            for lease in overdue:
                self._timed_out(lease)
            if overdue and stuck >= (self.config.max_stuck_handlers or self.config.concurrency):
                self._fail(HandlersStuck(
                    f"{stuck} handler thread(s) still running past their timeout (limit "
                    f"{self.config.max_stuck_handlers}): stopping so that this worker is replaced"
                ))
                return
            for _ in overdue:
                self._start_handler_thread()

    def _timed_out(self, lease: Lease) -> None:
        settings = self.settings
        assert settings is not None and lease.timeout_s is not None
        with self._stats_lock:
            self.stats.timed_out += 1
        outcome = timed_out_outcome(
            lease.payload, lease.timeout_s, receive_count=lease.receive_count, max_attempts=settings.max_attempts,
            worker=self.config.worker_id, max_result_bytes=settings.results_max_bytes,
        )
        self.metrics.incr("handler_timed_out", 1, outcome.tags)
        log_event(log, logging.WARNING, "handler_timed_out", message_id=lease.message_id, key=lease.payload.key,
                  dims=lease.payload.dims, timeout_s=lease.timeout_s, attempt=lease.receive_count, thread=getattr(lease.thread, "name", None))
        try:
            self._route(lease, outcome, lease.receive_count)
        except Exception:
            log.exception("could not route the timeout of %s; handing it back", lease.message_id)
            self._return_now([lease], "internal error routing a timeout")

    def _route(self, lease: Lease, outcome: Outcome, receive_count: int) -> None:
        # The one place every outcome passes (handled or timed out): stamp the payload's queue lag.
        outcome = with_queue_times(outcome, lease.message, self.settings.results_max_bytes if self.settings else limits.MAX_MESSAGE_BYTES)
        tags = outcome.tags
        if outcome.payload is not None and outcome.duration_s:
            self.metrics.timing("handler_duration_ms", outcome.duration_s * 1000, tags)
        if outcome.action is Action.RETRY:
            delay = retry_visibility(
                receive_count, self.config.retry_base_s,
                self.config.retry_cap_s if self.config.retry_cap_s is not None else float(self.settings.visibility_timeout),
            )
            with self._stats_lock:
                self.stats.retried += 1
            self.metrics.incr("retried", 1, tags)
            log_event(log, logging.WARNING, "message_retry", message_id=lease.message_id,
                      key=outcome.payload.key if outcome.payload else None,
                      dims=outcome.payload.dims if outcome.payload else None, attempt=receive_count,
                      max_attempts=self.settings.max_attempts, retry_in_s=delay, error=outcome.reason)
            self.retries.put((lease, delay))
            return
        body = outcome.result_body
        if outcome.action is Action.DEAD_LETTER:
            log_event(log, logging.WARNING, "message_failed", message_id=lease.message_id,
                      key=outcome.result.key if outcome.result else None,
                      dims=outcome.payload.dims if outcome.payload else None, attempt=receive_count,
                      reason=outcome.reason, result_published=outcome.result is not None)
        else:
            log_event(log, logging.DEBUG, "message_processed", message_id=lease.message_id,
                      key=outcome.payload.key if outcome.payload else None, attempt=receive_count,
                      duration_ms=round(outcome.duration_s * 1000, 3), **tags)
        self.completions.put(_Completion(lease, outcome, body))

    # -- flushing ----------------------------------------------------------------------------------
    def _flush_completions_safely(self, batch: list[_Completion]) -> None:
        try:
            self._flush_completions(batch)
        except Exception:
            log.exception("completing %d message(s) failed; handing them back", len(batch))
            held = {id(lease) for lease in self.leases.all()}
            self._return_now([c.lease for c in batch if id(c.lease) in held], "internal error completing")

    def _flush_completions(self, batch: list[_Completion]) -> None:
        settings = self.settings
        assert settings is not None
        if isinstance(self._fatal, ResultsQueueUnavailable):
            # Nothing can be published any more: hold nothing, let another worker (or a later run) redo it.
            self._return_now([c.lease for c in batch], "results queue unavailable")
            return
        with_result = [c for c in batch if c.body is not None]
        send_failed: dict[str, str] = {}
        if with_result:
            try:
                report = send_bodies(
                    self.client, self.config.results_url, [(c.lease.message_id, c.body) for c in with_result],
                    max_in_flight=1, raise_on_failure=False, max_message_bytes=settings.results_max_bytes,
                )
                send_failed = report.failed
            except Exception as exc:  # noqa: BLE001 - e.g. QueueNotFound: nothing in this batch is confirmed
                send_failed = {c.lease.message_id: f"{type(exc).__name__}: {exc}" for c in with_result}
                report = None
            if report is not None and report.sent:
                with self._stats_lock:
                    self.stats.last_confirmed_at = time.time()
        refused = [r for r in send_failed.values() if r.split(":", 1)[0] in RESULTS_REFUSED_CODES]
        if refused:
            self._fail(ResultsQueueUnavailable(
                f"results queue {self.config.results_url} refuses results ({refused[0][:300]}): stopping; "
                "every input this worker holds is handed back (fix the queue or the worker's permissions)"
            ))
            self._return_now([c.lease for c in batch], "results queue unavailable")
            return
        confirmed: list[_Completion] = []
        for c in batch:
            if c.lease.message_id in send_failed:
                # Result not on the results queue: keep the input (hide it briefly, then it is redone).
                with self._stats_lock:
                    self.stats.result_send_failures += 1
                self.metrics.incr("result_send_failed", 1, c.outcome.tags)
                log_event(log, logging.ERROR, "result_send_failed", message_id=c.lease.message_id,
                          reason=send_failed[c.lease.message_id])
                self.retries.put((c.lease, retry_visibility(1, self.config.retry_base_s, float(settings.visibility_timeout))))
                continue
            if c.outcome.action is Action.DEAD_LETTER:
                try:
                    send_to_dead_letter(
                        self.client, settings.dead_letter_url, c.lease.message.get("Body", ""),
                        reason=c.outcome.reason or "failed", source_queue=self.config.queue_url,
                        attempts=receive_count_of(c.lease.message), worker=self.config.worker_id,
                        max_bytes=settings.dead_letter_max_bytes,
                    )
                except DeadLetterTooLarge as exc:
                    # Last resort: SQS's own redrive moves it after maxReceiveCount (without our reason
                    # attribute, so the reason is logged here).
                    log_event(log, logging.ERROR, "dead_letter_left_to_redrive", message_id=c.lease.message_id,
                              reason=c.outcome.reason, why=str(exc))
                    self.retries.put((c.lease, retry_visibility(1, self.config.retry_base_s, float(settings.visibility_timeout))))
                    continue
                except Exception:  # noqa: BLE001 - keep the original; it is retried, then redriven by SQS
                    self.retries.put((c.lease, retry_visibility(1, self.config.retry_base_s, float(settings.visibility_timeout))))
                    continue
            confirmed.append(c)
        if not confirmed:
            return
        delete_failed = delete_messages(self.client, self.config.queue_url, [c.lease.message for c in confirmed])
        succeeded = failed = dead = 0
        for c in confirmed:
            self.leases.remove(c.lease)
            tags = c.outcome.tags
            if c.outcome.action is Action.ACK:
                succeeded += 1
                self.metrics.incr("processed", 1, tags)
            else:
                dead += 1
                self.metrics.incr("dead_lettered", 1, tags)
                if c.outcome.result is not None:
                    failed += 1
                    self.metrics.incr("failed", 1, tags)
            if c.lease.message_id in delete_failed:
                # Redelivered later; the duplicate result carries the same key (idempotent downstream).
                self.metrics.incr("delete_failed", 1, tags)
                log_event(log, logging.WARNING, "delete_failed", message_id=c.lease.message_id,
                          reason=delete_failed[c.lease.message_id])
        with self._stats_lock:
            self.stats.succeeded += succeeded
            self.stats.failed += failed
            self.stats.dead_lettered += dead
            self.stats.deleted += len(confirmed) - len(delete_failed)
            self.stats.delete_failures += len(delete_failed)

    def _flush_retries(self, batch: list[tuple[Lease, int]]) -> None:
        failed = change_visibility(self.client, self.config.queue_url, [lease.message for lease, _ in batch],
                                   [delay for _, delay in batch])
        for lease, _ in batch:
            self.leases.remove(lease)
        if failed:
            # The lease had expired: the message is already visible again, which is what we wanted.
            log_event(log, logging.INFO, "retry_visibility_failed", failed=failed)

    def _return_now(self, leases: list[Lease], why: str) -> None:
        """Make messages visible again at once (visibility 0): another worker can start them now."""
        if not leases:
            return
        failed = change_visibility(self.client, self.config.queue_url, [lease.message for lease in leases], 0)
        for lease in leases:
            self.leases.remove(lease)
        with self._stats_lock:
            self.stats.returned += len(leases) - len(failed)
        self.metrics.incr("returned", len(leases) - len(failed))
        log_event(log, logging.INFO, "messages_returned", count=len(leases), failed=len(failed), why=why)

    # -- misc ----------------------------------------------------------------------------------------
    def _on_extend(self, ok: int, failed: int) -> None:
        if ok:
            self.metrics.incr("visibility_extended", ok)
        if failed:
            self.metrics.incr("visibility_extend_failed", failed)

    def _fail(self, exc: BaseException) -> None:
        log_event(log, logging.ERROR, "worker_fatal", error=f"{type(exc).__name__}: {exc}")
        self._fatal = exc
        self._stop_requested.set()
