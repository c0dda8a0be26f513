"""``QueueDrainedSensor``: wait until a queue is drained, measuring queue lag rather than job timing.

Deferrable by default (the wait runs in the triggerer as :class:`~batchq.airflow.triggers.QueueDrainedTrigger`
and holds no worker slot); ``deferrable=False`` pokes synchronously (``mode="poke"`` only: the stability
window lives in the running task). Both paths feed snapshots to the same decision,
:class:`batchq.monitor.waits.InputWait`, and end in the same place (:meth:`QueueDrainedSensor._finish`): the
backlog series (bounded) is pushed to XCom as ``backlog_series`` and the return value is
``{"reason", "snapshot", "waited_s"}``.

Backlog alerts (:mod:`batchq.monitor.alerts`) are evaluated on the same snapshots by both paths. The notifiers
given as ``on_backlog_alert`` are called in the task: on the poke path as the alert changes; on the
deferrable path from :meth:`QueueDrainedSensor.execute_complete` when the trigger hands over a
``backlog_alert`` event, after which the sensor defers again with the carried state. The alert history
goes to XCom as ``alert_episodes``. See docs/alerts.md.

Before every deferral the task polls once itself and, when the stability window would end within
:data:`REDEFER_GUARD_S`, finishes the wait in the task: a trigger that fires seconds after its deferral
meets Airflow 3.3's scheduler race and fails a healthy wait (:meth:`QueueDrainedSensor._wait_then_defer`).
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

from batchq import xcom_keys
from batchq.airflow import settings
from batchq.airflow.hook import BatchqSqsHook
from batchq.airflow.metrics import emit_queue_gauges, queue_tag
from batchq.airflow.notifiers import (
    check_notifiers,
    emit_alert_gauges,
    notify_changes,
    push_episodes,
    run_deadline,
)
from batchq.airflow.triggers import BACKLOG_ALERT_REASON, QueueDrainedTrigger
from batchq.clock import parse_clock
from batchq.monitor.alerts import AlertChange, AlertPolicy, BacklogAlerts
from batchq.monitor.progress import WaitProgress
from batchq.monitor.waits import SERIES_FIELDS, InputWait, WaitOutcome, WaitReason
from batchq.spec import BatchSpec
from batchq.sqs import get_queue_url

#: XCom key of the backlog curve: ``{"fields": [...], "points": [[t, visible, in_flight, delayed, dlq], ...]}``
#: (plus ``results_visible, results_in_flight`` at the end of fields and points when the results queue
#: is watched).
#: (Named ``drain_series`` before 2026-11: readers of older runs should try both.)
SERIES_XCOM_KEY = xcom_keys.BACKLOG_SERIES
#: Slack on top of the trigger's own deadline for Airflow's defer timeout: the trigger reports the last
#: snapshot at its deadline; Airflow's timeout is only a backstop if the triggerer itself is gone.
_DEFER_BACKSTOP_S = 60.0
#: When the stability window would end within this many seconds, the task finishes the wait itself
#: instead of deferring on a trigger that fires right away (Airflow 3.3's re-deferral race; see
#: :meth:`QueueDrainedSensor._wait_then_defer`).
REDEFER_GUARD_S = 30.0


class QueueDrainedSensor(AwsBaseSensor[BatchqSqsHook]):
    """Wait until ``queue`` reads empty (visible + in-flight + delayed == 0) for ``stable_for`` seconds.

    Give either ``spec`` (watch its input queue and input DLQ) or ``queue_name`` (name or URL). (Not
    ``queue``: that is every operator's executor queue.)

    :param spec: a :class:`BatchSpec`, YAML path or spec name; its input queue (and DLQ) is watched.
    :param queue_name: queue name or URL (instead of ``spec``).
    :param dlq_name: its dead-letter queue (name or URL); its depth is reported and checked against
        ``dlq_threshold``.
    :param results_queue_name: the run's results queue (name or URL; default the spec's): its visible
        and in-flight counts are recorded in the series on the same poll (never part of the decision;
        a failed results poll never fails the wait).
    :param stable_for: seconds the queue must read empty continuously (default ``[batchq]
        wait_stable_for_s``, 60 — what AWS advises for the approximate counters).
    :param poll_interval: seconds between polls (default ``[batchq] wait_poll_interval_s``, 10). In
        poke mode it is also the sensor's ``poke_interval``.
    :param dlq_threshold: fail as soon as the DLQ holds this many messages (default: never).
    :param max_points: bound of the backlog series pushed to XCom.
    :param deferrable: wait in the triggerer (default ``[operators] default_deferrable``, as for every provider's operators).
    :param timeout: seconds to wait before failing with the last snapshot (sensor ``timeout``).
    :param on_backlog_alert: notifiers (any :class:`airflow.sdk.BaseNotifier`, e.g.
        ``SlackNotifier(...)``, or a callable taking the context) called when a backlog alert fires or
        resolves; the context has ``batchq_alert`` (``kind``, ``state``, ``message``, ...).
    :param alert_policy: thresholds of the alerts (:class:`batchq.monitor.alerts.AlertPolicy` or its dict);
        ``alerts=False`` turns detection off.
    :param alert_deadline: ``"HH:MM"`` in the DAG's timezone the run should be drained by (the ``late``
        alert); default the spec's ``deadline``.
    :param plan_task_id: the planning task whose ``plan`` XCom gives the run's expected count.
    :param alerts: evaluate backlog alerts at all (default True; the history goes to ``alert_episodes``).
    """

    aws_hook_class = BatchqSqsHook
    template_fields: Sequence[str] = (*aws_template_fields(), "queue_name", "dlq_name", "results_queue_name")
    ui_color = "#e4f0ff"

    def __init__(
        self,
        *,
        spec: BatchSpec | str | None = None,
        queue_name: str | None = None,
        dlq_name: str | None = None,
        results_queue_name: str | None = None,
        stable_for: float | None = None,
        poll_interval: float | None = None,
        dlq_threshold: int | None = None,
        max_points: int = 500,
        deferrable: bool | None = None,
        on_backlog_alert: Sequence[Any] | None = None,
        alert_policy: AlertPolicy | dict[str, Any] | None = None,
        alert_deadline: str | None = None,
        plan_task_id: str = "plan_shards",
        alerts: bool = True,
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
            results_queue_name = results_queue_name or loaded.queues.results
            alert_deadline = alert_deadline or loaded.deadline
        if not queue_name:
            raise ValueError(f"{self.task_id}: give spec= or queue_name=")
        deferrable = settings.default_deferrable() if deferrable is None else deferrable
        if not deferrable and self.mode == "reschedule":
            raise ValueError(f"{self.task_id}: mode='reschedule' would restart the stability window on every poke; use deferrable=True or mode='poke'")
        self.queue_name, self.dlq_name = queue_name, dlq_name
        self.results_queue_name = results_queue_name
        self.stable_for = stable_for if stable_for is not None else settings.wait_stable_for_s()
        self.poll_interval = poll
        self.dlq_threshold = dlq_threshold
        self.max_points = max_points
        self.deferrable = deferrable
        self.on_backlog_alert = check_notifiers(on_backlog_alert, self.task_id)
        self.alert_policy = _alert_policy(alert_policy, self.task_id)
        if alert_deadline:
            parse_clock(alert_deadline)  # a bad deadline fails at parse time, naming itself
        self.alert_deadline = alert_deadline
        self.plan_task_id = plan_task_id
        self.alerts = alerts
        self._wait: InputWait | None = None  # poke path: the wait in progress
        self._alerts: BacklogAlerts | None = None  # poke path: the alert detector in progress
        self._urls: tuple[str, str | None] = ("", None)
        self._results_url: str | None = None  # poke path: resolved once
        self._progress = WaitProgress.configured()  # poke path: the progress lines of the task log

    def _results_queue_url(self) -> str | None:
        """The results queue's URL, or None (not given, or not resolvable: the series just lacks it)."""
        if not self.results_queue_name:
            return None
        try:
            return self._url(self.results_queue_name)
        except Exception as exc:  # noqa: BLE001 - the results curve is a record; it never fails the wait
            self.log.warning("not recording results queue %s: %s", self.results_queue_name, exc)
            return None

    def _results_snapshot(self, results_url: str | None) -> Any:
        if not results_url:
            return None
        try:
            return self.hook.get_snapshot(results_url)
        except Exception as exc:  # noqa: BLE001 - as above
            self.log.warning("polling results queue %s failed: %s", results_url, exc)
            return None

    def _url(self, name_or_url: str | None) -> str | None:
        return get_queue_url(self.hook.get_conn(), name_or_url) if name_or_url else None

    # -- deferrable path -----------------------------------------------------------------------------
    def execute(self, context: Any) -> Any:
        if not self.deferrable:
            return super().execute(context)
        queue_url, dlq_url = self._url(self.queue_name), self._url(self.dlq_name)
        now = time.time()
        alerts = self._new_alerts(context)
        self.log.info("waiting for %s to drain (stable for %ss, polling every %ss)", queue_url, self.stable_for, self.poll_interval)
        results_url = self._results_queue_url()
        wait = InputWait(
            started_at=now,
            deadline=now + float(self.timeout),
            stable_for_s=self.stable_for,
            dlq_threshold=self.dlq_threshold,
            max_points=self.max_points,
            results_watched=bool(results_url),
        )
        return self._wait_then_defer(context, wait, alerts, queue_url, dlq_url, results_url)

    def _wait_then_defer(
        self, context: Any, wait: InputWait, alerts: BacklogAlerts | None, queue_url: str, dlq_url: str | None, results_url: str | None
    ) -> dict[str, Any]:
        """Decide here, in the task, whether the wait is over (or about to be) before deferring.

        A trigger that fires within seconds of its deferral meets Airflow 3.3's scheduler race
        (apache/airflow#67287, #72716, #71580): the deferring process's late "success" arrives while the
        task instance is already queued again, and the scheduler fails the task. So while the queue reads
        empty and the stability window would end within :data:`REDEFER_GUARD_S`, the task polls the
        window out itself (the same :class:`InputWait`, the same alert detector); otherwise it defers
        with the wait's state. Returns the task's result when the wait ended here.
        """
        while True:
            snapshot = self.hook.get_snapshot(queue_url, dlq_url)
            results = self._results_snapshot(results_url)
            now = time.time()
            outcome = wait.step(snapshot, now, results)
            emit_queue_gauges(queue_tag(queue_url), wait.gauges())
            self._step_alerts(context, alerts, snapshot, outcome, now, queue_url)
            if outcome is not None:
                return self._finish(context, outcome, queue_url)
            left = None if wait.empty_since is None else wait.stable_for_s - (snapshot.taken_at - wait.empty_since)
            if left is None or left > REDEFER_GUARD_S:
                break
            time.sleep(max(0.05, min(self.poll_interval, left)))
        self._defer(
            queue_url,
            dlq_url,
            deadline=wait.deadline if wait.deadline is not None else time.time() + float(self.timeout),
            started_at=wait.started_at,
            alerts=None if alerts is None else alerts.to_dict(),
            wait_state=wait.to_dict(),
            results_url=results_url,
        )
        raise AssertionError("unreachable: defer() raises")  # pragma: no cover

    def _defer(
        self,
        queue_url: str,
        dlq_url: str | None,
        *,
        deadline: float,
        started_at: float,
        alerts: dict[str, Any] | None,
        wait_state: dict[str, Any] | None = None,
        results_url: str | None = None,
    ) -> None:
        trigger = QueueDrainedTrigger(
            queue_url=queue_url,
            dlq_url=dlq_url,
            results_url=results_url,
            stable_for_s=self.stable_for,
            poll_interval_s=self.poll_interval,
            deadline=deadline,
            dlq_threshold=self.dlq_threshold,
            max_points=self.max_points,
            started_at=started_at,
            wait_state=wait_state,
            alerts=alerts,
            alert_events=bool(self.on_backlog_alert),
            aws_conn_id=self.aws_conn_id,
            region_name=self.region_name,
            verify=self.verify,
            botocore_config=self.botocore_config,
        )
        # The trigger's own deadline reports the last snapshot; Airflow's timeout is only a backstop.
        left = max(0.0, deadline - time.time())
        self.defer(trigger=trigger, method_name="execute_complete", timeout=timedelta(seconds=left + 10 * self.poll_interval + _DEFER_BACKSTOP_S))

    def execute_complete(self, context: Any, event: dict[str, Any] | None = None) -> dict[str, Any]:
        """Resume from the trigger: a ``backlog_alert`` event is delivered to the notifiers and the wait
        goes on (deferred again from the carried state); any other event is a :class:`WaitOutcome`."""
        if not event:
            raise AirflowException(f"{self.task_id}: resumed without a trigger event")
        queue_url = event.get("queue_url")
        self._deliver_alerts(context, event.get("alert_changes") or [], event.get("alerts"), queue_url)
        if event.get("reason") == BACKLOG_ALERT_REASON:
            # The wait goes on from the carried state — unless it is over (or about to be) by now:
            # then it ends here rather than on a trigger that would fire seconds after the deferral.
            wait = InputWait.from_dict(event["wait_state"])
            alerts = None if event.get("alerts") is None else BacklogAlerts.from_dict(event["alerts"])
            return self._wait_then_defer(context, wait, alerts, queue_url, event.get("dlq_url"), event.get("results_url"))
        return self._finish(context, WaitOutcome.from_dict(event), queue_url)

    # -- alerts (both paths) ---------------------------------------------------------------------------
    def _new_alerts(self, context: Any) -> BacklogAlerts | None:
        if not self.alerts:
            return None
        expected = None
        try:
            plan = context["ti"].xcom_pull(task_ids=self.plan_task_id, key=xcom_keys.PLAN)
            expected = int(plan["expected"]) if isinstance(plan, dict) and "expected" in plan else None
        except Exception:  # noqa: BLE001 - no plan task in this DAG: alerts work without the count
            self.log.debug("no expected count from %s", self.plan_task_id, exc_info=True)
        return BacklogAlerts(policy=self.alert_policy, expected=expected, deadline=run_deadline(context, self.alert_deadline))

    def _deliver_alerts(self, context: Any, changes: list[dict[str, Any]], state: dict[str, Any] | None, queue_url: str | None) -> None:
        """Notify each change, then push the whole history (``alert_episodes``) for the Batch view."""
        queue = queue_tag(queue_url or self.queue_name)
        if changes:
            notify_changes(self.on_backlog_alert, context, [AlertChange.from_dict(c) for c in changes], queue=queue)
        if state is not None:
            # The gauges follow the state the task just learnt (0 for a resolved alert), whichever
            # process emitted them last.
            emit_alert_gauges(queue, (state.get("open") or {}).keys())
            if changes or state.get("episodes"):
                push_episodes(context, state.get("episodes", []))

    def _step_alerts(self, context: Any, alerts: BacklogAlerts | None, snapshot: Any, outcome: WaitOutcome | None, now: float, queue_url: str) -> None:
        """Feed one in-task snapshot to the detector (poke path, or the task deciding before it defers)
        and deliver what changed; a ``drained`` outcome settles the backlog alerts."""
        if alerts is None:
            return
        if outcome is None:
            changes = alerts.observe(snapshot, now, getattr(snapshot, "oldest_age_s", None))
        else:
            changes = alerts.settle(now) if outcome.reason is WaitReason.DRAINED else []
        self._deliver_alerts(context, [c.to_dict() for c in changes], alerts.to_dict() if changes or outcome else None, queue_url)

    # -- poke path (deferrable=False) ------------------------------------------------------------------
    def poke(self, context: Any) -> bool | PokeReturnValue:
        if self._wait is None:
            started = time.time()
            # The deadline is one poke early, so this fails with the last snapshot before the base
            # class's own timeout check fails without it.
            deadline = started + float(self.timeout) - float(self.poke_interval)
            self._urls = (self._url(self.queue_name), self._url(self.dlq_name))
            self._results_url = self._results_queue_url()
            self._wait = InputWait(
                started_at=started,
                deadline=deadline,
                stable_for_s=self.stable_for,
                dlq_threshold=self.dlq_threshold,
                max_points=self.max_points,
                results_watched=bool(self._results_url),
            )
            self._alerts = self._new_alerts(context)
        snapshot = self.hook.get_snapshot(*self._urls)
        results = self._results_snapshot(self._results_url)
        now = time.time()
        outcome = self._wait.step(snapshot, now, results)
        emit_queue_gauges(queue_tag(self._urls[0]), self._wait.gauges())
        for line in self._progress.observe(snapshot, now, self._wait.recent):
            (self.log.warning if line.warning else self.log.info)("%s: %s", queue_tag(self._urls[0]), line.text)
        self._step_alerts(context, self._alerts, snapshot, outcome, now, self._urls[0])
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


def _alert_policy(value: AlertPolicy | dict[str, Any] | None, task_id: str) -> AlertPolicy:
    """The sensor's ``alert_policy`` argument, strictly: a misspelt threshold is an error, not ignored."""
    if value is None or isinstance(value, AlertPolicy):
        return value or AlertPolicy()
    try:
        return AlertPolicy(**{k: tuple(v) if k == "kinds" else v for k, v in dict(value).items()})
    except TypeError as exc:
        known = ", ".join(AlertPolicy.__dataclass_fields__)
        raise ValueError(f"{task_id}: alert_policy: {exc} (known: {known})") from None
