"""Deferrable waits on queue state, run by Airflow's triggerer (never blocking its event loop).

* :class:`QueueDrainedTrigger` — the input queue's wait (:class:`batchq.monitor.waits.InputWait`): fires when
  visible + in-flight + delayed == 0 has held for ``stable_for_s``, when the DLQ reaches
  ``dlq_threshold``, at the deadline, or on repeated errors. Its event carries the last snapshot and the
  bounded backlog series (≤ ``max_points``).
* :class:`ResultsAvailableTrigger` — the results queue's wait (:class:`batchq.monitor.waits.ResultsWait`): fires
  when the queue has visible messages (without receiving them), or at the deadline.

Both run the same loop (:meth:`_SqsTrigger.run`): fetch a snapshot with :func:`batchq.sqs.aget_snapshot`
over the hook's aiobotocore client and feed it to the wait object, which makes every decision — the same
object the sensor's poke path feeds. Events are :meth:`batchq.monitor.waits.WaitOutcome.to_dict` plus
``queue_url``: ``{"status", "reason": <WaitReason value>, "snapshot", "waited_s", "message", ...}`` in
JSON primitives; the operator's resume method is the only place that raises. Both triggers accept (and
ignore, or map) retired keyword arguments, because serialised triggers outlive deploys.

Backlog alerts (:mod:`batchq.monitor.alerts`) are evaluated next to the wait by :class:`QueueDrainedTrigger`
on the same snapshots. A trigger cannot call notifiers, so when an alert fires or resolves (and
``alert_events`` is on) it ends with a ``backlog_alert`` event carrying the changes and both states
(``wait_state``, ``alerts``); the sensor notifies and defers again on a trigger rebuilt from them, so
neither the stability window nor the alert episodes are lost. No change is handed over while the queue
reads empty (the wait may be about to end; see :meth:`QueueDrainedTrigger._interim`): held changes go
with the next hand-over or the final event. The final event carries the alert state too (and resolves
backlog alerts when the queue drained, emitting the alert gauges). Every poll may log a progress line
(:class:`batchq.monitor.progress.WaitProgress`: depth, rate, ETA, and "no consumer").

The wait object's state is not carried across a triggerer restart: Airflow rebuilds a trigger from the
kwargs stored when the task deferred. What matters survives: ``deadline`` and ``started_at`` are
absolute, so a restart neither extends the wait nor resets ``waited_s``; the stability window restarts
(it can only make the wait more careful), and the alert detector resumes from its state at the last
deferral.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any, ClassVar

from airflow.triggers.base import BaseTrigger, TriggerEvent

from batchq.monitor.alerts import AlertChange, BacklogAlerts
from batchq.monitor.progress import WaitProgress
from batchq.monitor.waits import (
    DEFAULT_STABLE_FOR_S,
    SERIES_FIELDS,
    InputWait,
    QueueWait,
    ResultsWait,
    WaitOutcome,
    WaitReason,
    series_point,
)
from batchq.sqs import aget_snapshot
from batchq.sqs.client import describe_error
from batchq.sqs.retry import backoff_delay
from batchq.sqs.snapshot import QueueSnapshot

#: Consecutive polling errors tolerated (with back-off) before the trigger reports ``error``.
MAX_CONSECUTIVE_ERRORS = 5
#: Upper bound of the back-off after a polling error (the poll interval doubles up to it).
ERROR_BACKOFF_CAP_S = 60.0

#: The event ``reason`` enum (kept under its old name: operators and DAG code import it from here).
TriggerReason = WaitReason
#: Default of ``[batchq] trigger_min_event_age_s``: seconds after its start before a wait's trigger fires.
MIN_EVENT_AGE_S = 30.0
#: ``reason`` of the interim event that hands backlog-alert changes to the task (the wait goes on).
BACKLOG_ALERT_REASON = "backlog_alert"

__all__ = ["BACKLOG_ALERT_REASON", "SERIES_FIELDS", "QueueDrainedTrigger", "ResultsAvailableTrigger", "TriggerReason", "series_point"]


class _SqsTrigger(BaseTrigger):
    """The loop and connection arguments shared by batchq triggers (the provider's AWS argument set).

    A subclass says what to wait for (:meth:`_new_wait`), which of its own kwargs to serialise
    (:meth:`_own_kwargs`), and optionally what to do with each snapshot (:meth:`_observed`).
    """

    #: retired kwarg → current name (``None``: accepted and ignored)
    RETIRED: ClassVar[dict[str, str | None]] = {}

    queue_url: str
    dlq_url: str | None = None
    poll_interval_s: float

    def __init__(
        self,
        *,
        aws_conn_id: str | None = "aws_default",
        region_name: str | None = None,
        verify: bool | str | None = None,
        botocore_config: dict[str, Any] | None = None,
    ):
        super().__init__()
        self.aws_conn_id = aws_conn_id
        self.region_name = region_name
        self.verify = verify
        self.botocore_config = botocore_config

    @classmethod
    def _map_retired(cls, kwargs: dict[str, Any], current: dict[str, Any]) -> None:
        for old, value in kwargs.items():
            if old not in cls.RETIRED:
                raise TypeError(f"{cls.__name__}() got an unexpected keyword argument {old!r}")
            new = cls.RETIRED[old]
            if new is not None and current.get(new) is None:
                current[new] = value

    # -- what a subclass supplies ----------------------------------------------------------------------
    def _new_wait(self) -> QueueWait:
        raise NotImplementedError

    def _own_kwargs(self) -> dict[str, Any]:
        raise NotImplementedError

    def _observed(self, wait: QueueWait) -> None:
        """Called after every successful poll (metrics)."""

    def _begin(self) -> None:
        """Called when :meth:`run` starts (per-run state beside the wait)."""

    def _interim(self, wait: QueueWait, snapshot: QueueSnapshot, now: float) -> TriggerEvent | None:
        """An event that ends this trigger although the wait is not over (the task re-defers)."""
        return None

    def _closing(self, outcome: WaitOutcome, now: float) -> dict[str, Any]:
        """Extra fields of the final event."""
        return {}

    async def _side_snapshot(self, client: Any) -> QueueSnapshot | None:
        """Another queue's counts taken on the same poll, for the record only (``None``: none)."""
        return None

    async def _hold(self) -> None:
        """Wait, before the final event, until the trigger is old enough to fire (see
        :class:`QueueDrainedTrigger`); by default no wait."""

    # -- shared --------------------------------------------------------------------------------------
    def serialize(self) -> tuple[str, dict[str, Any]]:
        aws = {"aws_conn_id": self.aws_conn_id, "region_name": self.region_name, "verify": self.verify, "botocore_config": self.botocore_config}
        return f"{type(self).__module__}.{type(self).__qualname__}", {**self._own_kwargs(), **aws}

    @property
    def hook(self):
        from batchq.airflow.hook import BatchqSqsHook

        return BatchqSqsHook(aws_conn_id=self.aws_conn_id, region_name=self.region_name, verify=self.verify, config=self.botocore_config)

    def _event(self, outcome: WaitOutcome, **extra: Any) -> TriggerEvent:
        return TriggerEvent({"queue_url": self.queue_url, **outcome.to_dict(), **extra})

    async def run(self) -> AsyncIterator[TriggerEvent]:
        wait = self._new_wait()
        self._begin()
        errors: list[str] = []
        try:
            async with await self.hook.get_async_conn() as client:
                while True:
                    snap = await self._poll(client, errors)
                    side = None if snap is None else await self._side_snapshot(client)
                    now = time.time()
                    outcome = wait.step(snap, now, side)
                    if snap is not None:
                        self._observed(wait)
                    if outcome is not None:
                        await self._hold()
                        yield self._event(outcome, **self._closing(outcome, now))
                        return
                    interim = None if snap is None else self._interim(wait, snap, now)
                    if interim is not None:
                        yield interim
                        return
                    await asyncio.sleep(self.poll_interval_s)
        except Exception as exc:  # noqa: BLE001 - reported as an event; the operator's resume raises
            now = time.time()
            outcome = wait.fail(describe_error(exc), now)
            yield self._event(outcome, errors=errors[-MAX_CONSECUTIVE_ERRORS:], **self._closing(outcome, now))

    async def _poll(self, client: Any, errors: list[str]) -> QueueSnapshot | None:
        """One snapshot, or None after a (counted, backed-off) error; raises once errors persist."""
        try:
            snap = await aget_snapshot(client, self.queue_url, self.dlq_url)
        except Exception as exc:
            # Events are stored and shown: an AWS error's code and operation only, never its message.
            errors.append(describe_error(exc))
            self.log.warning("polling %s failed (%d in a row): %s", self.queue_url, len(errors), errors[-1])
            if len(errors) >= MAX_CONSECUTIVE_ERRORS:
                raise
            await asyncio.sleep(backoff_delay(len(errors), base=self.poll_interval_s, cap=ERROR_BACKOFF_CAP_S))
            return None
        errors.clear()
        return snap


class QueueDrainedTrigger(_SqsTrigger):
    """Fire when a queue has been empty (visible + in-flight + delayed == 0) for ``stable_for_s``.

    :param queue_url: the queue to watch (normally the input queue).
    :param dlq_url: its dead-letter queue; its depth is reported in every sample.
    :param results_url: the run's results queue: its visible/in-flight counts are recorded in every
        sample (``results_visible``, ``results_in_flight``), never part of the decision; a failed poll
        of it records ``None`` and the wait goes on.
    :param stable_for_s: how long the queue must read empty continuously (default 60 s, as AWS advises).
    :param poll_interval_s: seconds between GetQueueAttributes polls.
    :param deadline: epoch seconds after which the trigger fires ``timeout`` with the last snapshot
        (absolute, so a triggerer restart does not extend the wait).
    :param dlq_threshold: fire ``dlq_threshold`` as soon as the DLQ holds at least this many messages.
    :param max_points: bound of the returned series (downsampled evenly over the whole wait).
    :param queue_name: label for metrics (default: the URL's last segment).
    :param emit_metrics: send queue-lag gauges through Airflow's metrics on every poll.
    :param started_at: epoch seconds the wait began (for ``waited_s``; set by the sensor).
    :param wait_state: a :meth:`batchq.monitor.waits.InputWait.to_dict` to continue from (a re-deferral after
        a backlog alert); it carries its own deadline, window and series, so it wins over the arguments.
    :param alerts: :meth:`batchq.monitor.alerts.BacklogAlerts.to_dict` to evaluate backlog alerts from
        (``None``: no alerts).
    :param alert_events: end with a ``backlog_alert`` event whenever an alert fires or resolves (the
        sensor has notifiers to call); otherwise alerts are only recorded and come with the final event.
    """

    RETIRED: ClassVar[dict[str, str | None]] = {"stable_for": "stable_for_s", "poll_interval": "poll_interval_s", "waiter_delay": "poll_interval_s", "timeout": None}

    def __init__(
        self,
        queue_url: str,
        dlq_url: str | None = None,
        stable_for_s: float | None = None,
        poll_interval_s: float | None = None,
        deadline: float | None = None,
        dlq_threshold: int | None = None,
        max_points: int = 500,
        results_url: str | None = None,
        queue_name: str | None = None,
        emit_metrics: bool = True,
        started_at: float | None = None,
        wait_state: dict[str, Any] | None = None,
        alerts: dict[str, Any] | None = None,
        alert_events: bool = False,
        aws_conn_id: str | None = "aws_default",
        region_name: str | None = None,
        verify: bool | str | None = None,
        botocore_config: dict[str, Any] | None = None,
        **retired: Any,
    ):
        from batchq.airflow.metrics import queue_tag

        super().__init__(aws_conn_id=aws_conn_id, region_name=region_name, verify=verify, botocore_config=botocore_config)
        current: dict[str, Any] = {"stable_for_s": stable_for_s, "poll_interval_s": poll_interval_s}
        self._map_retired(retired, current)
        self.queue_url = queue_url
        self.dlq_url = dlq_url
        self.results_url = results_url
        self.stable_for_s = float(DEFAULT_STABLE_FOR_S if current["stable_for_s"] is None else current["stable_for_s"])
        self.poll_interval_s = float(10.0 if current["poll_interval_s"] is None else current["poll_interval_s"])
        self.deadline = deadline
        self.dlq_threshold = dlq_threshold
        self.max_points = int(max_points)
        self.queue_name = queue_name or queue_tag(queue_url)
        self.emit_metrics = emit_metrics
        self.started_at = started_at if started_at is not None else time.time()
        self.wait_state = wait_state
        self.alerts = alerts
        self.alert_events = bool(alert_events)
        self._alerts: BacklogAlerts | None = None
        #: Alert changes not handed over yet (held while the queue reads empty: see :meth:`_interim`).
        self._pending: list[AlertChange] = []
        self._progress = WaitProgress.configured()
        if self.poll_interval_s <= 0:
            raise ValueError(f"need poll_interval_s > 0, got {self.poll_interval_s}")
        self._new_wait()  # validates the rest (stable_for_s, dlq_threshold, max_points) now, not in the triggerer
        if alerts is not None:
            BacklogAlerts.from_dict(alerts)  # likewise: a bad alert state fails at defer time

    def _new_wait(self) -> InputWait:
        if self.wait_state:
            return InputWait.from_dict(self.wait_state)
        return InputWait(
            started_at=self.started_at,
            deadline=self.deadline,
            stable_for_s=self.stable_for_s,
            dlq_threshold=self.dlq_threshold,
            max_points=self.max_points,
            results_watched=bool(self.results_url),
        )

    async def _side_snapshot(self, client: Any) -> QueueSnapshot | None:
        if not self.results_url:
            return None
        try:
            return await aget_snapshot(client, self.results_url)
        except Exception as exc:  # noqa: BLE001 - the results curve is a record; it never fails the wait
            self.log.warning("polling results queue %s failed: %s", self.results_url, exc)
            return None

    def _begin(self) -> None:
        self._alerts = None if self.alerts is None else BacklogAlerts.from_dict(self.alerts)
        self._pending = []
        self._progress = WaitProgress.configured()
        self._run_started = time.time()
        try:
            from batchq.airflow import settings

            self._min_event_age_s = settings.trigger_min_event_age_s()
        except Exception:  # noqa: BLE001 - a bad setting must not break the wait: the default holds
            self._min_event_age_s = MIN_EVENT_AGE_S

    def _young(self, now: float) -> bool:
        """Too soon after the deferral to fire: Airflow 3.3's scheduler may still hold the deferring
        process's late "success" event, which fails a task instance queued again by this trigger
        (apache/airflow#67287, #72716: "finished with state success, but the task instance's state
        attribute is queued", seen 6 s after a deferral)."""
        return now - getattr(self, "_run_started", now) < getattr(self, "_min_event_age_s", MIN_EVENT_AGE_S)

    async def _hold(self) -> None:
        left = getattr(self, "_run_started", 0.0) + getattr(self, "_min_event_age_s", 0.0) - time.time()
        if left > 0:
            await asyncio.sleep(left)

    def _interim(self, wait: QueueWait, snapshot: QueueSnapshot, now: float) -> TriggerEvent | None:
        if self._alerts is None:
            return None
        # A snapshot that knows the oldest message's age (CloudWatch) feeds the ``old`` alert.
        changes = self._alerts.observe(snapshot, now, getattr(snapshot, "oldest_age_s", None))
        if changes:
            self._emit_alert_gauges()
        if not self.alert_events:
            return None
        self._pending.extend(changes)
        # Never hand over while the queue reads empty: the wait may end within its stability window, and
        # a re-deferral whose trigger fires seconds later walks into Airflow 3.3's scheduler race
        # (apache/airflow#67287, #72716: the resumed process's stale "success" fails the task). Held
        # changes go with the next hand-over, or with the final event.
        if not self._pending or getattr(wait, "empty_since", None) is not None or self._young(now):
            return None
        changes, self._pending = self._pending, []
        return TriggerEvent(
            {
                "status": "alert",
                "reason": BACKLOG_ALERT_REASON,
                "queue_url": self.queue_url,
                "dlq_url": self.dlq_url,
                "results_url": self.results_url,
                "alert_changes": [c.to_dict() for c in changes],
                "alerts": self._alerts.to_dict(),
                "wait_state": wait.to_dict(),
            }
        )

    def _closing(self, outcome: WaitOutcome, now: float) -> dict[str, Any]:
        if self._alerts is None:
            return {}
        settled = self._alerts.settle(now) if outcome.reason is WaitReason.DRAINED else []
        # The gauges follow every change, the closing ones too: a resolved alert reads 0, not 1 forever.
        self._emit_alert_gauges()
        changes, self._pending = [*self._pending, *settled], []
        return {"alert_changes": [c.to_dict() for c in changes], "alerts": self._alerts.to_dict()}

    def _emit_alert_gauges(self) -> None:
        if self.emit_metrics and self._alerts is not None:
            from batchq.airflow.notifiers import emit_alert_gauges

            emit_alert_gauges(self.queue_name, self._alerts.open_kinds)

    def _own_kwargs(self) -> dict[str, Any]:
        return {
            "queue_url": self.queue_url,
            "dlq_url": self.dlq_url,
            "stable_for_s": self.stable_for_s,
            "poll_interval_s": self.poll_interval_s,
            "deadline": self.deadline,
            "dlq_threshold": self.dlq_threshold,
            "max_points": self.max_points,
            # Only when used, so a trigger without a results queue serialises as it did before.
            **({"results_url": self.results_url} if self.results_url else {}),
            "queue_name": self.queue_name,
            "emit_metrics": self.emit_metrics,
            "started_at": self.started_at,
            # Only when used, so a trigger without alerts serialises as it did before they existed.
            **({"wait_state": self.wait_state} if self.wait_state else {}),
            **({"alerts": self.alerts, "alert_events": self.alert_events} if self.alerts is not None else {}),
        }

    def _observed(self, wait: QueueWait) -> None:
        if self.emit_metrics:
            from batchq.airflow.metrics import emit_queue_gauges

            emit_queue_gauges(self.queue_name, wait.gauges())
        if wait.last is not None:
            # Depth, rate and ETA about once a minute, and "no consumer" plainly: in the task log,
            # whether or not a notifier is configured.
            for line in self._progress.observe(wait.last, time.time(), getattr(wait, "recent", None)):
                (self.log.warning if line.warning else self.log.info)("%s: %s", self.queue_name, line.text)


class ResultsAvailableTrigger(_SqsTrigger):
    """Fire when ``queue_url`` has at least ``min_visible`` visible messages — without receiving them — or
    at ``deadline``. The drain operator defers on it when the results queue is empty but the run's ledger
    is not complete, instead of holding a worker slot.

    :param queue_url: the results queue.
    :param poll_interval_s: seconds between polls.
    :param deadline: epoch seconds; fires ``timeout`` after it.
    :param min_visible: visible messages that count as "available".
    """

    RETIRED: ClassVar[dict[str, str | None]] = {"poll_interval": "poll_interval_s", "waiter_delay": "poll_interval_s", "timeout": None}

    def __init__(
        self,
        queue_url: str,
        poll_interval_s: float | None = None,
        deadline: float | None = None,
        min_visible: int = 1,
        aws_conn_id: str | None = "aws_default",
        region_name: str | None = None,
        verify: bool | str | None = None,
        botocore_config: dict[str, Any] | None = None,
        **retired: Any,
    ):
        super().__init__(aws_conn_id=aws_conn_id, region_name=region_name, verify=verify, botocore_config=botocore_config)
        current: dict[str, Any] = {"poll_interval_s": poll_interval_s}
        self._map_retired(retired, current)
        self.queue_url = queue_url
        self.poll_interval_s = float(5.0 if current["poll_interval_s"] is None else current["poll_interval_s"])
        self.deadline = deadline
        self.min_visible = max(1, int(min_visible))
        if self.poll_interval_s <= 0:
            raise ValueError(f"need poll_interval_s > 0, got {self.poll_interval_s}")

    def _new_wait(self) -> ResultsWait:
        return ResultsWait(started_at=time.time(), deadline=self.deadline, min_visible=self.min_visible)

    def _own_kwargs(self) -> dict[str, Any]:
        return {"queue_url": self.queue_url, "poll_interval_s": self.poll_interval_s, "deadline": self.deadline, "min_visible": self.min_visible}
