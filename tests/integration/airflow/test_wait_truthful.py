"""The wait tells the truth, against the real SQS endpoint (the harness plays the triggerer, as in
tests/integration/test_backlog_alerts.py):

- the alert gauges follow the closing path: an alert resolved when the queue drained reads 0;
- an alert change is never handed over while the queue reads empty (the wait may be about to end), and
  a resumed task whose stability window is already satisfied finishes the wait itself instead of
  re-deferring on a trigger that would fire at once (Airflow 3.3's race, apache/airflow#67287);
- with nobody consuming, the task log says so plainly, without any notifier.

The live version of the first two (api-server, scheduler, triggerer, StatsD) is
tests/deployment/test_alerts_live.py.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from airflow.sdk.exceptions import TaskDeferred
from batchq.sqs import send_message

from tests.integration.airflow.test_backlog_alerts import (
    FakeTI,
    RecordingNotifier,
    play_triggerer,
)
from tests.support.airflow_conn import set_aws_connection

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

CONN_ID = "batchq_truth_test"


@pytest.fixture
def gauges(monkeypatch):
    """Every gauge batchq's emitter sends, in order: (name, value, tags)."""
    import batchq.airflow.metrics as am

    sent: list[tuple[str, float, dict]] = []

    class Recorder:
        def gauge(self, name, value, tags=None):
            sent.append((name, value, dict(tags or {})))

        def incr(self, name, value=1, tags=None):
            pass

    monkeypatch.setattr(am, "_stats", lambda: Recorder())
    return sent


def last_gauge(sent, name: str) -> float | None:
    values = [v for n, v, _ in sent if n == name]
    return values[-1] if values else None


async def _first_event(trigger, timeout: float = 60):
    async def go():
        async for event in trigger.run():
            return event.payload

    return await asyncio.wait_for(go(), timeout)


def test_alert_resolved_by_the_drain_reads_zero(sqs_client, make_queue, sqs_endpoint, monkeypatch, gauges):
    """``stalled`` fires while nobody consumes; the queue is then emptied and the wait ends ``drained``,
    which resolves it (resolve_after_s is long, so only the closing path can): its gauge must end at 0."""
    from batchq.airflow.triggers import QueueDrainedTrigger
    from batchq.monitor.alerts import AlertPolicy, BacklogAlerts
    from batchq.sqs import delete_messages, receive_messages

    set_aws_connection(monkeypatch, CONN_ID, sqs_endpoint)
    url = make_queue()
    send_message(sqs_client, url, "m")
    alerts = BacklogAlerts(policy=AlertPolicy(stall_after_s=1.0, resolve_after_s=600.0)).to_dict()
    trigger = QueueDrainedTrigger(queue_url=url, stable_for_s=0.5, poll_interval_s=0.2, deadline=time.time() + 60, alerts=alerts, aws_conn_id=CONN_ID)

    async def run():
        task = asyncio.ensure_future(_first_event(trigger))
        while last_gauge(gauges, "batchq.alert.stalled") != 1:  # fired in the triggerer
            await asyncio.sleep(0.1)
        delete_messages(sqs_client, url, receive_messages(sqs_client, url, max_messages=10, wait_seconds=1))
        return await task

    event = asyncio.run(asyncio.wait_for(run(), 60))
    assert event["reason"] == "drained"
    assert [(c["kind"], c["state"]) for c in event["alert_changes"]] == [("stalled", "resolved")]
    assert last_gauge(gauges, "batchq.alert.stalled") == 0  # was stuck at 1 before the closing path emitted


def test_the_resumed_sensor_emits_the_gauges_of_the_final_event(gauges):
    from batchq.airflow.sensors import QueueDrainedSensor
    from batchq.monitor.alerts import BacklogAlerts

    sensor = QueueDrainedSensor(task_id="wait", queue_name="http://h/1/q", aws_conn_id="x")
    state = BacklogAlerts().to_dict()
    event = {"status": "success", "reason": "drained", "queue_url": "http://h/1/q", "snapshot": None, "waited_s": 3.0,
             "alert_changes": [{"kind": "stalled", "state": "resolved", "at": 1.0, "message": "queue drained", "started_at": 0.5}], "alerts": state}
    sensor.execute_complete({"ti": FakeTI()}, event)
    assert last_gauge(gauges, "batchq.alert.stalled") == 0


