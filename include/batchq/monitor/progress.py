"""What a wait says in its task log while it waits: depth, in flight, rate and ETA at a steady cadence,
and — plainly — when the input queue has nobody consuming it.

Forgetting to start the workers otherwise produces silence: the wait just waits, and without a notifier
configured even the ``stalled`` alert goes nowhere. :class:`WaitProgress` is fed every snapshot of the
wait (by the trigger and by the sensor's poke path, the same object) and answers with the lines to log
now. Pure: no I/O, no Airflow.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from batchq.monitor.trend import drain_rate, eta_seconds
from batchq.sqs.snapshot import QueueSnapshot

#: Seconds between two progress lines (the first snapshot is always logged).
PROGRESS_EVERY_S = 60.0
#: Seconds the backlog may sit unchanged with nothing in flight before the log says nobody consumes it.
NO_CONSUMER_AFTER_S = 120.0


@dataclass(frozen=True)
class ProgressLine:
    """One line for the task log; ``warning`` lines say something needs a person (no consumer)."""

    text: str
    warning: bool = False


@dataclass
class WaitProgress:
    """Decides when a wait logs its progress, and notices an input queue with no consumer.

    "No consumer" = backlog > 0, nothing in flight, and the backlog has not stepped down for
    ``no_consumer_after_s``: messages sit in the queue and no worker takes them.

    :param every_s: seconds between progress lines.
    :param no_consumer_after_s: how long the backlog may sit still with nothing in flight before the log
        says so.
    """

    every_s: float = PROGRESS_EVERY_S
    no_consumer_after_s: float = NO_CONSUMER_AFTER_S
    logged_at: float | None = None
    backlog: int | None = None
    #: When the backlog last stepped down (or something was in flight, or the queue was empty).
    moving_at: float | None = None
    idle_reported: bool = False
    recent: list[QueueSnapshot] = field(default_factory=list)

    @classmethod
    def configured(cls) -> WaitProgress:
        """With this module's :data:`PROGRESS_EVERY_S` and :data:`NO_CONSUMER_AFTER_S`, read at call time."""
        return cls(every_s=PROGRESS_EVERY_S, no_consumer_after_s=NO_CONSUMER_AFTER_S)

    def observe(self, snapshot: QueueSnapshot, now: float, recent: Sequence[QueueSnapshot] | None = None) -> list[ProgressLine]:
        """Take one snapshot; return the lines to log now (usually none).

        :param recent: the snapshots the rate/ETA are computed over (the wait's ETA window); default
            the ones this object has seen.
        """
        self.recent = [*self.recent, snapshot][-20:]
        window = list(recent) if recent else self.recent
        backlog = snapshot.backlog
        if self.moving_at is None or backlog == 0 or snapshot.in_flight > 0 or (self.backlog is not None and backlog < self.backlog):
            self.moving_at = now
            self.idle_reported = False
        self.backlog = backlog
        lines: list[ProgressLine] = []
        idle_s = now - self.moving_at
        idle = backlog > 0 and snapshot.in_flight == 0 and idle_s >= self.no_consumer_after_s
        if idle and not self.idle_reported:
            self.idle_reported = True
            lines.append(ProgressLine(no_consumer_text(snapshot, idle_s), warning=True))
            self.logged_at = now
            return lines
        if self.logged_at is None or now - self.logged_at >= self.every_s:
            self.logged_at = now
            text = progress_text(snapshot, window)
            if idle:
                text += f"; {no_consumer_text(snapshot, idle_s)}"
            lines.append(ProgressLine(text, warning=idle))
        return lines


def progress_text(snapshot: QueueSnapshot, window: Sequence[QueueSnapshot]) -> str:
    """``backlog 96 (visible 90, in flight 6, delayed 0), DLQ 0; draining 3.2/s, ETA 30s``."""
    dlq = "" if snapshot.dlq_visible is None else f", DLQ {snapshot.dlq_visible}"
    rate = drain_rate(window) if len(window) >= 2 else None
    eta = eta_seconds(window) if window else None
    if snapshot.is_empty:
        pace = "empty"
    elif rate is None or rate <= 0:
        pace = "not draining, ETA unknown"
    else:
        pace = f"draining {rate:.2f}/s, ETA {'unknown' if eta is None else f'{eta:.0f}s'}"
    return (
        f"input backlog {snapshot.backlog} (visible {snapshot.visible}, in flight {snapshot.in_flight}, "
        f"delayed {snapshot.delayed}){dlq}; {pace}"
    )


def no_consumer_text(snapshot: QueueSnapshot, idle_s: float) -> str:
    return (
        f"NO CONSUMER: {snapshot.backlog} message(s) waiting, none in flight, backlog unchanged for {idle_s:.0f}s "
        "— are the workers running on this queue?"
    )


__all__ = ["NO_CONSUMER_AFTER_S", "PROGRESS_EVERY_S", "ProgressLine", "WaitProgress", "no_consumer_text", "progress_text"]
