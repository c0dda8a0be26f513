"""Backlog alerts → Airflow notifiers: the task-side half of :mod:`batchq.monitor.alerts`.

Triggers cannot call notifiers (they run in the triggerer and must stay serialisable), so the
detector's changes travel in trigger events and are delivered here, in the task: by the sensor's resume
method (:class:`~batchq.airflow.sensors.QueueDrainedSensor`) and by the queue-health DAG. See
docs/alerts.md for the whole design.

Each notifier is any :class:`airflow.sdk.BaseNotifier` (``SlackNotifier(...)``, ``SmtpNotifier(...)``,
your own) or a plain callable taking the context. It gets the task context plus ``batchq_alert`` (an
:class:`~batchq.monitor.alerts.AlertChange` as a dict: ``kind``, ``state``, ``at``, ``message``,
``started_at``) and ``batchq_queue``, so templated fields can say ``{{ batchq_alert.kind }}``.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from batchq import xcom_keys
from batchq.clock import resolve_deadline
from batchq.importing import import_object
from batchq.monitor.alerts import ALL_KINDS, AlertChange

log = logging.getLogger(__name__)

#: XCom key of the alert history (read by the Batch view, :mod:`batchq.monitor.report`).
ALERTS_XCOM_KEY = xcom_keys.ALERT_EPISODES


def check_notifiers(notifiers: Iterable[Any] | None, owner: str) -> list[Any]:
    """The notifiers as a list; a clear error (at DAG parse time) for anything that cannot be called."""
    if notifiers is None:
        return []
    if callable(notifiers):  # one notifier instead of a list: accept it
        return [notifiers]
    out = list(notifiers)
    for i, n in enumerate(out):
        if not callable(n):
            raise TypeError(f"{owner}: on_backlog_alert[{i}] is a {type(n).__name__}, not a notifier (a BaseNotifier or a callable taking the context)")
    return out


def notify_changes(notifiers: Sequence[Callable[..., Any]], context: Mapping[str, Any], changes: Iterable[AlertChange], *, queue: str) -> int:
    """Call every notifier once per change; return how many calls failed.

    A failing notifier is logged and skipped: a broken Slack webhook must not fail (or stop) the wait it
    reports on. Each call gets a shallow copy of the notifier, because rendering a ``BaseNotifier``'s
    template fields is irreversible and the same notifier must render the next alert afresh.
    """
    failures = 0
    for change in changes:
        log.warning("%s on %s", change.describe(), queue)
        alert_context = {**context, "batchq_alert": change.to_dict(), "batchq_queue": queue}
        for notifier in notifiers:
            try:
                copy.copy(notifier)(alert_context)
            except Exception:  # noqa: BLE001 - reported, never raised: see the docstring
                failures += 1
                log.exception("backlog alert notifier %r failed for %s %s", notifier, change.kind, change.state)
    return failures


def push_episodes(context: Mapping[str, Any], episodes: list[dict[str, Any]]) -> None:
    """The whole alert history of this wait to XCom ``alert_episodes`` (the Batch view shows it)."""
    context["ti"].xcom_push(key=ALERTS_XCOM_KEY, value=episodes)


def run_deadline(context: Mapping[str, Any], clock: str | None) -> float | None:
    """Epoch seconds of the run's deadline: the first ``clock`` (``"HH:MM"``) in the DAG's timezone at or
    after the run is due (its logical date, else ``run_after``, else now)."""
    if not clock:
        return None
    dag_run = context.get("dag_run")
    anchor = context.get("logical_date") or getattr(dag_run, "logical_date", None) or getattr(dag_run, "run_after", None)
    if anchor is None:
        import pendulum

        anchor = pendulum.now("UTC")
    dag = context.get("dag")
    return resolve_deadline(clock, anchor, getattr(dag, "timezone", None) or "UTC")


def emit_alert_gauges(queue: str, open_kinds: Iterable[str]) -> None:
    """``batchq.alert.<kind>`` gauges (1 open, 0 not), tagged ``queue``: kinds are a fixed set, so the
    cardinality is bounded by the queues. Through the same emitter as every batchq gauge (its stats
    backend guard included). Never raises."""
    from batchq.airflow.metrics import emit_gauges

    open_set = set(open_kinds)
    emit_gauges("alert", {kind: 1 if kind in open_set else 0 for kind in ALL_KINDS}, {"queue": queue})


def load_notifiers(paths: str | None) -> list[Any]:
    """Notifiers named by import paths, ``"pkg.module:attr,pkg.other:attr"`` (for a DAG configured from
    the environment). ``attr`` is a notifier (or a plain callable), a list of them, or a notifier class
    that needs no arguments."""
    out: list[Any] = []
    for path in filter(None, (p.strip() for p in (paths or "").split(","))):
        try:
            target = import_object(path)
        except ValueError as exc:
            raise ValueError(f"notifier path {exc}") from None
        if isinstance(target, type):
            target = target()
        out.extend(check_notifiers(target if isinstance(target, (list, tuple)) else [target], path))
    return out

