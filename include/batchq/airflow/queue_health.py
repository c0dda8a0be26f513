"""``QueueHealthOperator``: watch every spec's queues between runs with the backlog-alert detector.

One run takes one snapshot of each spec's input queue (with its DLQ) and results queue (with its DLQ)
through the SQS layer, feeds it to that queue's :class:`~batchq.monitor.alerts.BacklogAlerts` (the same detector
the sensor runs during a wait), calls the notifiers for what fired or resolved, and emits the queue and
alert gauges. The detectors' state lives in one Airflow Variable (JSON), so trends span runs: with a
5-minute schedule a 30-minute window holds six snapshots.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from airflow.providers.amazon.aws.operators.base_aws import AwsBaseOperator

from batchq.airflow import settings
from batchq.airflow.hook import BatchqSqsHook
from batchq.airflow.metrics import emit_queue_gauges, queue_tag
from batchq.airflow.notifiers import check_notifiers, emit_alert_gauges, notify_changes
from batchq.errors import QueueNotFound, safe_error_text
from batchq.monitor.alerts import AlertChange, AlertPolicy, BacklogAlerts
from batchq.monitor.trend import queue_gauges
from batchq.spec import BatchSpec
from batchq.sqs.client import describe_error

#: Between runs, on the input queue: a fan-out legitimately grows the backlog faster than workers take it,
#: and there is no run deadline, so ``growing`` and ``late`` are left to the sensor that waits on a run.
INPUT_POLICY = AlertPolicy(window_s=1800, min_points=3, stall_after_s=900, max_age_s=3600, resolve_after_s=300, kinds=("stalled", "old", "dead_letters"))
#: On the results queue only its DLQ: results wait for the drain task by design (they look "stalled").
RESULTS_POLICY = AlertPolicy(window_s=1800, min_points=3, stall_after_s=900, resolve_after_s=300, kinds=("dead_letters",))
DEFAULT_STATE_VARIABLE = "batchq_queue_health_state"
#: The alert kind of a spec that does not load or a queue that cannot be read: its own episode.
CHECK_FAILED = "check_failed"
#: Where the state keeps the subjects (``spec <file>`` or a queue name) whose check is failing.
CHECK_FAILURES = "_check_failures"


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

    def _specs(self) -> list[tuple[str, BatchSpec | None, str | None]]:
        """``(label, spec, error)`` per spec to watch: one that does not load is reported, not raised,
        so the others are still watched."""
        from batchq.airflow.spec_sources import load_spec

        if self.specs is not None:
            items: list[Any] = list(self.specs)
        else:
            items = sorted(settings.spec_dir().glob("*.yaml"))
        out: list[tuple[str, BatchSpec | None, str | None]] = []
        for item in items:
            if isinstance(item, BatchSpec):
                out.append((item.name, item, None))
                continue
            path = settings.spec_path(item)
            try:
                out.append((path.name, load_spec(path), None))
            except Exception as exc:  # noqa: BLE001 - a bad spec is its own alert, never the round's end
                # The file's name identifies it; its directory is nobody's business in an alert.
                text = f"{type(exc).__name__}: {exc}".replace(f"{path.parent}/", "")
                out.append((path.name, None, safe_error_text(text)))
        return out

    def check(self, context: Any, state: dict[str, Any], now: float | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
        """One round over every spec's queues: returns the new detector state (queue name → JSON) and a
        summary (queue name → backlog, DLQ, open alerts; or ``error``). Queues no spec names any more
        are forgotten.

        Each spec and each queue is isolated: a spec that does not load, or a queue whose snapshot
        fails, is reported in the summary (``error``) and alerted as its own ``check_failed`` episode
        (fired once, resolved when it works again; kept under :data:`CHECK_FAILURES`), its detector's
        memory is kept unchanged, and every other spec's detectors run and are saved.

        :param now: the time this round counts as (default: when each snapshot was taken).
        """
        new_state: dict[str, Any] = {}
        summary: dict[str, Any] = {}
        failing_before: dict[str, Any] = dict(state.get(CHECK_FAILURES) or {})
        failing_now: dict[str, Any] = {}
        checked_ok: set[str] = set()

        def failed(subject: str, message: str) -> None:
            at = now if now is not None else time.time()
            self.log.error("queue health: %s: %s", subject, message)
            summary[subject] = {"error": message}
            previous = failing_before.get(subject)
            failing_now[subject] = {"since": previous["since"] if isinstance(previous, dict) and "since" in previous else at, "message": message}
            if previous is None:
                notify_changes(self.on_backlog_alert, context, [AlertChange(CHECK_FAILED, "fired", at, message, at)], queue=subject)

        for label, spec, error in self._specs():
            if spec is None:
                failed(f"spec {label}", f"spec does not load: {error}")
                continue
            checked_ok.add(f"spec {label}")
            try:
                urls = self.hook.resolve_queue_urls(spec.queues)
            except QueueNotFound:
                # Not provisioned yet (the first run creates them): nothing to watch, nothing to alert.
                summary[spec.queues.input] = {"error": f"queues of {spec.name} not found (not provisioned yet?)"}
                continue
            except Exception as exc:  # noqa: BLE001 - isolated: see the docstring
                failed(spec.queues.input, f"queues of {spec.name} not readable: {_error(exc)}")
                continue
            checked_ok.add(spec.queues.input)
            for url, dlq_url, policy in ((urls.input, urls.input_dlq, self.input_policy), (urls.results, urls.results_dlq, self.results_policy)):
                name = queue_tag(url)
                previous = state.get(name)
                try:
                    snapshot = self.hook.get_snapshot(url, dlq_url)
                except Exception as exc:  # noqa: BLE001 - isolated: see the docstring
                    if previous:
                        new_state[name] = previous  # keep the detector's memory for the next round
                    failed(name, f"snapshot of {spec.name}'s queue failed: {_error(exc)}")
                    continue
                if now is not None:
                    snapshot = replace(snapshot, taken_at=now)
                at = snapshot.taken_at
                detector = BacklogAlerts.from_dict(previous) if previous else BacklogAlerts(policy=policy)
                if detector.policy != policy:  # thresholds changed in the DAG: keep the memory, use the new ones
                    detector.policy = policy
                changes = detector.observe(snapshot, at, getattr(snapshot, "oldest_age_s", None))
                notify_changes(self.on_backlog_alert, context, changes, queue=name)
                emit_queue_gauges(name, queue_gauges(snapshot))
                emit_alert_gauges(name, detector.open_kinds)
                new_state[name] = detector.to_dict()
                checked_ok.add(name)
                summary[name] = {"batch": spec.name, "backlog": snapshot.backlog, "dlq": snapshot.dlq_visible, "open": detector.open_kinds, "changes": [c.to_dict() for c in changes]}

        # A subject that failed before and was checked fine this round: its episode resolves. One that
        # is no longer watched at all (spec removed) is forgotten quietly.
        at = now if now is not None else time.time()
        for subject, episode in failing_before.items():
            if subject not in failing_now and subject in checked_ok:
                since = episode.get("since", at) if isinstance(episode, dict) else at
                notify_changes(self.on_backlog_alert, context, [AlertChange(CHECK_FAILED, "resolved", at, "checked fine again", float(since))], queue=subject)
        if failing_now:
            new_state[CHECK_FAILURES] = failing_now
        return new_state, summary


def _error(exc: BaseException) -> str:
    """An AWS error as its code and operation, anything else as its type and capped, masked text."""
    return describe_error(exc)
