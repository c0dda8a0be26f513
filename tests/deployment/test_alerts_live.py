"""Backlog alerts on a live Airflow (LocalExecutor; api-server, scheduler, dag-processor, triggerer on
PostgreSQL) with StatsD on, pointed at a UDP listener on loopback, and a notifier configured
(``BATCHQ_CUSTOMER_BATCH_NOTIFIERS``, tests/deployment/deploy_notifier.py).

1. ``stalled`` fires while no worker runs, then the workers come and the run drains: the alert resolves
   on the drained final event and its gauge reads 0 (it stayed at 1: only the interim path emitted).
2. The input DLQ already holds a message when runs start and the workers keep up with the fan-out:
   ``dead_letters`` fires on the first poll, with the input queue (nearly) empty. Handing it over then
   re-deferring with a satisfied stability window made the new trigger fire a second after the
   deferral, and Airflow 3.3.2's scheduler failed the task on the resumed process's stale event
   (apache/airflow#67287, #72716) in most such runs. Every run must succeed with one sensor try.
"""

from __future__ import annotations

import json
import time
import uuid

import pytest
from batchq.spec import BatchSpec
from batchq.sqs import get_queue_url, get_snapshot
from batchq.sqs.queues import ensure_queues

from tests.deployment.checks import assert_run_exact, install_write_counter
from tests.deployment.conftest import wait_until
from tests.e2e.conftest import write_customer_spec
from tests.support.statsd_listener import StatsdListener

pytestmark = [pytest.mark.deployment, pytest.mark.postgres, pytest.mark.slow]

DAG_ID = "customer_batch"
SENSOR = "wait_input_drained"
#: ``stalled`` after 5 s without progress; resolved only when the wait ends drained (the closing path).
ALERT_POLICY = {"stall_after_s": 5, "resolve_after_s": 3600}


@pytest.fixture(scope="module")
def spec_path(tmp_path_factory):
    return write_customer_spec(tmp_path_factory.mktemp("alerts-spec"), customers=12, params='{model_version: "deploy", lookback_days: 30}',
                               queue_extra=", visibility_timeout_s: 20", extra="tolerated_failure_percentage: 1.0")


@pytest.fixture(scope="module")
def statsd():
    with StatsdListener() as listener:
        yield listener


@pytest.fixture(scope="module")
def notify_file(tmp_path_factory):
    return tmp_path_factory.mktemp("notify") / "alerts.jsonl"


@pytest.fixture(scope="module")
def deployment(start_deployment, spec_path, sqs_endpoint, sqs_client, deploy_db, statsd, notify_file):
    ensure_queues(sqs_client, BatchSpec.from_yaml(spec_path).queues)
    dep = start_deployment(executor="LocalExecutor", spec=spec_path, sqs_endpoint=sqs_endpoint, extra_env={
        "AIRFLOW__METRICS__STATSD_ON": "True",
        "AIRFLOW__METRICS__STATSD_HOST": "127.0.0.1",
        "AIRFLOW__METRICS__STATSD_PORT": str(statsd.port),
        "AIRFLOW__METRICS__STATSD_PREFIX": "airflow",
        "BATCHQ_CUSTOMER_BATCH_NOTIFIERS": "deploy_notifier:record",
        "BATCHQ_CUSTOMER_BATCH_ALERT_POLICY": json.dumps(ALERT_POLICY),
        "BATCHQ_DEPLOY_NOTIFY_FILE": str(notify_file),
    })
    install_write_counter(deploy_db)
    return dep


def notified(notify_file, run_id: str) -> list[tuple[str, str]]:
    if not notify_file.exists():
        return []
    lines = [json.loads(line) for line in notify_file.read_text().splitlines() if line.strip()]
    return [(n["kind"], n["state"]) for n in lines if n["run_id"] == run_id]


def gauge_values(statsd, kind: str) -> list[float]:
    """Values of ``batchq.alert.<kind>`` in arrival order (``airflow.batchq.alert.stalled:0|g``)."""
    return [float(line.split(":", 1)[1].split("|", 1)[0]) for line in statsd.matching(f"batchq.alert.{kind}:")]


def sensor_tries(dep, run_id: str) -> int:
    return dep.query("select max(try_number) from task_instance where dag_id = %s and run_id = %s and task_id = %s", DAG_ID, run_id, SENSOR)[0][0]


def test_stalled_resolved_by_the_drain_reads_zero(deployment, spec_path, statsd, notify_file, stop_workers):
    t0 = time.monotonic()
    run_id = f"alerts_stalled_{uuid.uuid4().hex[:8]}"
    deployment.trigger(DAG_ID, run_id)  # no workers yet: the backlog sits still
    wait_until(lambda: deployment.assert_alive() or ("stalled", "fired") in notified(notify_file, run_id), timeout=400,
               what="the stalled alert delivered to the notifier", on_timeout=lambda: str(deployment.task_states(DAG_ID, run_id)))
    wait_until(lambda: 1.0 in gauge_values(statsd, "stalled"), timeout=60, what="batchq.alert.stalled:1 at the StatsD listener",
               on_timeout=lambda: "\n".join(statsd.matching("batchq.")[-20:]))

    deployment.start_workers("workers-a", spec_path, max_workers=2)
    assert deployment.wait_run_finished(DAG_ID, run_id, timeout=400) == "success", deployment.task_states(DAG_ID, run_id)
    figures = assert_run_exact(deployment, spec_path, run_id, max_writes=2)
    # UDP from the triggerer and the task process: give the last packets a moment.
    wait_until(lambda: gauge_values(statsd, "stalled")[-1] == 0.0, timeout=30, what="batchq.alert.stalled back to 0 after the drain",
               on_timeout=lambda: f"stalled gauges: {gauge_values(statsd, 'stalled')}")
    assert ("stalled", "resolved") in notified(notify_file, run_id)
    assert sensor_tries(deployment, run_id) == 1
    print(f"\nstalled → drained: gauges {gauge_values(statsd, 'stalled')}, {figures}, {time.monotonic() - t0:.0f}s")


def test_dead_letters_at_the_first_poll_never_fail_a_healthy_wait(deployment, spec_path, sqs_client, notify_file, stop_workers):
    spec = BatchSpec.from_yaml(spec_path)
    dlq_url = get_queue_url(sqs_client, spec.queues.input_dlq)
    sqs_client.send_message(QueueUrl=dlq_url, MessageBody='{"dead": "from an earlier run"}')
    deployment.start_workers("workers-a", spec_path, max_workers=2)
    outcomes = []
    try:
        for i in range(3):
            t0 = time.monotonic()
            run_id = f"alerts_dlq_{i}_{uuid.uuid4().hex[:6]}"
            deployment.trigger(DAG_ID, run_id)
            state = deployment.wait_run_finished(DAG_ID, run_id, timeout=400)
            outcomes.append((run_id, state, sensor_tries(deployment, run_id), notified(notify_file, run_id), round(time.monotonic() - t0)))
            assert state == "success", outcomes
            assert_run_exact(deployment, spec_path, run_id, max_writes=2)
            assert ("dead_letters", "fired") in notified(notify_file, run_id), outcomes
            # One try: no "finished with state success, but ... queued" failure and retry.
            assert sensor_tries(deployment, run_id) == 1, outcomes
    finally:
        sqs_client.purge_queue(QueueUrl=dlq_url)
    print(f"\ndead_letters at the first poll: {outcomes}; input left {get_snapshot(sqs_client, get_queue_url(sqs_client, spec.queues.input)).describe()}")
