"""`deferrable` follows Airflow's own `[operators] default_deferrable` (issue 20), like every provider's
deferrable operators; an explicit argument still wins. Before issue 20 it was hard-wired to True."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("configured", ["True", "False"])
def test_sensor_drain_and_task_group_follow_the_airflow_setting(monkeypatch, tmp_path, configured):
    from airflow.sdk import DAG
    from batchq.airflow.operators.drain import ResultsDrainOperator
    from batchq.airflow.sensors import QueueDrainedSensor
    from batchq.airflow.task_group import BatchTaskGroup

    monkeypatch.setenv("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE", configured)
    want = configured == "True"
    assert QueueDrainedSensor(task_id="w", queue_name="q").deferrable is want
    assert ResultsDrainOperator(task_id="d", batch="b", results_queue="r", sink="sqlite://").deferrable is want
    spec = tmp_path / "s.yaml"
    spec.write_text("name: s\njob_type: j\ndimensions: {a: [1, 2]}\nqueues: {input: s-in, results: s-out}\n")
    with DAG("tg", schedule=None):
        group = BatchTaskGroup(spec=str(spec), sink="sqlite://")
    assert group.wait.deferrable is want and group.drain.deferrable is want
    # An explicit argument wins over the setting.
    assert QueueDrainedSensor(task_id="w2", queue_name="q", deferrable=not want).deferrable is (not want)
