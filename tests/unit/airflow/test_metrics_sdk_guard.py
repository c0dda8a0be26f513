"""batchq's guard for an uninitialised Task SDK stats backend (see batchq.airflow.metrics).

In a fresh process the SDK copy of Airflow's stats is put in the state a triggerer's TriggerRunner was
reported to have (no factory: a no-op logger); StatsD goes to a real UDP listener on loopback. With the
guard the gauge arrives; with it disabled nothing does — so the guard is what makes the difference.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.support.statsd_listener import StatsdListener

SCRIPT = """
import sys
import airflow.sdk._shared.observability.metrics.stats as sdk_stats
# The reported state: nothing initialised the SDK copy in this process.
if hasattr(sdk_stats, "initialize"):
    sdk_stats._factory = None
    sdk_stats._backend = None
else:  # Task SDK 1.2 (Airflow 3.2): the backend lives on the Stats class's metaclass
    type.__setattr__(sdk_stats.Stats, "factory", None)
    type.__setattr__(sdk_stats.Stats, "instance", None)
import batchq.airflow.metrics as m
if sys.argv[1] == "off":
    m.ensure_stats_initialized = lambda: False
m.emit_queue_gauges("guard-q", {"visible": 7})
"""


@pytest.mark.parametrize(("guard", "arrives"), [("on", True), ("off", False)])
def test_guard_initialises_an_uninitialised_sdk_stats_backend(guard, arrives):
    with StatsdListener() as listener:
        env = {
            **os.environ,
            "AIRFLOW__METRICS__STATSD_ON": "True",
            "AIRFLOW__METRICS__STATSD_HOST": "127.0.0.1",
            "AIRFLOW__METRICS__STATSD_PORT": str(listener.port),
            "AIRFLOW__METRICS__STATSD_PREFIX": "airflow",
        }
        proc = subprocess.run([sys.executable, "-c", SCRIPT, guard], env=env, capture_output=True, text=True, timeout=120, check=False)
        assert proc.returncode == 0, proc.stderr[-2000:]
        lines = listener.wait_for("batchq.queue.visible", timeout=10 if arrives else 2)
    if arrives:
        assert lines and all(x.startswith("airflow.batchq.queue.visible:7") and x.endswith("|g") for x in lines), lines
    else:
        assert lines == []
