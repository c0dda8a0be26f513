"""Backlog alerts end to end through the sensor's real deferrable path, against the real SQS endpoint.

A producer keeps sending to a queue nobody consumes (workers stopped): the backlog really grows and
``stalled`` fires. The harness plays the triggerer: it runs each trigger the sensor defers on until its
event, then calls the sensor's resume method, which notifies and defers again with the carried state.
When the notifier has been told, a consumer drains the queue: the alert resolves, the wait ends
``drained``, and the history is in XCom ``alert_episodes``. The notifier is a real ``BaseNotifier``
subclass with a templated field (rendered afresh for every call).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time

import pytest
from airflow.sdk import BaseNotifier
from airflow.sdk.exceptions import TaskDeferred
from batchq.sqs import delete_messages, get_snapshot, receive_messages, send_message

from tests.support.airflow_conn import set_aws_connection

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

CONN_ID = "batchq_alerts_test"


class RecordingNotifier(BaseNotifier):
    """Records every call: (kind, state, the rendered template)."""

    template_fields = ("text",)

    def __init__(self, text: str):
        super().__init__()
        self.text = text
        self.calls: list[tuple[str, str, str]] = []
        self.fired = threading.Event()

    def __copy__(self):
        # The wiring renders a shallow copy per call; the copy shares ``calls`` and ``fired`` by design.
        clone = type(self).__new__(type(self))
        clone.__dict__.update(self.__dict__)
        return clone

    def notify(self, context):
        alert = context["batchq_alert"]
        self.calls.append((alert["kind"], alert["state"], self.text))
        if alert["state"] == "fired":
            self.fired.set()


class FakeTI:
    def __init__(self):
        self.pushed: dict = {}

    def xcom_push(self, key, value):
        self.pushed[key] = json.loads(json.dumps(value))  # JSON only, as XCom stores it

    def xcom_pull(self, task_ids=None, key=None):
        return {"expected": 40} if key == "plan" else None


async def _first_event(trigger, timeout: float):
    async def go():
        async for event in trigger.run():
            return event.payload

    return await asyncio.wait_for(go(), timeout)


def play_triggerer(sensor, context, timeout: float = 90) -> tuple[dict, int]:
    """What Airflow does with a deferring task: run its trigger to the first event, resume the task with
    it, repeat while it defers again. Returns (the task's return value, deferrals)."""
    deadline = time.monotonic() + timeout
    deferrals = 0
    try:
        return sensor.execute(context), deferrals
    except TaskDeferred as deferred:
        current = deferred
    while True:
        deferrals += 1
        # The triggerer rebuilds the trigger from its serialised kwargs: so does the harness.
        _classpath, kwargs = current.trigger.serialize()
        json.dumps(kwargs)
        trigger = type(current.trigger)(**kwargs)
        event = asyncio.run(_first_event(trigger, timeout=max(1.0, deadline - time.monotonic())))
        try:
            return getattr(sensor, current.method_name)(context, event), deferrals
        except TaskDeferred as again:
            current = again


def test_backlog_grows_alert_fires_once_then_resolves_when_it_drains(sqs_client, make_queue, sqs_endpoint, monkeypatch):
    from batchq.airflow.sensors import QueueDrainedSensor

    set_aws_connection(monkeypatch, CONN_ID, sqs_endpoint)
    url = make_queue()
    notifier = RecordingNotifier("{{ batchq_alert.kind }} {{ batchq_alert.state }} on {{ batchq_queue }}")
    sensor = QueueDrainedSensor(
        task_id="wait_input_drained",
        queue_name=url,
        aws_conn_id=CONN_ID,
        stable_for=1.5,
        poll_interval=0.3,
        timeout=90,
        on_backlog_alert=[notifier],
        alert_policy={"window_s": 6, "min_points": 3, "stall_after_s": 2.5, "resolve_after_s": 1.0},
    )
    stop = threading.Event()
    sent: list[int] = []

    def producer():  # messages keep arriving, nobody consumes
        while not stop.is_set() and len(sent) < 40:
            send_message(sqs_client, url, f"m{len(sent)}")
            sent.append(1)
            time.sleep(0.2)

    def consumer():  # workers come back once the alert went out
        notifier.fired.wait(80)
        stop.set()
        producing.join()
        while get_snapshot(sqs_client, url).backlog:
            msgs = receive_messages(sqs_client, url, max_messages=10, wait_seconds=1)
            delete_messages(sqs_client, url, msgs)

    producing = threading.Thread(target=producer, daemon=True)
    consuming = threading.Thread(target=consumer, daemon=True)
    producing.start()
    consuming.start()
    ti = FakeTI()
    try:
        result, deferrals = play_triggerer(sensor, {"ti": ti, "dag": None})
    finally:
        stop.set()
        notifier.fired.set()
        consuming.join(30)

    assert result["reason"] == "drained"
    queue = url.rsplit("/", 1)[-1]
    # Fired once (while the backlog grew with nobody consuming), resolved once (after it drained).
    assert notifier.calls == [("stalled", "fired", f"stalled fired on {queue}"), ("stalled", "resolved", f"stalled resolved on {queue}")]
    assert deferrals >= 2  # the alert handed over mid-wait, and the wait went on
    episodes = ti.pushed["alert_episodes"]
    assert [e["kind"] for e in episodes] == ["stalled"]
    assert episodes[0]["resolved_at"] is not None and episodes[0]["resolved_at"] > episodes[0]["started_at"]
    assert "of 40 expected" in episodes[0]["message"]  # the run's count came from the plan XCom
    # The carried wait state kept the whole curve: it shows the growth before the alert.
    backlog = [p[1] + p[2] + p[3] for p in ti.pushed["backlog_series"]["points"]]
    assert max(backlog) >= 5 and backlog[-1] == 0
    assert backlog.index(max(backlog)) > 0


def test_without_notifiers_alerts_are_recorded_and_the_wait_never_hands_over(sqs_client, make_queue, sqs_endpoint, monkeypatch):
    from batchq.airflow.sensors import QueueDrainedSensor

    set_aws_connection(monkeypatch, CONN_ID, sqs_endpoint)
    url = make_queue()
    for i in range(3):
        send_message(sqs_client, url, f"m{i}")
    sensor = QueueDrainedSensor(task_id="w", queue_name=url, aws_conn_id=CONN_ID, stable_for=1.0, poll_interval=0.3, timeout=60, alert_policy={"stall_after_s": 1.5, "resolve_after_s": 0.5})

    # No notifier to wait on: spy on the detector (the real method still runs) to consume only once the
    # alert has fired in the triggerer, however slowly this machine starts the trigger.
    from batchq.monitor.alerts import BacklogAlerts

    fired = threading.Event()
    real_fire = BacklogAlerts._fire

    def spy(self, *args):
        fired.set()
        return real_fire(self, *args)

    monkeypatch.setattr(BacklogAlerts, "_fire", spy)

    def consume_later():
        fired.wait(50)
        msgs = receive_messages(sqs_client, url, max_messages=10, wait_seconds=1)
        delete_messages(sqs_client, url, msgs)

    threading.Thread(target=consume_later, daemon=True).start()
    ti = FakeTI()
    result, deferrals = play_triggerer(sensor, {"ti": ti, "dag": None})
    assert result["reason"] == "drained" and deferrals == 1
    assert [(e["kind"], e["resolved_at"] is not None) for e in ti.pushed["alert_episodes"]] == [("stalled", True)]


def test_poke_path_runs_the_same_detector_and_notifies_in_the_task(sqs_client, make_queue, sqs_endpoint, monkeypatch):
    from batchq.airflow.sensors import QueueDrainedSensor

    set_aws_connection(monkeypatch, CONN_ID, sqs_endpoint)
    url = make_queue()
    for i in range(3):
        send_message(sqs_client, url, f"m{i}")
    notifier = RecordingNotifier("{{ batchq_alert.kind }} {{ batchq_alert.state }}")
    sensor = QueueDrainedSensor(
        task_id="w", queue_name=url, aws_conn_id=CONN_ID, deferrable=False, stable_for=0.5, poll_interval=0.2, timeout=60,
        on_backlog_alert=[notifier], alert_policy={"stall_after_s": 1.0, "resolve_after_s": 0.3},
    )
    ti = FakeTI()
    deadline = time.monotonic() + 50
    while not notifier.fired.is_set() and time.monotonic() < deadline:
        assert sensor.poke({"ti": ti}) is False
        time.sleep(0.2)
    assert notifier.calls == [("stalled", "fired", "stalled fired")]
    delete_messages(sqs_client, url, receive_messages(sqs_client, url, max_messages=10, wait_seconds=1))
    done = False
    while not done and time.monotonic() < deadline:
        done = sensor.poke({"ti": ti})
        time.sleep(0.2)
    assert done and done.xcom_value["reason"] == "drained"
    assert notifier.calls[1:] == [("stalled", "resolved", "stalled resolved")]
    assert [(e["kind"], e["resolved_at"] is not None) for e in ti.pushed["alert_episodes"]] == [("stalled", True)]
