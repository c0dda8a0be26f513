"""Metrics from a real ``airflow triggerer`` process arrive at a real StatsD listener.

A ``dags test`` run executes triggers in-process; a production triggerer runs them in its TriggerRunner
subprocess. These tests start a real triggerer (StatsD on, pointed at a UDP listener on loopback), hand
it a :class:`QueueDrainedTrigger` through a Trigger row (watched by an asset, so no DAG run, scheduler
or API server is needed), and wait for ``batchq.queue.*`` lines with the queue's real depth.

The second test is a canary for the reported root cause (triggers' SDK stats left uninitialised, a
no-op logger): it disables batchq's guard (:func:`batchq.airflow.metrics.ensure_stats_initialized`,
replaced by a probe through ``sitecustomize``) and records what the TriggerRunner process holds. With
Airflow 3.3.2 the SDK copy is already initialised there (``airflow.sdk.serde`` calls
``stats.initialize`` at import, and the triggerer imports it), so metrics arrive without the guard;
if an Airflow upgrade changes that, this test fails and the first one shows whether the guard covers it.
"""
from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.support.statsd_listener import StatsdListener

REPO = Path(__file__).resolve().parents[2]
AIRFLOW_BIN = Path(sys.executable).with_name("airflow")

MAKE_TRIGGER = """
import json, sys
from airflow.models.asset import AssetModel, AssetWatcherModel
from airflow.models.trigger import Trigger
from airflow.utils.session import create_session
from batchq.airflow.triggers import QueueDrainedTrigger

queue_url, name = sys.argv[1], sys.argv[2]
classpath, kwargs = QueueDrainedTrigger(queue_url=queue_url, poll_interval_s=1.0, stable_for_s=3600.0).serialize()
with create_session() as session:
    asset = AssetModel(name=name, uri=f"batchq://{name}", group="asset")
    trigger = Trigger(classpath=classpath, kwargs=kwargs)
    session.add_all([asset, trigger])
    session.flush()
    session.add(AssetWatcherModel(name=name, asset_id=asset.id, trigger_id=trigger.id))
"""

DISABLE_FIX = """
import os
import batchq.airflow.metrics as m
def _probe():
    import airflow.sdk._shared.observability.metrics.stats as s
    with open(os.environ["PROBE_FILE"], "a") as f:
        f.write(f"{os.getpid()} {s._factory!r}\\n")
    return False
m.ensure_stats_initialized = _probe
"""


def _triggerer_metrics(airflow_home, sqs_client, make_queue, tmp_path, *, visible: int, disable_fix: bool, wait_s: float) -> tuple[list[str], str, list[str]]:
    """Start a triggerer with one QueueDrainedTrigger on a queue holding ``visible`` messages; return the
    ``batchq.queue.visible`` lines with that value, the triggerer's log tail and all its metric lines."""
    name = f"metrics-{uuid.uuid4().hex[:8]}"
    url = make_queue(name)
    sqs_client.send_message_batch(QueueUrl=url, Entries=[{"Id": str(i), "MessageBody": "{}"} for i in range(visible)])
    env = {**airflow_home.env, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "include"), str(REPO), airflow_home.env.get("PYTHONPATH", "")]))}
    if disable_fix:
        site = tmp_path / "site"
        site.mkdir()
        (site / "sitecustomize.py").write_text(DISABLE_FIX)
        env["PROBE_FILE"] = str(tmp_path / "probe.txt")
        env["PYTHONPATH"] = os.pathsep.join([str(site), env["PYTHONPATH"]])
    subprocess.run([sys.executable, "-c", MAKE_TRIGGER, url, name], env=env, check=True, timeout=120, capture_output=True)
    try:
        return _run_triggerer(airflow_home, env, tmp_path, visible, wait_s)
    finally:
        # Leave the shared Airflow home as we found it: no orphan asset-watched trigger for later tests.
        ids = [r[0] for r in airflow_home.query("select trigger_id from asset_watcher where name = ?", name)]
        airflow_home.query("delete from asset_watcher where name = ?", name)
        for trigger_id in ids:
            airflow_home.query("delete from trigger where id = ?", trigger_id)
        airflow_home.query("delete from asset where name = ?", name)


def _run_triggerer(airflow_home, env, tmp_path, visible: int, wait_s: float) -> tuple[list[str], str, list[str]]:
    with StatsdListener() as listener:
        env.update({
            "AIRFLOW__METRICS__STATSD_ON": "True",
            "AIRFLOW__METRICS__STATSD_HOST": "127.0.0.1",
            "AIRFLOW__METRICS__STATSD_PORT": str(listener.port),
            "AIRFLOW__METRICS__STATSD_PREFIX": "airflow",
        })
        log = (tmp_path / "triggerer.log").open("w+")
        proc = subprocess.Popen([str(AIRFLOW_BIN), "triggerer"], env=env, cwd=airflow_home.path, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            # The triggerer's own metrics prove the listener is reachable from it.
            listener.wait_for("airflow.", timeout=180, alive=lambda: proc.poll() is None)
            # Match this queue's depth (the value is what proves it is this trigger's gauge).
            lines = listener.wait_for(f"batchq.queue.visible:{visible}.0|g", timeout=wait_s, alive=lambda: proc.poll() is None)
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        log.seek(0)
        return lines, log.read()[-4000:], listener.matching("airflow.")


@pytest.mark.timeout(400)
def test_queue_gauges_arrive_from_a_real_triggerer(airflow_home, sqs_client, make_queue, tmp_path):
    lines, log, airflow_lines = _triggerer_metrics(airflow_home, sqs_client, make_queue, tmp_path, visible=3, disable_fix=False, wait_s=120)
    assert airflow_lines, f"the triggerer sent no metrics at all to the listener:\n{log}"
    assert lines, f"no batchq.queue.visible:3 line from the triggerer; it sent {sorted({x.split(':')[0] for x in airflow_lines})[:20]}\n{log}"
    # Airflow's statsd prefix, then batchq's one prefix.
    assert all(line.startswith("airflow.batchq.queue.visible:") for line in lines), lines


@pytest.mark.timeout(400)
def test_triggerer_initialises_sdk_stats_itself_on_airflow_3_3(airflow_home, sqs_client, make_queue, tmp_path):
    lines, log, airflow_lines = _triggerer_metrics(airflow_home, sqs_client, make_queue, tmp_path, visible=5, disable_fix=True, wait_s=60)
    assert airflow_lines, f"the triggerer sent no metrics at all to the listener:\n{log}"
    probes = (tmp_path / "probe.txt").read_text().splitlines()
    assert probes, "the trigger never emitted (the probe was not called)"
    assert all(not p.endswith(" None") for p in probes), f"SDK stats uninitialised in the TriggerRunner: {probes[:3]}"
    assert lines, f"SDK stats initialised but no batchq line arrived:\n{log}"
