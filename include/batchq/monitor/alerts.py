"""Backlog alerts that fire before the incident: one pure detector over queue snapshots.

:class:`BacklogAlerts` is fed the same :class:`~batchq.sqs.snapshot.QueueSnapshot` stream as the wait decision
(:class:`~batchq.monitor.waits.InputWait`) and answers with :class:`AlertChange` s — an alert *fired* or
*resolved*. Five kinds (:class:`AlertKind`):

* ``growing`` — the backlog's robust trend (Theil–Sen slope over ``window_s``) rose by more than
  ``max(growth_min_messages, growth_fraction × expected)``, is still rising over the recent half of the
  window, and consumers exist (in at least half of the window's snapshots something was in flight or
  the backlog stepped down): the workers cannot keep up.
* ``stalled`` — backlog > 0 and no progress (no step down) for ``stall_after_s``: nobody is consuming.
* ``old`` — the oldest message is older than ``max_age_s`` (only when the caller knows the age).
* ``dead_letters`` — the DLQ holds at least ``dlq_threshold`` messages.
* ``late`` — at the current drain rate (:func:`batchq.monitor.trend.eta_seconds`, the one ETA) the backlog
  empties after the run's deadline (less ``late_margin_s``), or it does not drain at all: the alert
  that comes *before* the incident.

Hysteresis: a kind fires once when its condition holds, stays open while it holds, and resolves only
after its (separate, laxer) clear condition has held for ``resolve_after_s``; each fire → resolve is one
episode. Every piece of state is JSON primitives (:meth:`BacklogAlerts.to_dict`), so it survives a
trigger's serialise / deserialise. No I/O, no Airflow.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from enum import Enum
from statistics import median
from typing import Any

from batchq.monitor.trend import eta_seconds
from batchq.sqs.snapshot import QueueSnapshot

#: Episodes kept in the state (and pushed to XCom): the oldest resolved ones go first.
MAX_EPISODES = 50
#: Snapshots kept in the trend window (thinned to evenly spaced points; the newest is always kept).
MAX_WINDOW_POINTS = 60


class AlertKind(str, Enum):
    GROWING = "growing"
    STALLED = "stalled"
    OLD = "old"
    DEAD_LETTERS = "dead_letters"
    LATE = "late"


ALL_KINDS = tuple(k.value for k in AlertKind)




def theil_sen_slope(ts: Sequence[float], ys: Sequence[float]) -> float | None:
    """Median of the pairwise slopes (units of y per unit of t): one noisy or stale counter reading
    cannot tip it, unlike a least-squares fit. ``None`` with fewer than two distinct times."""
    slopes = [(ys[j] - ys[i]) / (ts[j] - ts[i]) for i in range(len(ts)) for j in range(i + 1, len(ts)) if ts[j] != ts[i]]
    return median(slopes) if slopes else None


@dataclass(frozen=True)
class AlertPolicy:
    """Thresholds of the detector (validated on construction; JSON round trip with :meth:`to_dict`).

    :param window_s: trend window; ``growing`` and ``late`` judge only once the window spans half of it
        with at least ``min_points`` snapshots.
    :param min_points: snapshots needed before a trend counts.
    :param growth_min_messages: ``growing`` needs the backlog to rise at least this much over the window ...
    :param growth_fraction: ... and at least this fraction of the run's expected count (or of the
        backlog at the window's start when there is no run).
    :param stall_after_s: ``stalled`` after this long with backlog > 0 and no step down.
    :param max_age_s: ``old`` when the oldest message is older (``None``: never).
    :param dlq_threshold: ``dead_letters`` when the DLQ holds at least this many.
    :param late_margin_s: ``late`` fires when the projected finish is within this of the deadline.
    :param resolve_after_s: an open alert resolves after its clear condition held this long.
    :param kinds: the kinds evaluated (default all).
    """

    window_s: float = 600.0
    min_points: int = 5
    growth_min_messages: int = 10
    growth_fraction: float = 0.05
    stall_after_s: float = 600.0
    max_age_s: float | None = 3600.0
    dlq_threshold: int = 1
    late_margin_s: float = 0.0
    resolve_after_s: float = 120.0
    kinds: tuple[str, ...] = ALL_KINDS

    def __post_init__(self) -> None:
        for name in ("window_s", "stall_after_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"AlertPolicy.{name} must be > 0, got {getattr(self, name)!r}")
        for name in ("growth_min_messages", "growth_fraction", "late_margin_s", "resolve_after_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"AlertPolicy.{name} must be >= 0, got {getattr(self, name)!r}")
        if self.min_points < 2:
            raise ValueError(f"AlertPolicy.min_points must be >= 2, got {self.min_points}")
        if self.dlq_threshold < 1:
            raise ValueError(f"AlertPolicy.dlq_threshold must be >= 1, got {self.dlq_threshold}")
        if self.max_age_s is not None and self.max_age_s <= 0:
            raise ValueError(f"AlertPolicy.max_age_s must be > 0 (or None), got {self.max_age_s}")
        unknown = set(self.kinds) - set(ALL_KINDS)
        if unknown:
            raise ValueError(f"AlertPolicy.kinds: unknown {sorted(unknown)} (known: {', '.join(ALL_KINDS)})")
        object.__setattr__(self, "kinds", tuple(AlertKind(k).value for k in self.kinds))

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["kinds"] = list(self.kinds)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AlertPolicy:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}  # ignore keys a newer release added
        if "kinds" in values:
            values["kinds"] = tuple(values["kinds"])
        return cls(**values)


@dataclass(frozen=True)
class AlertChange:
    """An alert fired or resolved (what notifiers are told).

    :param kind: an :class:`AlertKind` value.
    :param state: ``fired`` or ``resolved``.
    :param at: epoch seconds.
    :param message: what was seen, for a human.
    :param started_at: when the episode fired (equal to ``at`` for ``fired``).
    """

    kind: str
    state: str
    at: float
    message: str
    started_at: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AlertChange:
        return cls(str(data["kind"]), str(data["state"]), float(data["at"]), str(data.get("message", "")), float(data.get("started_at", data["at"])))

    def describe(self) -> str:
        return f"backlog alert {self.kind} {self.state}: {self.message}"


@dataclass(frozen=True)
class _Verdict:
    """One kind's reading of the window: ``holds`` fires it, ``clears`` (laxer) lets it resolve."""

    holds: bool
    clears: bool
    message: str = ""


