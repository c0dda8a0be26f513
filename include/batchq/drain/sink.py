"""What the drainer writes to, and how a sink says "not now" versus "never".

A sink is the real-time system's side of the pattern. It must be idempotent on ``key`` (results are
delivered at least once) and must have *committed* a write when :meth:`Sink.write` returns, because the
drainer deletes the results messages right after. :class:`~batchq.errors.SinkUnavailable` (transient)
lives in the kernel because the results store raises it too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from batchq.errors import BatchqError, SinkUnavailable
from batchq.messages import WorkResult


class SinkRejected(BatchqError):
    """Permanent: the sink refused these results (e.g. HTTP 400). Retrying cannot help, so the drainer
    quarantines them with this reason instead of retrying forever."""


class SinkMisconfigured(BatchqError):
    """Fatal for the drain: the sink refuses *every* write for a reason neither retrying nor quarantining
    can fix (HTTP 401/403: credentials; 3xx: a wrong URL). The drainer hands the batch back to the queue
    untouched and stops with this message; nothing is quarantined as failed."""


@runtime_checkable
class Sink(Protocol):
    """A destination for results. ``write`` is idempotent on ``key`` and returns only once committed."""

    #: short description for logs and reports (never contains credentials)
    description: str

    def write(self, results: Sequence[WorkResult]) -> None: ...

    def close(self) -> None: ...


__all__ = ["Sink", "SinkMisconfigured", "SinkRejected", "SinkUnavailable"]