def test_dead_letters_on_an_empty_queue_is_not_handed_over_mid_window(sqs_client, make_queue, sqs_endpoint, monkeypatch, gauges):
    """The reported case: the DLQ already holds a message when the wait starts and the workers kept up
    (the input reads empty). The alert goes with the final event; nothing re-defers."""
    from batchq.airflow import sensors
    from batchq.airflow.sensors import QueueDrainedSensor

    monkeypatch.setattr(sensors, "REDEFER_GUARD_S", 2.0)  # the window is longer: the task defers, the trigger decides
    set_aws_connection(monkeypatch, CONN_ID, sqs_endpoint)
    url, dlq = make_queue(), make_queue()
    send_message(sqs_client, dlq, "dead")
    notifier = RecordingNotifier("{{ batchq_alert.kind }} {{ batchq_alert.state }}")
    sensor = QueueDrainedSensor(task_id="wait_input_drained", queue_name=url, dlq_name=dlq, aws_conn_id=CONN_ID, stable_for=8.0,
                                poll_interval=0.3, timeout=60, on_backlog_alert=[notifier])
    ti = FakeTI()
    result, deferrals = play_triggerer(sensor, {"ti": ti, "dag": None})
    assert result["reason"] == "drained"
    assert deferrals == 1, "an alert was handed over while the queue read empty: the task re-deferred"
    assert [(k, s) for k, s, _ in notifier.calls] == [("dead_letters", "fired")]
    assert last_gauge(gauges, "batchq.alert.dead_letters") == 1  # still open: the DLQ needs someone


def test_a_resumed_wait_that_is_already_over_ends_in_the_task(sqs_client, make_queue, sqs_endpoint, monkeypatch, gauges):
    """A hand-over carried a window that is satisfied by the time the task runs: the task ends the wait
    (drained) instead of deferring on a trigger that would fire a second later."""
    from batchq.airflow.sensors import QueueDrainedSensor
    from batchq.monitor.alerts import BacklogAlerts
    from batchq.monitor.waits import InputWait
    from batchq.sqs import get_snapshot

    set_aws_connection(monkeypatch, CONN_ID, sqs_endpoint)
    url = make_queue()
    now = time.time()
    wait = InputWait(started_at=now - 30, deadline=now + 60, stable_for_s=2.0)
    wait.step(get_snapshot(sqs_client, url), now - 10)  # empty since 10 s ago
    wait.empty_since = now - 10
    sensor = QueueDrainedSensor(task_id="wait", queue_name=url, aws_conn_id=CONN_ID, stable_for=2.0, poll_interval=0.3, on_backlog_alert=[RecordingNotifier("x")])
    event = {"status": "alert", "reason": "backlog_alert", "queue_url": url, "dlq_url": None, "results_url": None,
             "alert_changes": [], "alerts": BacklogAlerts().to_dict(), "wait_state": wait.to_dict()}
    ti = FakeTI()
    out = sensor.execute_complete({"ti": ti, "dag": None}, event)
    assert out["reason"] == "drained" and out["waited_s"] >= 30


def test_a_resumed_wait_far_from_its_end_defers_again(sqs_client, make_queue, sqs_endpoint, monkeypatch):
    from batchq.airflow.sensors import REDEFER_GUARD_S, QueueDrainedSensor
    from batchq.monitor.alerts import BacklogAlerts
    from batchq.monitor.waits import InputWait

    set_aws_connection(monkeypatch, CONN_ID, sqs_endpoint)
    url = make_queue()
    now = time.time()
    wait = InputWait(started_at=now, deadline=now + 600, stable_for_s=REDEFER_GUARD_S + 60)
    sensor = QueueDrainedSensor(task_id="wait", queue_name=url, aws_conn_id=CONN_ID, stable_for=REDEFER_GUARD_S + 60, on_backlog_alert=[RecordingNotifier("x")])
    event = {"status": "alert", "reason": "backlog_alert", "queue_url": url, "dlq_url": None, "results_url": None,
             "alert_changes": [], "alerts": BacklogAlerts().to_dict(), "wait_state": wait.to_dict()}
    t0 = time.monotonic()
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute_complete({"ti": FakeTI(), "dag": None}, event)
    assert time.monotonic() - t0 < 10  # one poll, not the window
    carried = deferred.value.trigger.wait_state
    assert carried["empty_since"] is not None and carried["started_at"] == pytest.approx(now)


