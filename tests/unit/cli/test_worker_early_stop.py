"""The ``batchq worker`` early stop handler (batchq.cli._early_stop): what it records, when it is installed.
The real process case (SIGTERM milliseconds after spawn → exit 0) is
tests/integration/worker/test_worker_stop_at_start.py."""

from __future__ import annotations

import os
import signal
import threading

import pytest
from batchq.cli import _command
from batchq.cli._early_stop import STOP_SIGNALS, EarlyStop


@pytest.fixture
def restore_signals():
    saved = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    yield
    signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def test_records_the_first_stop_signal_instead_of_dying(restore_signals):
    early = EarlyStop.install()
    assert not early.requested
    os.kill(os.getpid(), signal.SIGTERM)
    os.kill(os.getpid(), signal.SIGINT)
    assert early.requested and early.signal_name == "SIGTERM"


def test_a_signal_held_pending_while_blocked_is_delivered_on_install(restore_signals):
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # were it delivered now, the test process would die
    # Aimed at this (main) thread: the mask is per thread, and a process-wide kill would be taken by any
    # other thread of the test run that does not block it (and kill the run).
    signal.pthread_kill(threading.get_ident(), signal.SIGTERM)
    assert signal.SIGTERM in signal.sigpending()
    early = EarlyStop.install()
    assert early.signal_name == "SIGTERM"
    assert signal.SIGTERM not in signal.pthread_sigmask(signal.SIG_BLOCK, [])


@pytest.mark.parametrize("argv, command", [
    (["worker", "--queue", "q"], "worker"),
    (["--log-level", "INFO", "worker"], "worker"),
    (["--log-level=DEBUG", "worker", "--spec", "s.yaml"], "worker"),
    (["workers", "--max", "3"], "workers"),
    (["drain", "--spec", "worker"], "drain"),
    ([], None),
])
def test_the_command_is_read_without_importing_the_sub_commands(argv, command):
    assert _command(argv) == command