_UNKNOWN = _Verdict(False, False)


def _fmt_rate(per_s: float) -> str:
    return f"{per_s * 60:+.1f}/min"


def evaluate(
    window: Sequence[QueueSnapshot],
    policy: AlertPolicy,
    now: float,
    *,
    progress_at: float | None,
    expected: int | None = None,
    deadline: float | None = None,
    oldest_age_s: float | None = None,
) -> dict[str, _Verdict]:
    """Each evaluated kind's verdict for the current window (newest snapshot last). Pure."""
    last = window[-1]
    backlog = last.backlog
    span = last.taken_at - window[0].taken_at
    trended = len(window) >= policy.min_points and span >= policy.window_s / 2
    out: dict[str, _Verdict] = {}
    of = f" of {expected} expected" if expected else ""

    if AlertKind.GROWING.value in policy.kinds:
        if backlog == 0:
            out["growing"] = _Verdict(False, True)
        elif not trended:
            out["growing"] = _UNKNOWN
        else:
            slope = theil_sen_slope([s.taken_at for s in window], [s.backlog for s in window]) or 0.0
            # Consumers existed over the window, not just at its end: a snapshot shows one when something
            # is in flight or the backlog stepped down since the previous one; half of them must. (Workers
            # that appear as the curve turns are the fix arriving, not workers losing ground.)
            busy = sum(1 for i, s in enumerate(window) if s.in_flight > 0 or (i and s.backlog < window[i - 1].backlog))
            consumers = busy >= len(window) / 2
            needed = max(policy.growth_min_messages, policy.growth_fraction * (expected or window[0].backlog))
            rise = slope * span
            # Still rising now: consumers that just arrived and turned the curve down are not "losing".
            recent = [s for s in window if s.taken_at >= last.taken_at - span / 2]
            rising_now = (theil_sen_slope([s.taken_at for s in recent], [s.backlog for s in recent]) or 0.0) > 0
            out["growing"] = _Verdict(
                consumers and rising_now and rise >= needed and rise > 0,
                slope <= 0,
                f"backlog {backlog}{of} growing {_fmt_rate(slope)} over {span:.0f}s while consumers are active",
            )

    if AlertKind.STALLED.value in policy.kinds:
        idle = 0.0 if progress_at is None else now - progress_at
        holds = backlog > 0 and idle >= policy.stall_after_s
        out["stalled"] = _Verdict(holds, not holds, f"backlog {backlog}{of} with no progress for {idle:.0f}s")

    if AlertKind.OLD.value in policy.kinds and policy.max_age_s is not None:
        if backlog == 0:
            out["old"] = _Verdict(False, True)
        elif oldest_age_s is None:
            out["old"] = _UNKNOWN
        else:
            # Resolve only well below the threshold, so an age hovering around it does not flap.
            out["old"] = _Verdict(oldest_age_s > policy.max_age_s, oldest_age_s <= 0.8 * policy.max_age_s, f"oldest message is {oldest_age_s:.0f}s old (threshold {policy.max_age_s:.0f}s)")

    if AlertKind.DEAD_LETTERS.value in policy.kinds:
        dlq = last.dlq_visible
        if dlq is None:
            out["dead_letters"] = _UNKNOWN
        else:
            out["dead_letters"] = _Verdict(dlq >= policy.dlq_threshold, dlq == 0, f"dead-letter queue holds {dlq} message(s)")

    if AlertKind.LATE.value in policy.kinds and deadline is not None:
        if backlog == 0:
            out["late"] = _Verdict(False, True)
        elif not trended:
            # Without a rate there is no ETA yet, but being past the deadline with work left is late.
            out["late"] = _Verdict(True, False, f"backlog {backlog}{of} past the deadline") if now > deadline else _UNKNOWN
        else:
            eta = eta_seconds(window)
            finish = math.inf if eta is None else now + eta
            holds = finish > deadline - policy.late_margin_s
            when = "not draining" if eta is None else f"ETA {eta:.0f}s, {finish - deadline:+.0f}s against the deadline"
            out["late"] = _Verdict(holds, not holds, f"backlog {backlog}{of}: {when}")
    return out


