"""A local autoscaler: starts and stops ``batchq worker`` processes from the input queue's depth.

Every ``poll_interval_s`` it reads a :class:`~batchq.sqs.snapshot.QueueSnapshot` and applies the one scaling
rule, :class:`batchq.capacity.LocalScaling`: ``desired_workers`` on ``visible + in_flight`` (in-flight
counts so that running work is not scaled away; ``batchq plan-capacity --policy local`` simulates this
same code) — the same rule KEDA's ``aws-sqs-queue`` scaler and ECS target tracking apply in
``deploy/``. Scale-up is immediate; scale-down waits until the lower target has held for
``scale_down_cooldown_s`` (so a momentary dip between batches does not flap processes) and uses
SIGTERM, so the worker finishes what it runs and hands back what it prefetched. A worker that dies
on its own is restarted (after a short backoff if it keeps dying young).
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from batchq.metrics import Metrics, log_event
from batchq.sqs import get_snapshot
from batchq.sqs.snapshot import QueueSnapshot
from batchq.worker.scaling import LocalScaling

log = logging.getLogger(__name__)

#: the signals that ask a worker to stop (held blocked while a worker starts, see ``hold_stop_signals``)
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@dataclass
class _Proc:
    popen: subprocess.Popen[bytes]
    started_at: float
    stopping_since: float | None = None


@dataclass
class SupervisorStats:
    started: int = 0
    stopped: int = 0
    restarted: int = 0
    killed: int = 0
    max_running: int = 0
    #: exit codes of the workers it stopped (SIGTERM), in order; 0 = a clean, graceful stop
    stop_exit_codes: list[int] = field(default_factory=list)
    history: list[tuple[float, int, int]] = field(default_factory=list)  # (t, backlog, running)


class Supervisor:
    """Keeps ``desired_workers(visible + in_flight, backlog_per_worker, min, max)`` workers running.

    :param client: boto3 SQS client (for GetQueueAttributes only).
    :param queue_url: the input queue.
    :param worker_command: argv of one worker process (e.g. ``python -m batchq.cli worker ...``).
    :param min_workers: floor (0 allows scale to zero).
    :param max_workers: ceiling.
    :param backlog_per_worker: B in ``ceil(backlog / B)`` (KEDA's ``queueLength``).
    :param poll_interval_s: seconds between snapshots.
    :param scale_down_cooldown_s: how long a lower target must hold before workers are stopped.
    :param stop_timeout_s: after SIGTERM, how long a worker may take before SIGKILL (its grace period
        plus a long poll).
    :param restart_backoff_s: wait before replacing a worker that died within ``min_uptime_s`` of start.
    :param hold_stop_signals: start each process with SIGTERM/SIGINT blocked, so a stop sent while it is
        still starting stays pending until its handler is in place (``batchq worker`` unblocks them
        then, :mod:`batchq.cli._early_stop`) instead of killing it. Default: only for a
        :func:`worker_command` (another program would never unblock them and end up SIGKILLed).
    """

    def __init__(
        self,
        client: Any,
        queue_url: str,
        worker_command: Sequence[str],
        *,
        min_workers: int = 0,
        max_workers: int = 4,
        backlog_per_worker: int = 100,
        poll_interval_s: float = 5.0,
        scale_down_cooldown_s: float = 30.0,
        stop_timeout_s: float = 60.0,
        restart_backoff_s: float = 2.0,
        min_uptime_s: float = 5.0,
        env: dict[str, str] | None = None,
        metrics: Metrics | None = None,
        snapshot: Callable[[], QueueSnapshot] | None = None,
        hold_stop_signals: bool | None = None,
    ):
        self.rule = LocalScaling(backlog_per_worker, min_workers, max_workers, scale_down_cooldown_s)  # validates
        self.client = client
        self.queue_url = queue_url
        self.worker_command = list(worker_command)
        self.min_workers = min_workers
        self.max_workers = max_workers
        self.backlog_per_worker = backlog_per_worker
        self.poll_interval_s = poll_interval_s
        self.stop_timeout_s = stop_timeout_s
        self.restart_backoff_s = restart_backoff_s
        self.min_uptime_s = min_uptime_s
        self.env = env
        self.metrics = metrics or Metrics("supervisor")
        self._snapshot = snapshot or (lambda: get_snapshot(self.client, self.queue_url))
        self.scale = self.rule.state
        self.stats = SupervisorStats()
        self.running: list[_Proc] = []
        self.stopping: list[_Proc] = []
        self._stop = threading.Event()
        self._restart_not_before = 0.0
        self._preexec = _pdeathsig_preexec()
        self.hold_stop_signals = is_worker_command(self.worker_command) if hold_stop_signals is None else hold_stop_signals

    # -- public ------------------------------------------------------------------------------------
    def run(self, until: Callable[[Supervisor], bool] | None = None) -> SupervisorStats:
        """Loop until :meth:`stop` (or ``until(self)`` is true), then stop every worker gracefully."""
        try:
            while not self._stop.is_set():
                self.step()
                if until is not None and until(self):
                    break
                self._stop.wait(self.poll_interval_s)
        finally:
            self.shutdown()
        return self.stats

    def stop(self) -> None:
        self._stop.set()

    def install_signal_handlers(self) -> None:
        def handle(signum: int, _frame: Any) -> None:
            log_event(log, logging.INFO, "supervisor_stopping", signal=signal.Signals(signum).name)
            self.stop()

        signal.signal(signal.SIGTERM, handle)
        signal.signal(signal.SIGINT, handle)

    @property
    def pids(self) -> list[int]:
        return [p.popen.pid for p in self.running]

    def step(self, now: float | None = None) -> int:
        """One control cycle: reap, read the queue, compute the target, start/stop. Returns the target."""
        now = time.monotonic() if now is None else now
        self._reap(now)
        try:
            snap = self._snapshot()
        except Exception as exc:  # noqa: BLE001 - keep the current pool when the endpoint hiccups
            log_event(log, logging.WARNING, "snapshot_failed", error=f"{type(exc).__name__}: {exc}")
            return len(self.running)
        backlog = snap.visible + snap.in_flight
        desired, target = self.rule.target(snap.visible, snap.in_flight, len(self.running), now)
        if target > len(self.running):
            if now >= self._restart_not_before:
                for _ in range(target - len(self.running)):
                    self._start_one(now)
        elif target < len(self.running):
            for _ in range(len(self.running) - target):
                self._stop_one(now)
        self.stats.max_running = max(self.stats.max_running, len(self.running))
        self.stats.history.append((round(now, 3), backlog, len(self.running)))
        del self.stats.history[:-1000]
        self.metrics.gauge("workers", len(self.running))
        self.metrics.gauge("backlog", backlog)
        log_event(log, logging.DEBUG, "supervisor_tick", backlog=backlog, desired=desired, target=target,
                  running=len(self.running), stopping=len(self.stopping))
        return target

    def shutdown(self) -> None:
        """SIGTERM every worker, wait up to ``stop_timeout_s``, SIGKILL stragglers."""
        now = time.monotonic()
        while self.running:
            self._stop_one(now)
        deadline = now + self.stop_timeout_s
        for proc in self.stopping:
            try:
                self.stats.stop_exit_codes.append(proc.popen.wait(max(0.0, deadline - time.monotonic())))
            except subprocess.TimeoutExpired:
                proc.popen.kill()
                self.stats.stop_exit_codes.append(proc.popen.wait())
                self.stats.killed += 1
        self.stopping.clear()

    # -- internals -----------------------------------------------------------------------------------
    def _start_one(self, now: float) -> None:
        # The preexec_fn only calls prctl (see _pdeathsig_preexec), so it is safe with threads.
        # The child inherits this thread's signal mask across fork and exec: blocking the stop signals
        # around Popen starts the worker with them blocked (see hold_stop_signals).
        held = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS) if self.hold_stop_signals else None
        try:
            popen = subprocess.Popen(
                self.worker_command, env=self.env, stdin=subprocess.DEVNULL, preexec_fn=self._preexec  # noqa: PLW1509
            )
        finally:
            if held is not None:
                signal.pthread_sigmask(signal.SIG_SETMASK, held)
        self.running.append(_Proc(popen, now))
        self.stats.started += 1
        log_event(log, logging.INFO, "worker_process_started", pid=popen.pid, running=len(self.running))

    def _stop_one(self, now: float) -> None:
        # Newest first: the oldest workers have warm connections and the longest-running jobs.
        proc = self.running.pop()
        proc.stopping_since = now
        try:
            proc.popen.send_signal(signal.SIGTERM)
        except ProcessLookupError:
            pass
        self.stopping.append(proc)
        self.stats.stopped += 1
        log_event(log, logging.INFO, "worker_process_stopping", pid=proc.popen.pid, running=len(self.running))

    def _reap(self, now: float) -> None:
        for proc in list(self.running):
            code = proc.popen.poll()
            if code is None:
                continue
            # Died on its own (crash, OOM kill, SIGKILL): replace it. Its in-flight messages reappear
            # after their visibility timeout; nothing is lost.
            self.running.remove(proc)
            self.stats.restarted += 1
            self.metrics.incr("worker_died")
            log_event(log, logging.WARNING, "worker_process_died", pid=proc.popen.pid, returncode=code,
                      uptime_s=round(now - proc.started_at, 1))
            if now - proc.started_at < self.min_uptime_s:
                self._restart_not_before = now + self.restart_backoff_s
        for proc in list(self.stopping):
            code = proc.popen.poll()
            if code is not None:
                self.stats.stop_exit_codes.append(code)
                self.stopping.remove(proc)
            elif proc.stopping_since is not None and now - proc.stopping_since > self.stop_timeout_s:
                proc.popen.kill()
                self.stats.killed += 1


def wait_for_queue_url(
    client: Any,
    name: str,
    *,
    stop: threading.Event | None = None,
    poll_interval_s: float = 2.0,
    log_every_s: float = 30.0,
) -> str | None:
    """The URL of queue ``name`` once it exists, polling every ``poll_interval_s``; logs that it is
    waiting at once and then every ``log_every_s``. ``None`` if ``stop`` is set first. Other errors
    (credentials, endpoint down) are raised: waiting cannot fix them."""
    from batchq.errors import QueueNotFound
    from batchq.sqs import get_queue_url

    stop = stop or threading.Event()
    last_log = -float("inf")
    started = time.monotonic()
    while not stop.is_set():
        try:
            return get_queue_url(client, name)
        except QueueNotFound:
            now = time.monotonic()
            if now - last_log >= log_every_s:
                log_event(log, logging.INFO, "waiting_for_queue", queue=name, waited_s=round(now - started),
                          hint="no worker starts until it exists (the DAG's ensure_queues task or "
                               "`batchq queues create` creates it)")
                last_log = now
        stop.wait(poll_interval_s)
    return None


def _pdeathsig_preexec() -> Callable[[], None] | None:
    """A ``preexec_fn`` that asks Linux to SIGTERM the child if the supervisor dies (even by SIGKILL),
    so a crashed supervisor does not leave orphan workers polling forever; ``None`` elsewhere.

    libc's ``prctl`` is looked up here, in the parent: the child, between fork and exec, only makes one
    foreign call (no import, no lock that another thread of the parent might have held at fork time).
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        prctl = ctypes.CDLL("libc.so.6", use_errno=True).prctl
    except OSError:
        log.debug("prctl unavailable: workers will not follow a dying supervisor")
        return None
    pr_set_pdeathsig, sigterm = 1, int(signal.SIGTERM)
    return lambda: prctl(pr_set_pdeathsig, sigterm)


def worker_command(worker_args: Sequence[str], python: str | None = None) -> list[str]:
    """argv for one worker process: ``python -m batchq.cli worker <args>``."""
    return [python or sys.executable, *_WORKER_ENTRY, *worker_args]


_WORKER_ENTRY = ("-m", "batchq.cli", "worker")


def is_worker_command(command: Sequence[str]) -> bool:
    """Whether ``command`` is one :func:`worker_command` built (a ``batchq worker`` process)."""
    return tuple(command[1:1 + len(_WORKER_ENTRY)]) == _WORKER_ENTRY