def test_no_consumer_is_said_plainly_in_the_log_without_notifiers(sqs_client, make_queue, sqs_endpoint, monkeypatch, capsys):
    from batchq.airflow.triggers import QueueDrainedTrigger
    from batchq.monitor import progress

    monkeypatch.setattr(progress, "NO_CONSUMER_AFTER_S", 1.0)
    monkeypatch.setattr(progress, "PROGRESS_EVERY_S", 0.5)
    set_aws_connection(monkeypatch, CONN_ID, sqs_endpoint)
    url = make_queue()
    for i in range(5):
        send_message(sqs_client, url, f"m{i}")
    trigger = QueueDrainedTrigger(queue_url=url, stable_for_s=1.0, poll_interval_s=0.2, deadline=time.time() + 6, aws_conn_id=CONN_ID)
    capsys.readouterr()
    event = asyncio.run(_first_event(trigger))
    assert event["reason"] == "timeout"
    # The trigger's log (what the task log shows for a deferred wait), through Airflow's structlog.
    lines = [line for line in capsys.readouterr().out.splitlines() if "QueueDrainedTrigger" in line]
    progress_lines = [line for line in lines if "input backlog 5 (visible 5, in flight 0, delayed 0)" in line]
    assert len(progress_lines) >= 2, lines  # a steady cadence, not one line
    warnings = [line for line in lines if "warning" in line and "NO CONSUMER" in line]
    assert warnings and "5 message(s) waiting, none in flight" in warnings[0], lines


def test_the_trigger_fires_no_sooner_than_its_min_event_age(sqs_client, make_queue, sqs_endpoint, monkeypatch):
    """The live race (tests/deployment/test_alerts_live.py): the deferring process's "success" reached
    the scheduler 6 s after the deferral, after a trigger had already fired and queued the task again.
    A wait's trigger holds any event until ``[batchq] trigger_min_event_age_s`` after its start."""
    from batchq.airflow.triggers import QueueDrainedTrigger
    from batchq.monitor.alerts import AlertPolicy, BacklogAlerts

    monkeypatch.setenv("AIRFLOW__BATCHQ__TRIGGER_MIN_EVENT_AGE_S", "3")
    set_aws_connection(monkeypatch, CONN_ID, sqs_endpoint)
    empty, stalled = make_queue(), make_queue()
    send_message(sqs_client, stalled, "m")
    drained = QueueDrainedTrigger(queue_url=empty, stable_for_s=0.0, poll_interval_s=0.2, deadline=time.time() + 60, aws_conn_id=CONN_ID)
    t0 = time.monotonic()
    assert asyncio.run(_first_event(drained))["reason"] == "drained"
    assert time.monotonic() - t0 >= 3.0
    # An alert hand-over waits too (the detector fires at once: stall_after_s is tiny).
    alerts = BacklogAlerts(policy=AlertPolicy(stall_after_s=0.1, resolve_after_s=600.0)).to_dict()
    handing = QueueDrainedTrigger(queue_url=stalled, stable_for_s=1.0, poll_interval_s=0.2, deadline=time.time() + 60, alerts=alerts, alert_events=True, aws_conn_id=CONN_ID)
    t0 = time.monotonic()
    event = asyncio.run(_first_event(handing))
    assert event["reason"] == "backlog_alert" and [c["kind"] for c in event["alert_changes"]] == ["stalled"]
    assert time.monotonic() - t0 >= 3.0