@dataclass
class BacklogAlerts:
    """The detector with its memory: the trend window, the last progress, open alerts and episodes.

    Feed every snapshot to :meth:`observe`; it returns the alerts that fired or resolved with it. State
    is JSON primitives (:meth:`to_dict` / :meth:`from_dict`).

    :param policy: thresholds.
    :param expected: the run's payload count (scales ``growing``; shown in messages); ``None`` between runs.
    :param deadline: epoch seconds the run must be drained by (``late``); see :func:`batchq.clock.resolve_deadline`.
    """

    policy: AlertPolicy = field(default_factory=AlertPolicy)
    expected: int | None = None
    deadline: float | None = None
    window: list[QueueSnapshot] = field(default_factory=list)
    progress_at: float | None = None
    last_backlog: int | None = None
    #: kind → {"started_at", "message", "clear_since"}
    open: dict[str, dict[str, Any]] = field(default_factory=dict)
    episodes: list[dict[str, Any]] = field(default_factory=list)

    def observe(self, snapshot: QueueSnapshot, now: float, oldest_age_s: float | None = None) -> list[AlertChange]:
        """Take one snapshot into account; return the alerts it fired or resolved (usually none)."""
        self._remember(snapshot)
        verdicts = evaluate(self.window, self.policy, now, progress_at=self.progress_at, expected=self.expected, deadline=self.deadline, oldest_age_s=oldest_age_s)
        changes: list[AlertChange] = []
        for kind, verdict in verdicts.items():
            current = self.open.get(kind)
            if current is None:
                if verdict.holds:
                    changes.append(self._fire(kind, now, verdict.message))
            elif verdict.holds or not verdict.clears:
                current["clear_since"] = None
                if verdict.holds:
                    current["message"] = verdict.message  # the latest reading, for the resolve message
            else:
                current["clear_since"] = current["clear_since"] if current["clear_since"] is not None else now
                if now - current["clear_since"] >= self.policy.resolve_after_s:
                    changes.append(self._resolve(kind, now, f"cleared ({snapshot.describe()})"))
        return changes

    def settle(self, now: float, reason: str = "queue drained") -> list[AlertChange]:
        """Resolve every open alert about the backlog (the wait ended ``drained``: stably empty).
        ``dead_letters`` stays open: the DLQ still needs someone."""
        return [self._resolve(kind, now, reason) for kind in list(self.open) if kind != AlertKind.DEAD_LETTERS.value]

    @property
    def open_kinds(self) -> list[str]:
        return sorted(self.open)

    # -- internals -------------------------------------------------------------------------------------
    def _remember(self, snap: QueueSnapshot) -> None:
        if self.last_backlog is None or snap.backlog < self.last_backlog or snap.backlog == 0 or self.progress_at is None:
            self.progress_at = snap.taken_at
        self.last_backlog = snap.backlog
        # Evenly spaced points over the window: the newest point is provisional (replaced by the next
        # one) until it lies ``spacing`` after the point before it, so fast polling cannot shrink the
        # window nor grow the state.
        spacing = self.policy.window_s / MAX_WINDOW_POINTS
        if len(self.window) >= 2 and self.window[-1].taken_at - self.window[-2].taken_at < spacing:
            self.window[-1] = snap
        else:
            self.window.append(snap)
        horizon = snap.taken_at - self.policy.window_s
        while len(self.window) > 2 and self.window[1].taken_at <= horizon:
            self.window.pop(0)

    def _fire(self, kind: str, now: float, message: str) -> AlertChange:
        self.open[kind] = {"started_at": now, "message": message, "clear_since": None}
        self.episodes.append({"kind": kind, "started_at": now, "resolved_at": None, "message": message})
        if len(self.episodes) > MAX_EPISODES:
            drop = next((i for i, e in enumerate(self.episodes) if e["resolved_at"] is not None), 0)
            self.episodes.pop(drop)
        return AlertChange(kind, "fired", now, message, now)

    def _resolve(self, kind: str, now: float, message: str) -> AlertChange:
        current = self.open.pop(kind)
        for episode in reversed(self.episodes):
            if episode["kind"] == kind and episode["resolved_at"] is None:
                episode["resolved_at"] = now
                break
        return AlertChange(kind, "resolved", now, f"{message}; was: {current['message']}", current["started_at"])

    def to_dict(self) -> dict[str, Any]:
        return {
            "policy": self.policy.to_dict(),
            "expected": self.expected,
            "deadline": self.deadline,
            "window": [s.to_dict() for s in self.window],
            "progress_at": self.progress_at,
            "last_backlog": self.last_backlog,
            "open": {k: dict(v) for k, v in self.open.items()},
            "episodes": [dict(e) for e in self.episodes],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BacklogAlerts:
        return cls(
            policy=AlertPolicy.from_dict(data.get("policy") or {}),
            expected=None if data.get("expected") is None else int(data["expected"]),
            deadline=None if data.get("deadline") is None else float(data["deadline"]),
            window=[QueueSnapshot.from_dict(s) for s in data.get("window", [])],
            progress_at=None if data.get("progress_at") is None else float(data["progress_at"]),
            last_backlog=None if data.get("last_backlog") is None else int(data["last_backlog"]),
            open={str(k): dict(v) for k, v in (data.get("open") or {}).items()},
            episodes=[dict(e) for e in data.get("episodes", [])],
        )
