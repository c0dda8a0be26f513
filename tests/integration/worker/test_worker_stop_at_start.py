"""A worker stopped while it is still starting exits 0, not -15.

Seen once under heavy load: the supervisor scaled down a replacement worker it had just started; SIGTERM
arrived before the worker had installed its handler (it was still importing) and killed it, so the
supervisor recorded exit -15 for a graceful stop. Here the stop comes milliseconds after spawn, well
inside interpreter start-up and the imports, on any machine.
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from _worker_helpers import subprocess_env
from batchq.sqs.snapshot import QueueSnapshot
from batchq.worker.supervisor import Supervisor, worker_command

pytestmark = pytest.mark.integration


def _backlog(n: int):
    return lambda: QueueSnapshot(taken_at=time.time(), visible=n, in_flight=0, delayed=0)


def test_workers_sigtermed_right_after_spawn_exit_cleanly(sqs_endpoint, queue_spec_factory):
    _, urls = queue_spec_factory()
    sup = Supervisor(
        None, urls.input,
        worker_command(["--queue", urls.input, "--results-queue", urls.results, "--handlers", "worker_testjobs",
                        "--no-entry-points", "--wait-seconds", "1", "--grace-period", "5"]),
        min_workers=0, max_workers=3, backlog_per_worker=1, stop_timeout_s=60,
        env=subprocess_env(sqs_endpoint), snapshot=_backlog(3),
    )
    assert sup.hold_stop_signals
    assert sup.step() == 3 and len(sup.running) == 3
    sup.shutdown()  # SIGTERM to all three at once, milliseconds after Popen
    assert sup.stats.killed == 0
    assert sup.stats.stop_exit_codes == [0, 0, 0]


def test_a_held_sigterm_is_delivered_to_the_worker_not_lost(sqs_endpoint, queue_spec_factory):
    """Started the way the supervisor starts it (stop signals blocked) and SIGTERMed before Python runs:
    the pending signal reaches the early handler once it unblocks, and the worker exits 0 on its own."""
    import signal

    _, urls = queue_spec_factory()
    cmd = worker_command(["--queue", urls.input, "--results-queue", urls.results, "--handlers", "worker_testjobs",
                          "--no-entry-points", "--wait-seconds", "1"])
    held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    try:
        proc = subprocess.Popen(cmd, env=subprocess_env(sqs_endpoint), stdin=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-2000:]
    assert "worker_stopped_before_start" in err


def test_only_batchq_workers_are_started_with_stop_signals_held():
    assert Supervisor(None, "q", worker_command(["--queue", "q"])).hold_stop_signals
    # Another program would never unblock them: it must get SIGTERM the ordinary way.
    assert not Supervisor(None, "q", [sys.executable, "-c", "pass"]).hold_stop_signals
    assert Supervisor(None, "q", ["true"], hold_stop_signals=True).hold_stop_signals
