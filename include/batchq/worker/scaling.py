"""The ``local`` scaling rule: what ``batchq workers`` runs and what the planner simulates (one code)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field


def desired_workers(backlog: int, backlog_per_worker: int, min_workers: int = 0, max_workers: int = 1) -> int:
    """The autoscaling rule: ``ceil(backlog / backlog_per_worker)`` clamped to ``[min, max]``.

    The same rule KEDA's ``aws-sqs-queue`` scaler (``queueLength``) and ECS target tracking on
    "backlog per task" apply; ``backlog`` should include in-flight messages so running work is not
    scaled away.
    """
    if backlog_per_worker < 1:
        raise ValueError(f"backlog_per_worker must be >= 1, got {backlog_per_worker}")
    if min_workers < 0 or max_workers < min_workers:
        raise ValueError(f"need 0 <= min_workers <= max_workers, got {min_workers}..{max_workers}")
    return max(min_workers, min(max_workers, math.ceil(max(backlog, 0) / backlog_per_worker)))


@dataclass
class ScaleState:
    """Pure scale-down damping: remembers since when the target has been below the current size."""

    cooldown_s: float
    below_since: float | None = None

    def target(self, desired: int, current: int, now: float) -> int:
        """How many workers to run now, given the rule's ``desired`` and the ``current`` count."""
        if desired >= current:
            self.below_since = None
            return desired
        if self.below_since is None:
            self.below_since = now
        if now - self.below_since >= self.cooldown_s:
            self.below_since = None
            return desired
        return current


@dataclass
class LocalScaling:
    """The ``batchq workers`` supervisor's rule: :func:`desired_workers` on ``visible + in_flight``,
    scale-up at once, scale-down after the lower target held for ``cooldown_s``.

    :param backlog_per_worker: B in ``ceil(backlog / B)``.
    :param min_workers: floor.
    :param max_workers: ceiling.
    :param cooldown_s: how long a lower target must hold before workers are stopped.
    """

    backlog_per_worker: int
    min_workers: int
    max_workers: int
    cooldown_s: float
    state: ScaleState = field(init=False)

    def __post_init__(self) -> None:
        desired_workers(0, self.backlog_per_worker, self.min_workers, self.max_workers)  # validates
        self.state = ScaleState(self.cooldown_s)

    def target(self, visible: int, in_flight: int, current: int, now: float) -> tuple[int, int]:
        """``(desired, target)``: the rule's answer and what to run now after damping."""
        desired = desired_workers(visible + in_flight, self.backlog_per_worker, self.min_workers, self.max_workers)
        return desired, self.state.target(desired, current, now)
