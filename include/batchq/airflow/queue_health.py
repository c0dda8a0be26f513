"""``QueueHealthOperator``: watch every spec's queues between runs with the backlog-alert detector.

One run takes one snapshot of each spec's input queue (with its DLQ) and results queue (with its DLQ)
through the SQS layer, feeds it to that queue's :class:`~batchq.monitor.alerts.BacklogAlerts` (the same detector
the sensor runs during a wait), calls the notifiers for what fired or resolved, and emits the queue and
alert gauges. The detectors' state lives in one Airflow Variable (JSON), so trends span runs: with a
5-minute schedule a 30-minute window holds six snapshots.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from airflow.providers.amazon.aws.operators.base_aws import AwsBaseOperator

from batchq.airflow import settings
from batchq.airflow.hook import BatchqSqsHook
from batchq.airflow.metrics import emit_queue_gauges, queue_tag
from batchq.airflow.notifiers import check_notifiers, emit_alert_gauges, notify_changes
from batchq.errors import QueueNotFound
from batchq.monitor.alerts import AlertPolicy, BacklogAlerts
from batchq.monitor.trend import queue_gauges
from batchq.spec import BatchSpec

#: Between runs, on the input queue: a fan-out legitimately grows the backlog faster than workers take it,
#: and there is no run deadline, so ``growing`` and ``late`` are left to the sensor that waits on a run.
INPUT_POLICY = AlertPolicy(window_s=1800, min_points=3, stall_after_s=900, max_age_s=3600, resolve_after_s=300, kinds=("stalled", "old", "dead_letters"))
#: On the results queue only its DLQ: results wait for the drain task by design (they look "stalled").
RESULTS_POLICY = AlertPolicy(window_s=1800, min_points=3, stall_after_s=900, resolve_after_s=300, kinds=("dead_letters",))
DEFAULT_STATE_VARIABLE = "batchq_queue_health_state"


class QueueHealthOperator(AwsBaseOperator[BatchqSqsHook]):
    """Snapshot every spec's queues, run the backlog-alert detector, notify and emit metrics.

    :param specs: specs to watch (instances, paths or names); default every ``*.yaml`` in ``[batchq]
        spec_dir``.
    :param on_backlog_alert: notifiers (any :class:`airflow.sdk.BaseNotifier` or callable) for every
        alert that fires or resolves; the context has ``batchq_alert`` and ``batchq_queue``.
    :param input_policy: detector thresholds for input queues (default :data:`INPUT_POLICY`).
    :param results_policy: detector thresholds for results queues (default :data:`RESULTS_POLICY`).
    :param state_variable: the Airflow Variable holding the detectors' state between runs.
    """

    aws_hook_class = BatchqSqsHook
    ui_color = "#fff4e0"

    def __init__(
        self,
        *,
        specs: Sequence[BatchSpec | str] | None = None,
        on_backlog_alert: Sequence[Any] | None = None,
        input_policy: AlertPolicy | None = None,
        results_policy: AlertPolicy | None = None,
        state_variable: str = DEFAULT_STATE_VARIABLE,
        **kwargs: Any,
    ):
        kwargs.setdefault("aws_conn_id", settings.default_aws_conn_id())
        super().__init__(**kwargs)
        self.specs = list(specs) if specs is not None else None
        self.on_backlog_alert = check_notifiers(on_backlog_alert, self.task_id)
        self.input_policy = input_policy or INPUT_POLICY
        self.results_policy = results_policy or RESULTS_POLICY
        self.state_variable = state_variable

    def execute(self, context: Any) -> dict[str, Any]:
        from airflow.sdk import Variable

        raw = Variable.get(self.state_variable, default=None)
        try:
            state = json.loads(raw) if raw else {}
        except ValueError:
            self.log.warning("Variable %s is not JSON; starting the detectors afresh", self.state_variable)
            state = {}
        state, summary = self.check(context, state)
        Variable.set(self.state_variable, json.dumps(state))
        return summary

    def _specs(self) -> list[BatchSpec]:
        from batchq.airflow.spec_sources import load_spec

        if self.specs is not None:
            return [load_spec(s) for s in self.specs]
        return [BatchSpec.from_yaml(p) for p in sorted(settings.spec_dir().glob("*.yaml"))]

    def check(self, context: Any, state: dict[str, Any], now: float | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
        """One round over every spec's queues: returns the new detector state (queue name → JSON) and a
        summary (queue name → backlog, DLQ, open alerts; or ``error``). Queues no spec names any more
        are forgotten.

        :param now: the time this round counts as (default: when each snapshot was taken).
        """
        new_state: dict[str, Any] = {}
        summary: dict[str, Any] = {}
        for spec in self._specs():
            try:
                urls = self.hook.resolve_queue_urls(spec.queues)
            except QueueNotFound as exc:
                # Not provisioned yet (the first run creates them): nothing to watch, nothing to alert.
                summary[spec.queues.input] = {"error": str(exc)}
                continue
            for url, dlq_url, policy in ((urls.input, urls.input_dlq, self.input_policy), (urls.results, urls.results_dlq, self.results_policy)):
                name = queue_tag(url)
                snapshot = self.hook.get_snapshot(url, dlq_url)
                if now is not None:
                    snapshot = replace(snapshot, taken_at=now)
                at = snapshot.taken_at
                previous = state.get(name)
                detector = BacklogAlerts.from_dict(previous) if previous else BacklogAlerts(policy=policy)
                if detector.policy != policy:  # thresholds changed in the DAG: keep the memory, use the new ones
                    detector.policy = policy
                changes = detector.observe(snapshot, at, getattr(snapshot, "oldest_age_s", None))
                notify_changes(self.on_backlog_alert, context, changes, queue=name)
                emit_queue_gauges(name, queue_gauges(snapshot))
                emit_alert_gauges(name, detector.open_kinds)
                new_state[name] = detector.to_dict()
                summary[name] = {"batch": spec.name, "backlog": snapshot.backlog, "dlq": snapshot.dlq_visible, "open": detector.open_kinds, "changes": [c.to_dict() for c in changes]}
        return new_state, summary

