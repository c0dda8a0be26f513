"""The Airflow half of backlog alerts without an endpoint: the trigger round-trips its alert state,
hands changes over in a JSON event, notifiers are called per change (a failing one is skipped), and
notifier configuration errors are clear."""

from __future__ import annotations

import asyncio
import importlib
import json
import time
from typing import ClassVar

import pytest
from airflow.sdk import BaseNotifier
from batchq.airflow.notifiers import (
    check_notifiers,
    load_notifiers,
    notify_changes,
    run_deadline,
)
from batchq.airflow.triggers import BACKLOG_ALERT_REASON, QueueDrainedTrigger
from batchq.monitor.alerts import AlertChange, AlertPolicy, BacklogAlerts
from batchq.monitor.waits import InputWait
from batchq.sqs.snapshot import QueueSnapshot

POLICY = AlertPolicy(window_s=4, min_points=3, stall_after_s=0.05, resolve_after_s=0)


def test_trigger_with_alert_state_round_trips():
    alerts = BacklogAlerts(policy=POLICY, expected=10, deadline=1.8e9)
    alerts.observe(QueueSnapshot(1.0, 5, 0, 0), 1.0)
    wait = InputWait(started_at=1.0, deadline=100.0, stable_for_s=0)
    wait.step(QueueSnapshot(1.0, 5, 0, 0), 1.0)
    t = QueueDrainedTrigger("http://h/1/q", alerts=alerts.to_dict(), alert_events=True, wait_state=wait.to_dict(), started_at=1.0)
    classpath, kwargs = t.serialize()
    json.dumps(kwargs)
    module, _, name = classpath.rpartition(".")
    rebuilt = getattr(importlib.import_module(module), name)(**kwargs)
    assert rebuilt.serialize() == t.serialize()
    assert rebuilt._new_wait().to_dict() == wait.to_dict()  # the stability window and series go on


def test_bad_alert_state_fails_at_defer_time():
    with pytest.raises(ValueError, match="stall_after_s"):
        QueueDrainedTrigger("http://h/1/q", alerts={"policy": {"stall_after_s": 0}})


class _Conn:
    async def __aenter__(self):
        return object()

    async def __aexit__(self, *exc):
        return False


class _Hook:
    async def get_async_conn(self):
        return _Conn()


def test_the_trigger_hands_an_alert_over_in_a_json_event(monkeypatch):
    import batchq.airflow.triggers as mod

    async def stuck(client, queue_url, dlq_url=None):
        return QueueSnapshot(time.time(), 7, 0, 0)

    monkeypatch.setattr(mod, "aget_snapshot", stuck)
    monkeypatch.setattr(QueueDrainedTrigger, "hook", property(lambda self: _Hook()))
    t = QueueDrainedTrigger("http://h/1/q", poll_interval_s=0.02, emit_metrics=False, alerts=BacklogAlerts(policy=POLICY).to_dict(), alert_events=True)

    async def first():
        async for event in t.run():
            return event.payload

    payload = asyncio.run(asyncio.wait_for(first(), 10))
    json.dumps(payload)
    assert payload["reason"] == BACKLOG_ALERT_REASON and payload["status"] == "alert"
    assert [c["kind"] for c in payload["alert_changes"]] == ["stalled"]
    assert payload["alerts"]["open"].keys() == {"stalled"}
    assert payload["wait_state"]["last"]["visible"] == 7


class Recorder(BaseNotifier):
    template_fields = ("text",)
    calls: ClassVar[list] = []

    def __init__(self, text="{{ batchq_alert.kind }}/{{ batchq_alert.state }}"):
        super().__init__()
        self.text = text

    def notify(self, context):
        Recorder.calls.append(self.text)


class Broken(BaseNotifier):
    def notify(self, context):
        raise RuntimeError("webhook down")


def test_each_change_reaches_every_notifier_and_a_broken_one_is_skipped():
    Recorder.calls = []
    rec = Recorder()
    changes = [AlertChange("late", "fired", 1.0, "m", 1.0), AlertChange("late", "resolved", 2.0, "m", 1.0)]
    failures = notify_changes([Broken(), rec], {"ti": None}, changes, queue="q")
    assert failures == 2
    # The template renders afresh per call (rendering in place would freeze the first alert's text).
    assert Recorder.calls == ["late/fired", "late/resolved"]
    assert rec.text.startswith("{{")


def test_notifier_configuration_errors_are_clear():
    with pytest.raises(TypeError, match=r"on_backlog_alert\[1\] is a str"):
        check_notifiers([Recorder(), "slack"], "wait")
    assert len(check_notifiers(Recorder(), "wait")) == 1
    assert [type(n) for n in load_notifiers(f"{__name__}:Recorder")] == [Recorder]
    with pytest.raises(ValueError, match="package.module:attribute"):
        load_notifiers("nocolon")
    with pytest.raises(ValueError, match="no_such"):
        load_notifiers(f"{__name__}:no_such")


def test_run_deadline_uses_the_dag_timezone_and_the_runs_date():
    import pendulum

    class Dag:
        timezone = pendulum.timezone("America/New_York")

    ctx = {"dag": Dag(), "logical_date": pendulum.datetime(2026, 1, 15, 12, 0, tz="UTC")}  # 07:00 in New York
    assert run_deadline(ctx, "08:00") == pendulum.datetime(2026, 1, 15, 13, 0, tz="UTC").timestamp()
    assert run_deadline(ctx, None) is None


def test_sensor_alert_arguments_fail_at_parse_time_with_clear_messages():
    from batchq.airflow.sensors import QueueDrainedSensor

    def sensor(**kw):
        return QueueDrainedSensor(task_id="wait", queue_name="http://h/1/q", **kw)

    with pytest.raises(ValueError, match=r"alert_policy: .*'stall_after'.*known: window_s"):
        sensor(alert_policy={"stall_after": 3})
    with pytest.raises(ValueError, match="stall_after_s must be > 0"):
        sensor(alert_policy={"stall_after_s": 0})
    with pytest.raises(ValueError, match="HH:MM"):
        sensor(alert_deadline="8 o'clock")
    with pytest.raises(TypeError, match=r"on_backlog_alert\[0\]"):
        sensor(on_backlog_alert=["slack"])
    s = sensor(alert_policy={"kinds": ["late"]}, alert_deadline="07:30", on_backlog_alert=Recorder())
    assert s.alert_policy.kinds == ("late",) and len(s.on_backlog_alert) == 1
