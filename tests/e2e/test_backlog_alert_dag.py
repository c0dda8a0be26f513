"""Backlog alerts through Airflow itself: ``airflow dags test`` runs a DAG whose ``QueueDrainedSensor``
has a notifier; its trigger runs in Airflow's in-process triggerer. The queue holds messages nobody
consumes, so ``stalled`` fires: the trigger hands the alert over, Airflow resumes the sensor, which
notifies and defers again. Once the notifier has been told, the test consumes the queue; the alert
resolves, the run succeeds, and ``alert_episodes`` is in XCom."""

from __future__ import annotations

import json
import threading
import time

import pytest
from batchq.sqs import delete_messages, get_snapshot, receive_messages, send_bodies

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

DAG_FILE = '''
import json, os

import pendulum
from airflow.sdk import BaseNotifier, dag

from batchq.airflow.sensors import QueueDrainedSensor


class FileNotifier(BaseNotifier):
    template_fields = ("text",)

    def __init__(self, text):
        super().__init__()
        self.text = text

    def notify(self, context):
        with open(os.environ["ALERT_LOG"], "a") as f:
            f.write(json.dumps({**context["batchq_alert"], "text": self.text}) + "\\n")


@dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False)
def backlog_alert_e2e():
    QueueDrainedSensor(
        task_id="wait_input_drained",
        queue_name=os.environ["ALERT_QUEUE"],
        stable_for=1,
        poll_interval=0.5,
        timeout=240,
        on_backlog_alert=[FileNotifier("{{ batchq_alert.kind }} {{ batchq_alert.state }} in {{ dag.dag_id }}")],
        alert_policy={"stall_after_s": 3, "resolve_after_s": 1},
    )


backlog_alert_e2e()
'''


def test_sensor_alert_fires_resolves_and_is_in_xcom(airflow_home, make_queue, sqs_client, tmp_path):
    url = make_queue()
    send_bodies(sqs_client, url, [(f"k{i}", f"m{i}") for i in range(5)])
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "backlog_alert_e2e.py").write_text(DAG_FILE)
    log = tmp_path / "alerts.jsonl"
    env = {"AIRFLOW__CORE__DAGS_FOLDER": str(dags), "ALERT_QUEUE": url, "ALERT_LOG": str(log)}

    def consume_once_told():
        deadline = time.monotonic() + 200
        while time.monotonic() < deadline and not (log.exists() and "fired" in log.read_text()):
            time.sleep(0.5)
        while get_snapshot(sqs_client, url).backlog:
            delete_messages(sqs_client, url, receive_messages(sqs_client, url, max_messages=10, wait_seconds=1))

    consumer = threading.Thread(target=consume_once_told, daemon=True)
    consumer.start()
    proc, run_id = airflow_home.dags_test("backlog_alert_e2e", "2026-01-01T00:00:00+00:00", env=env, timeout=300)
    consumer.join(30)
    states = dict(airflow_home.query("select task_id, state from task_instance where run_id = ?", run_id))
    assert states == {"wait_input_drained": "success"}, proc.stdout[-4000:]
    alerts = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(a["kind"], a["state"], a["text"]) for a in alerts] == [
        ("stalled", "fired", "stalled fired in backlog_alert_e2e"),
        ("stalled", "resolved", "stalled resolved in backlog_alert_e2e"),
    ]
    (raw,) = airflow_home.query("select value from xcom where run_id = ? and key = 'alert_episodes'", run_id)[0]
    episodes = json.loads(raw)
    assert [e["kind"] for e in episodes] == ["stalled"] and episodes[0]["resolved_at"] is not None
