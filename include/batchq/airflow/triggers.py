"""Deferrable waits on queue state, run by Airflow's triggerer (never blocking its event loop).

* :class:`QueueDrainedTrigger` — fires when visible + in-flight + delayed == 0 has held for
  ``stable_for_s`` (:class:`batchq.health.DrainWatch`), when the DLQ reaches ``dlq_threshold``, at the
  deadline, or on repeated errors. Its event carries the last snapshot and a bounded, downsampled series
  of samples (≤ ``max_points``) — the drain curve.
* :class:`ResultsAvailableTrigger` — fires when the results queue has visible messages (without
  receiving them), or at the deadline: the drain operator's "nothing to do yet" wait.

Both poll GetQueueAttributes with :func:`batchq.sqs.aget_snapshot` over the hook's aiobotocore client —
the same snapshot parsing and decision code as the sync sensor path. Events are
``{"status": ..., "reason": <TriggerReason value>, "snapshot": {...}, ...}`` in JSON primitives; the
operator's resume method is the only place that raises. Both triggers accept (and ignore, or map)
retired keyword arguments, because serialised triggers outlive deploys.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator
from enum import Enum
from typing import Any, ClassVar

from airflow.triggers.base import BaseTrigger, TriggerEvent

from batchq.health import BoundedSeries, DrainWatch, QueueSnapshot, eta_seconds
from batchq.sqs import aget_snapshot

#: Consecutive polling errors tolerated (with back-off) before the trigger reports ``error``.
MAX_CONSECUTIVE_ERRORS = 5
#: Snapshots kept for the ETA estimate (the drain rate over the recent window).
_ETA_WINDOW = 20


class TriggerReason(str, Enum):
    """Why a batchq trigger fired (the event's ``reason``)."""

    DRAINED = "drained"
    AVAILABLE = "available"
    TIMEOUT = "timeout"
    DLQ_THRESHOLD = "dlq_threshold"
    ERROR = "error"


def series_point(snap: QueueSnapshot) -> list[float | int]:
    """One compact sample: ``[t, visible, in_flight, delayed, dlq]`` (dlq -1 when not watched)."""
    return [round(snap.taken_at, 3), snap.visible, snap.in_flight, snap.delayed, -1 if snap.dlq_visible is None else snap.dlq_visible]


SERIES_FIELDS = ["t", "visible", "in_flight", "delayed", "dlq"]


class _SqsTrigger(BaseTrigger):
    """Connection arguments shared by batchq triggers (the provider's AWS argument set)."""

    #: retired kwarg → current name (``None``: accepted and ignored)
    RETIRED: ClassVar[dict[str, str | None]] = {}

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

    def _aws_kwargs(self) -> dict[str, Any]:
        return {
            "aws_conn_id": self.aws_conn_id,
            "region_name": self.region_name,
            "verify": self.verify,
            "botocore_config": self.botocore_config,
        }

    @property
    def hook(self):
        from batchq.airflow.hook import BatchqSqsHook

        return BatchqSqsHook(aws_conn_id=self.aws_conn_id, region_name=self.region_name, verify=self.verify, config=self.botocore_config)

    async def _poll(self, client: Any, queue_url: str, dlq_url: str | None, errors: list[str], base_delay_s: float) -> QueueSnapshot | None:
        """One snapshot, or None after a (counted) error; raises once errors are no longer transient."""
        try:
            snap = await aget_snapshot(client, queue_url, dlq_url)
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
            self.log.warning("polling %s failed (%d in a row): %s", queue_url, len(errors), exc)
            if len(errors) >= MAX_CONSECUTIVE_ERRORS:
                raise
            await asyncio.sleep(min(60.0, base_delay_s * 2 ** len(errors)))
            return None
        errors.clear()
        return snap


class QueueDrainedTrigger(_SqsTrigger):
    """Fire when a queue has been empty (visible + in-flight + delayed == 0) for ``stable_for_s``.

    :param queue_url: the queue to watch (normally the input queue).
    :param dlq_url: its dead-letter queue; its depth is reported in every sample.
    :param stable_for_s: how long the queue must read empty continuously (AWS advises ~60 s).
    :param poll_interval_s: seconds between GetQueueAttributes polls.
    :param deadline: epoch seconds after which the trigger fires ``timeout`` with the last snapshot
        (absolute, so a triggerer restart does not extend the wait).
    :param dlq_threshold: fire ``dlq_threshold`` as soon as the DLQ holds at least this many messages.
    :param max_points: bound of the returned series (downsampled evenly over the whole wait).
    :param queue_name: label for metrics (default: the URL's last segment).
    :param emit_metrics: send queue-lag gauges through Airflow's metrics on every poll.
    :param started_at: epoch seconds the wait began (for ``waited_s``; set by the sensor).
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
        queue_name: str | None = None,
        emit_metrics: bool = True,
        started_at: float | None = None,
        aws_conn_id: str | None = "aws_default",
        region_name: str | None = None,
        verify: bool | str | None = None,
        botocore_config: dict[str, Any] | None = None,
        **retired: Any,
    ):
        super().__init__(aws_conn_id=aws_conn_id, region_name=region_name, verify=verify, botocore_config=botocore_config)
        current: dict[str, Any] = {"stable_for_s": stable_for_s, "poll_interval_s": poll_interval_s}
        self._map_retired(retired, current)
        self.queue_url = queue_url
        self.dlq_url = dlq_url
        self.stable_for_s = float(60.0 if current["stable_for_s"] is None else current["stable_for_s"])
        self.poll_interval_s = float(10.0 if current["poll_interval_s"] is None else current["poll_interval_s"])
        self.deadline = deadline
        self.dlq_threshold = dlq_threshold
        self.max_points = int(max_points)
        self.queue_name = queue_name or queue_url.rstrip("/").rsplit("/", 1)[-1]
        self.emit_metrics = emit_metrics
        self.started_at = started_at if started_at is not None else time.time()
        if self.poll_interval_s <= 0 or self.stable_for_s < 0:
            raise ValueError(f"need poll_interval_s > 0 and stable_for_s >= 0, got {self.poll_interval_s}, {self.stable_for_s}")

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "queue_url": self.queue_url,
                "dlq_url": self.dlq_url,
                "stable_for_s": self.stable_for_s,
                "poll_interval_s": self.poll_interval_s,
                "deadline": self.deadline,
                "dlq_threshold": self.dlq_threshold,
                "max_points": self.max_points,
                "queue_name": self.queue_name,
                "emit_metrics": self.emit_metrics,
                "started_at": self.started_at,
                **self._aws_kwargs(),
            },
        )

    def _event(self, reason: TriggerReason, snap: QueueSnapshot | None, series: BoundedSeries, **extra: Any) -> TriggerEvent:
        return TriggerEvent(
            {
                "status": "success" if reason is TriggerReason.DRAINED else "failed",
                "reason": reason.value,
                "queue_url": self.queue_url,
                "snapshot": None if snap is None else snap.to_dict(),
                "series_fields": SERIES_FIELDS,
                "series": series.values(),
                "stable_for_s": self.stable_for_s,
                "waited_s": round(time.time() - self.started_at, 3),
                **extra,
            }
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        watch = DrainWatch(self.stable_for_s)
        series = BoundedSeries(self.max_points)
        recent: deque[QueueSnapshot] = deque(maxlen=_ETA_WINDOW)
        errors: list[str] = []
        snap: QueueSnapshot | None = None
        try:
            async with await self.hook.get_async_conn() as client:
                while True:
                    polled = await self._poll(client, self.queue_url, self.dlq_url, errors, self.poll_interval_s)
                    if polled is not None:
                        snap = polled
                        series.add(series_point(snap))
                        recent.append(snap)
                        if self.emit_metrics:
                            self._emit(snap, eta_seconds(list(recent)))
                        if self.dlq_threshold is not None and (snap.dlq_visible or 0) >= self.dlq_threshold:
                            yield self._event(TriggerReason.DLQ_THRESHOLD, snap, series, message=f"DLQ holds {snap.dlq_visible} message(s), threshold {self.dlq_threshold}")
                            return
                        if watch.observe(snap):
                            yield self._event(TriggerReason.DRAINED, snap, series, empty_since=watch.empty_since)
                            return
                    if self.deadline is not None and time.time() >= self.deadline:
                        last = snap.describe() if snap else "no snapshot"
                        yield self._event(TriggerReason.TIMEOUT, snap, series, message=f"queue not drained by the deadline; last snapshot: {last}")
                        return
                    await asyncio.sleep(self.poll_interval_s)
        except Exception as exc:  # noqa: BLE001 - reported as an event; the sensor's resume raises
            yield self._event(TriggerReason.ERROR, snap, series, message=f"{type(exc).__name__}: {exc}", errors=errors[-MAX_CONSECUTIVE_ERRORS:])

    def _emit(self, snap: QueueSnapshot, eta: float | None) -> None:
        try:
            from batchq.airflow.metrics import emit_queue_snapshot

            emit_queue_snapshot(self.queue_name, snap, eta)
        except Exception:
            self.log.debug("queue metrics not emitted", exc_info=True)


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

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "queue_url": self.queue_url,
                "poll_interval_s": self.poll_interval_s,
                "deadline": self.deadline,
                "min_visible": self.min_visible,
                **self._aws_kwargs(),
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        errors: list[str] = []
        snap: QueueSnapshot | None = None

        def event(reason: TriggerReason, **extra: Any) -> TriggerEvent:
            return TriggerEvent(
                {
                    "status": "success" if reason is TriggerReason.AVAILABLE else "failed",
                    "reason": reason.value,
                    "queue_url": self.queue_url,
                    "snapshot": None if snap is None else snap.to_dict(),
                    **extra,
                }
            )

        try:
            async with await self.hook.get_async_conn() as client:
                while True:
                    polled = await self._poll(client, self.queue_url, None, errors, self.poll_interval_s)
                    if polled is not None:
                        snap = polled
                        if snap.visible >= self.min_visible:
                            yield event(TriggerReason.AVAILABLE)
                            return
                    if self.deadline is not None and time.time() >= self.deadline:
                        yield event(TriggerReason.TIMEOUT, message=f"no results arrived by the deadline; last snapshot: {snap.describe() if snap else 'none'}")
                        return
                    await asyncio.sleep(self.poll_interval_s)
        except Exception as exc:  # noqa: BLE001
            yield event(TriggerReason.ERROR, message=f"{type(exc).__name__}: {exc}")
