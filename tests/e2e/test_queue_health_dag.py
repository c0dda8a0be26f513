"""``dags/batchq_queue_health.py`` run by Airflow itself (``airflow dags test``): a notifier named in
``BATCHQ_QUEUE_HEALTH_NOTIFIERS`` is told that a spec's results DLQ holds a message, and the detectors'
state is stored in the Airflow Variable for the next run (the real task runner's Variable API)."""

from __future__ import annotations

import json

import pytest
from batchq.sqs import send_message

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

NOTIFIER_MODULE = '''
import json, os
from airflow.sdk import BaseNotifier


class FileNotifier(BaseNotifier):
    """Appends every alert it is told about to $ALERT_LOG, one JSON line each."""

    def notify(self, context):
        with open(os.environ["ALERT_LOG"], "a") as f:
            f.write(json.dumps({"queue": context["batchq_queue"], **context["batchq_alert"]}) + "\\n")
'''


def test_queue_health_dag_notifies_and_keeps_state(airflow_home, queue_spec_factory, sqs_client, tmp_path):
    qspec, urls = queue_spec_factory()
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "watched.yaml").write_text(
        f"name: watched\njob_type: classification\ndimensions: {{x: [1]}}\nqueues: {{input: {qspec.input}, results: {qspec.results}}}\n"
    )
    (tmp_path / "alert_recorder.py").write_text(NOTIFIER_MODULE)
    send_message(sqs_client, urls.results_dlq, "a dead result")
    log = tmp_path / "alerts.jsonl"
    env = {
        "AIRFLOW__BATCHQ__SPEC_DIR": str(specs),
        "BATCHQ_QUEUE_HEALTH_NOTIFIERS": "alert_recorder:FileNotifier",
        "ALERT_LOG": str(log),
        "PYTHONPATH": f"{tmp_path}:{airflow_home.env.get('PYTHONPATH', '')}",
    }
    proc, run_id = airflow_home.dags_test("batchq_queue_health", "2026-01-01T00:05:00+00:00", env=env, timeout=300)
    states = dict(airflow_home.query("select task_id, state from task_instance where run_id = ?", run_id))
    assert states == {"check_queues": "success"}, proc.stdout[-3000:]
    alerts = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(a["queue"], a["kind"], a["state"]) for a in alerts] == [(qspec.results, "dead_letters", "fired")]
    # The value is stored encrypted: read it as a user would.
    state = json.loads(airflow_home.run("variables", "get", "batchq_queue_health_state", env=env).stdout.strip().splitlines()[-1])
    assert set(state) == {qspec.input, qspec.results}
    assert state[qspec.results]["open"].keys() == {"dead_letters"}
