"""What the drainer writes to, and how a sink says "not now" versus "never".

A sink is the real-time system's side of the pattern. It must be idempotent on ``key`` (results are
delivered at least once) and must have *committed* a write when :meth:`Sink.write` returns, because the
drainer deletes the results messages right after.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from batchq.errors import BatchqError
from batchq.messages import WorkResult


class SinkUnavailable(BatchqError):
    """Transient: the sink is down, overloaded or pushing back. The drainer keeps the batch and retries.

    :param retry_after_s: how long the sink asked us to wait (HTTP ``Retry-After``), if it said.
    :param backpressure: True when the sink is alive but asked us to slow down (429/503): the limiter
        lowers its rate, instead of treating it as an outage.
    """

    def __init__(self, message: str, retry_after_s: float | None = None, backpressure: bool = False):
        super().__init__(message)
        self.retry_after_s = retry_after_s
        self.backpressure = backpressure


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


def merge_duplicates(results: Sequence[WorkResult]) -> list[WorkResult]:
    """Collapse results for the same key into the one that must win: a ``succeeded`` result beats a
    ``failed`` one whatever the order they arrived in (at-least-once delivery has no order), and among
    equals the first is kept. This is the rule every sink applies, so the outcome never depends on
    which duplicate was delivered first."""
    chosen: dict[str, WorkResult] = {}
    for r in results:
        prev = chosen.get(r.key)
        if prev is None or (prev.status == "failed" and r.status == "succeeded"):
            chosen[r.key] = r
    return list(chosen.values())
