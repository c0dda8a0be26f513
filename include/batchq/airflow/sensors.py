"""``QueueDrainedSensor``: wait until a queue is drained, measuring queue lag rather than job timing.

Deferrable by default (the wait runs in the triggerer as :class:`~batchq.airflow.triggers.QueueDrainedTrigger`
and holds no worker slot); ``deferrable=False`` pokes synchronously (``mode="poke"`` only: the stability
window lives in the running task). Both paths feed snapshots to the same decision,
:class:`batchq.health.InputWait`, and end in the same place (:meth:`QueueDrainedSensor._finish`): the
backlog series (bounded) is pushed to XCom as ``backlog_series`` and the return value is
``{"reason", "snapshot", "waited_s"}``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from airflow.providers.amazon.aws.sensors.base_aws import AwsBaseSensor
from airflow.providers.amazon.aws.utils.mixins import aws_template_fields
from airflow.sdk import PokeReturnValue
from airflow.sdk.exceptions import (
    AirflowException,
    AirflowFailException,
    AirflowSensorTimeout,
)

from batchq.airflow import settings
from batchq.airflow.hook import BatchqSqsHook
from batchq.airflow.metrics import emit_queue_gauges, queue_tag
from batchq.airflow.triggers import QueueDrainedTrigger
from batchq.health import SERIES_FIELDS, InputWait, WaitOutcome, WaitReason
from batchq.spec import BatchSpec
from batchq.sqs import get_queue_url

#: XCom key of the backlog curve: ``{"fields": [...], "points": [[t, visible, in_flight, delayed, dlq], ...]}``.
#: (Named ``drain_series`` before 2026-11: readers of older runs should try both.)
SERIES_XCOM_KEY = "backlog_series"
#: Slack on top of the trigger's own deadline for Airflow's defer timeout: the trigger reports the last
#: snapshot at its deadline; Airflow's timeout is only a backstop if the triggerer itself is gone.
_DEFER_BACKSTOP_S = 60.0


class QueueDrainedSensor(AwsBaseSensor[BatchqSqsHook]):
    """Wait until ``queue`` reads empty (visible + in-flight + delayed == 0) for ``stable_for`` seconds.

    Give either ``spec`` (watch its input queue and input DLQ) or ``queue_name`` (name or URL). (Not
    ``queue``: that is every operator's executor queue.)

    :param spec: a :class:`BatchSpec`, YAML path or spec name; its input queue (and DLQ) is watched.
    :param queue_name: queue name or URL (instead of ``spec``).
    :param dlq_name: its dead-letter queue (name or URL); its depth is reported and checked against
        ``dlq_threshold``.
    :param stable_for: seconds the queue must read empty continuously (default ``[batchq]
        wait_stable_for_s``, 60 — what AWS advises for the approximate counters).
    :param poll_interval: seconds between polls (default ``[batchq] wait_poll_interval_s``, 10). In
        poke mode it is also the sensor's ``poke_interval``.
    :param dlq_threshold: fail as soon as the DLQ holds this many messages (default: never).
    :param max_points: bound of the backlog series pushed to XCom.
    :param deferrable: wait in the triggerer (default True).
    :param timeout: seconds to wait before failing with the last snapshot (sensor ``timeout``).
    """

    aws_hook_class = BatchqSqsHook
    template_fields: Sequence[str] = (*aws_template_fields(), "queue_name", "dlq_name")
    ui_color = "#e4f0ff"

    def __init__(
        self,
        *,
        spec: BatchSpec | str | None = None,
        queue_name: str | None = None,
        dlq_name: str | None = None,
        stable_for: float | None = None,
        poll_interval: float | None = None,
        dlq_threshold: int | None = None,
        max_points: int = 500,
        deferrable: bool = True,
        **kwargs: Any,
    ):
        kwargs.setdefault("aws_conn_id", settings.default_aws_conn_id())
        poll = poll_interval if poll_interval is not None else settings.wait_poll_interval_s()
        kwargs.setdefault("poke_interval", poll)
        kwargs.setdefault("timeout", 24 * 3600)
        super().__init__(**kwargs)
        if spec is not None:
            from batchq.airflow.spec_sources import load_spec

            loaded = load_spec(spec)
            queue_name = queue_name or loaded.queues.input
            dlq_name = dlq_name or loaded.queues.input_dlq
        if not queue_name:
            raise ValueError(f"{self.task_id}: give spec= or queue_name=")
        if not deferrable and self.mode == "reschedule":
            raise ValueError(f"{self.task_id}: mode='reschedule' would restart the stability window on every poke; use deferrable=True or mode='poke'")
        self.queue_name, self.dlq_name = queue_name, dlq_name
        self.stable_for = stable_for if stable_for is not None else settings.wait_stable_for_s()
        self.poll_interval = poll
        self.dlq_threshold = dlq_threshold
        self.max_points = max_points
        self.deferrable = deferrable
        self._wait: InputWait | None = None  # poke path: the wait in progress
        self._urls: tuple[str, str | None] = ("", None)

    def _url(self, name_or_url: str | None) -> str | None:
        return get_queue_url(self.hook.get_conn(), name_or_url) if name_or_url else None

    # -- deferrable path -----------------------------------------------------------------------------
    def execute(self, context: Any) -> Any:
        if not self.deferrable:
            return super().execute(context)
        queue_url, dlq_url = self._url(self.queue_name), self._url(self.dlq_name)
        now = time.time()
        trigger = QueueDrainedTrigger(
            queue_url=queue_url,
            dlq_url=dlq_url,
            stable_for_s=self.stable_for,
            poll_interval_s=self.poll_interval,
            deadline=now + float(self.timeout),
            dlq_threshold=self.dlq_threshold,
            max_points=self.max_points,
            started_at=now,
            aws_conn_id=self.aws_conn_id,
            region_name=self.region_name,
            verify=self.verify,
            botocore_config=self.botocore_config,
        )
        self.log.info("waiting for %s to drain (stable for %ss, polling every %ss)", queue_url, self.stable_for, self.poll_interval)
        # The trigger's own deadline reports the last snapshot; Airflow's timeout is only a backstop.
        self.defer(trigger=trigger, method_name="execute_complete", timeout=timedelta(seconds=float(self.timeout) + 10 * self.poll_interval + _DEFER_BACKSTOP_S))

    def execute_complete(self, context: Any, event: dict[str, Any] | None = None) -> dict[str, Any]:
        """Resume from the trigger (its event is a :class:`WaitOutcome`)."""
        if not event:
            raise AirflowException(f"{self.task_id}: resumed without a trigger event")
        return self._finish(context, WaitOutcome.from_dict(event), event.get("queue_url"))

    # -- poke path (deferrable=False) ------------------------------------------------------------------
    def poke(self, context: Any) -> bool | PokeReturnValue:
        if self._wait is None:
            started = time.time()
            # The deadline is one poke early, so this fails with the last snapshot before the base
            # class's own timeout check fails without it.
            deadline = started + float(self.timeout) - float(self.poke_interval)
            self._wait = InputWait(started_at=started, deadline=deadline, stable_for_s=self.stable_for, dlq_threshold=self.dlq_threshold, max_points=self.max_points)
            self._urls = (self._url(self.queue_name), self._url(self.dlq_name))
        outcome = self._wait.step(self.hook.get_snapshot(*self._urls), time.time())
        emit_queue_gauges(queue_tag(self._urls[0]), self._wait.gauges())
        if outcome is None:
            return False
        return PokeReturnValue(is_done=True, xcom_value=self._finish(context, outcome, self._urls[0]))

    # -- both paths ------------------------------------------------------------------------------------
    def _finish(self, context: Any, outcome: WaitOutcome, queue_url: str | None) -> dict[str, Any]:
        """Push the backlog series and return, or raise on any outcome but ``drained``: the one place
        that raises."""
        series = {"fields": outcome.details.get("series_fields", list(SERIES_FIELDS)), "points": outcome.details.get("series", [])}
        context["ti"].xcom_push(key=SERIES_XCOM_KEY, value=series)
        shown = outcome.describe_snapshot()
        if outcome.reason is WaitReason.DRAINED:
            self.log.info("%s drained after %.1fs (%s)", queue_url, outcome.waited_s, shown)
            return {"reason": outcome.reason.value, "snapshot": None if outcome.snapshot is None else outcome.snapshot.to_dict(), "waited_s": outcome.waited_s}
        if outcome.reason is WaitReason.TIMEOUT:
            raise AirflowSensorTimeout(f"{self.task_id}: {queue_url} not drained after {outcome.waited_s:.0f}s; last snapshot: {shown}")
        if outcome.reason is WaitReason.DLQ_THRESHOLD:
            raise AirflowFailException(f"{self.task_id}: {outcome.message}; last snapshot: {shown}")
        raise AirflowException(f"{self.task_id}: waiting for {queue_url} failed ({outcome.reason.value}): {outcome.message}; last snapshot: {shown}")
