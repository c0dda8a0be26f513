"""Catch a stop signal from the first moment of a ``batchq worker`` process.

A supervisor (``batchq workers``, Kubernetes, ECS) may stop a worker it has just started. Without a
handler the default action of SIGTERM kills the process (exit -15) while it is still importing (pydantic,
botocore: a second or more on a loaded machine), which the supervisor counts as an unclean stop. So the
``worker`` command installs this handler before any heavy import: it only records that a stop was asked
for; :func:`batchq.cli.worker.run_worker` hands over to the worker's own handlers and, if a stop came
during startup, exits 0 without consuming anything.

A process started by :class:`~batchq.worker.supervisor.Supervisor` starts with SIGTERM/SIGINT *blocked*
(closing the window before Python runs any code at all); :meth:`EarlyStop.install` unblocks them once the
handler is in place, so a signal that was held pending is delivered here, not lost.
"""

from __future__ import annotations

import signal
from typing import Any

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class EarlyStop:
    """Records the first stop signal received before the worker's own handlers are installed."""

    def __init__(self) -> None:
        self.signal_name: str | None = None

    @property
    def requested(self) -> bool:
        return self.signal_name is not None

    def _record(self, signum: int, _frame: Any) -> None:
        if self.signal_name is None:
            self.signal_name = signal.Signals(signum).name

    @classmethod
    def install(cls) -> EarlyStop:
        """Install the recording handler for SIGTERM/SIGINT, then unblock them (see the module doc)."""
        early = cls()
        for sig in STOP_SIGNALS:
            signal.signal(sig, early._record)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        return early
