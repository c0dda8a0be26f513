"""``QueueDrainedSensor``: wait until a queue is drained, measuring queue lag rather than job timing.

Deferrable by default (the wait runs in the triggerer as :class:`~batchq.airflow.triggers.QueueDrainedTrigger`
and holds no worker slot); ``deferrable=False`` pokes with the same snapshot and
:class:`~batchq.health.DrainWatch` logic synchronously (``mode="poke"`` only: the stability window lives
in the running task). The drain curve (a bounded series of samples) is pushed to XCom as
``drain_series``; the return value is the last snapshot.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from airflow.providers.amazon.aws.sensors.base_aws import AwsBaseSensor
from airflow.providers.amazon.aws.utils.mixins import aws_template_fields
from airflow.sdk.exceptions import (
    AirflowException,
    AirflowFailException,
    AirflowSensorTimeout,
)

from batchq.airflow import settings
from batchq.airflow.hook import BatchqSqsHook
from batchq.airflow.triggers import (
    SERIES_FIELDS,
    QueueDrainedTrigger,
    TriggerReason,
    series_point,
)
from batchq.spec import BatchSpec
from batchq.health import BoundedSeries, DrainWatch, QueueSnapshot
from batchq.sqs import get_queue_url

#: XCom key of the drain curve: ``{"fields": [...], "points": [[t, visible, in_flight, delayed, dlq], ...]}``.
SERIES_XCOM_KEY = "drain_series"


def drain_setting(key: str, fallback: float) -> float:
    """``[batchq] <key>`` as a float (e.g. ``drain_stable_for_s``, ``drain_poll_interval_s``)."""
    raw = settings._get(key, str(fallback))
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"[{settings.SECTION}] {key} must be a number, got {raw!r}") from None


class QueueDrainedSensor(AwsBaseSensor[BatchqSqsHook]):
    """Wait until ``queue`` reads empty (visible + in-flight + delayed == 0) for ``stable_for`` seconds.

    Give either ``spec`` (watch its input queue and input DLQ) or ``queue_name`` (name or URL). (Not
    ``queue``: that is every operator's executor queue.)

    :param spec: a :class:`BatchSpec`, YAML path or spec name; its input queue (and DLQ) is watched.
    :param queue_name: queue name or URL (instead of ``spec``).
    :param dlq_name: its dead-letter queue (name or URL); its depth is reported and checked against
        ``dlq_threshold``.
    :param stable_for: seconds the queue must read empty continuously (default ``[batchq]
        drain_stable_for_s``, 60 — what AWS advises for the approximate counters).
    :param poll_interval: seconds between polls (default ``[batchq] drain_poll_interval_s``, 10). In
        poke mode it is also the sensor's ``poke_interval``.
    :param dlq_threshold: fail as soon as the DLQ holds this many messages (default: never).
    :param max_points: bound of the drain curve pushed to XCom.
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
        poll = poll_interval if poll_interval is not None else drain_setting("drain_poll_interval_s", 10.0)
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
        self.stable_for = stable_for if stable_for is not None else drain_setting("drain_stable_for_s", 60.0)
        self.poll_interval = poll
        self.dlq_threshold = dlq_threshold
        self.max_points = max_points
        self.deferrable = deferrable
        self._watch: DrainWatch | None = None
        self._series: BoundedSeries | None = None
        self._started: float | None = None

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
        self.defer(trigger=trigger, method_name="execute_complete", timeout=timedelta(seconds=float(self.timeout) + 10 * self.poll_interval + 60))

    def execute_complete(self, context: Any, event: dict[str, Any] | None = None) -> dict[str, Any]:
        """Resume from the trigger: the one place that raises on a non-drained outcome."""
        if not event:
            raise AirflowException(f"{self.task_id}: resumed without a trigger event")
        context["ti"].xcom_push(key=SERIES_XCOM_KEY, value={"fields": event.get("series_fields", SERIES_FIELDS), "points": event.get("series", [])})
        reason = event.get("reason")
        snapshot = event.get("snapshot")
        shown = QueueSnapshot.from_dict(snapshot).describe() if snapshot else "no snapshot"
        if reason == TriggerReason.DRAINED.value:
            self.log.info("%s drained after %.1fs (%s)", event.get("queue_url"), event.get("waited_s", 0.0), shown)
            return {"reason": reason, "snapshot": snapshot, "waited_s": event.get("waited_s")}
        if reason == TriggerReason.TIMEOUT.value:
            raise AirflowSensorTimeout(f"{self.task_id}: {event.get('queue_url')} not drained after {event.get('waited_s')}s; last snapshot: {shown}")
        if reason == TriggerReason.DLQ_THRESHOLD.value:
            raise AirflowFailException(f"{self.task_id}: {event.get('message')}; last snapshot: {shown}")
        raise AirflowException(f"{self.task_id}: drain wait failed ({reason}): {event.get('message')}; last snapshot: {shown}")

    # -- poke path (deferrable=False) ------------------------------------------------------------------
    def poke(self, context: Any) -> bool:
        if self._watch is None:
            self._watch, self._series, self._started = DrainWatch(self.stable_for), BoundedSeries(self.max_points), time.time()
            self._urls = (self._url(self.queue_name), self._url(self.dlq_name))
        snap = self.hook.get_snapshot(*self._urls)
        self._series.add(series_point(snap))
        try:
            from batchq.airflow.metrics import emit_queue_snapshot

            emit_queue_snapshot(self._urls[0].rstrip("/").rsplit("/", 1)[-1], snap)
        except Exception:  # metrics never fail the sensor
            self.log.debug("queue metrics not emitted", exc_info=True)
        waited = time.time() - self._started
        if self.dlq_threshold is not None and (snap.dlq_visible or 0) >= self.dlq_threshold:
            self._push_series(context)
            raise AirflowFailException(f"{self.task_id}: DLQ holds {snap.dlq_visible} message(s), threshold {self.dlq_threshold}; last snapshot: {snap.describe()}")
        if self._watch.observe(snap):
            self._push_series(context)
            self.log.info("%s drained after %.1fs", self._urls[0], waited)
            return True
        if waited + self.poke_interval > float(self.timeout):
            # Fail with the snapshot before the base class fails without it.
            self._push_series(context)
            raise AirflowSensorTimeout(f"{self.task_id}: {self._urls[0]} not drained after {waited:.0f}s; last snapshot: {snap.describe()}")
        return False

    def _push_series(self, context: Any) -> None:
        if self._series is not None:
            context["ti"].xcom_push(key=SERIES_XCOM_KEY, value={"fields": SERIES_FIELDS, "points": self._series.values()})
