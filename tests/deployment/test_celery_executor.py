"""The example DAG on a live Airflow with the Celery executor: two ``airflow celery worker`` processes
(``-H deploy-a`` / ``deploy-b``) on the local Redis, results in PostgreSQL, API server, scheduler, DAG
processor and triggerer as separate processes.

The spec has 12 shards of 8 payloads (one batch call each, answered 2 s late by the proxy), so the mapped
``fan_out`` tasks spread over both workers. While a shard runs on ``deploy-b`` that worker is killed
(``kill -9`` of its process group: the Celery worker, its pool and the task process). The scheduler finds
the task without heartbeat, fails the try and retries it on ``deploy-a``; the retried shard re-sends its
payloads under the same keys. A proxy in front of the SQS endpoint counts every payload the input queue
was sent, per key: every planned key at least once, none more than the shard's tries; downstream the run
closes exact.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter

import pytest
from batchq.plan import Plan
from batchq.spec import BatchSpec
from batchq.sqs.queues import ensure_queues

from tests.deployment.checks import (
    assert_run_exact,
    install_write_counter,
    planned_keys,
)
from tests.deployment.conftest import celery_env, wait_until
from tests.e2e.conftest import write_customer_spec
from tests.support.sqs_fault_proxy import SqsFaultProxy

pytestmark = [pytest.mark.deployment, pytest.mark.postgres, pytest.mark.slow]

DAG_ID = "customer_batch"
HOSTS = ("deploy-a", "deploy-b")


@pytest.fixture(scope="module")
def spec_path(tmp_path_factory):
    path = write_customer_spec(
        tmp_path_factory.mktemp("celery-spec"), customers=12, params='{model_version: "celery", lookback_days: 30}',
        queue_extra=", visibility_timeout_s: 20", extra="tolerated_failure_percentage: 1.0",
    )
    # Many small shards, so several fan-out tasks are running on each worker at once.
    path.write_text(path.read_text().replace("target_payloads_per_shard: 40", "target_payloads_per_shard: 8"))
    return path


class SlowAckProxy(SqsFaultProxy):
    """Forwards each SendMessageBatch at once but answers it ``ack_delay_s`` later: the payloads are on the
    queue while the fan-out task still waits for the reply — the moment a killed worker leaves payloads
    sent but the shard unfinished, so its retry re-sends them (the duplicates the bound is about)."""

    ack_delay_s = 2.0

    def _send_message_batch(self, path, headers, body):
        reply = super()._send_message_batch(path, headers, body)
        time.sleep(self.ack_delay_s)
        return reply


@pytest.fixture(scope="module")
def counting_proxy(sqs_endpoint):
    """What Airflow's ``aws_default`` talks to: forwards everything, counts SendMessageBatch entries per key."""
    with SlowAckProxy(sqs_endpoint) as proxy:
        yield proxy


@pytest.fixture(scope="module")
def deployment(start_deployment, spec_path, sqs_endpoint, sqs_client, deploy_db, counting_proxy):
    ensure_queues(sqs_client, BatchSpec.from_yaml(spec_path).queues)
    dep = start_deployment(
        executor="airflow.providers.celery.executors.celery_executor.CeleryExecutor", spec=spec_path, sqs_endpoint=counting_proxy.url, celery_workers=len(HOSTS),
        extra_env={
            **celery_env(deploy_db),
            # The workers' result sends must not be counted as payloads: they bypass the proxy.
            "BATCHQ_SQS_ENDPOINT": sqs_endpoint,
            "AIRFLOW__BATCHQ__FANOUT_MAX_IN_FLIGHT": "1",
        },
    )
    install_write_counter(deploy_db)
    yield dep
    for name, proc in dep.processes.items():
        if name.startswith("workers-"):
            proc.stop()


def fan_out_tries(dep, run_id: str) -> list[tuple[int, int, str | None, str]]:
    """(map_index, try_number, hostname, state) of every fan-out try, current and in history."""
    sql = "select map_index, try_number, hostname, state from {} where dag_id = %s and run_id = %s and task_id = 'fan_out'"
    return sorted(dep.query(sql.format("task_instance"), DAG_ID, run_id) + dep.query(sql.format("task_instance_history"), DAG_ID, run_id))


def test_celery_fan_out_across_workers_survives_a_killed_worker(deployment, spec_path, counting_proxy):
    t0 = time.monotonic()
    spec = BatchSpec.from_yaml(spec_path)
    deployment.start_workers("workers-a", spec_path, max_workers=2)
    run_id = f"deploy_celery_{uuid.uuid4().hex[:8]}"
    plan = Plan(spec, run_id, dag_id=DAG_ID)
    assert len(list(plan.shards())) == 12
    deployment.trigger(DAG_ID, run_id)

    shard_keys = [{key for key, _ in plan.iter_bodies(shard)} for shard in plan.shards()]

    def kill_point():
        """Best: a shard on deploy-b that has already sent payloads (its retry re-sends them: duplicates
        the bound must hold for). Otherwise, once no shard is left unstarted, any shard running there."""
        deployment.assert_alive()
        rows = deployment.query("select map_index, state, hostname from task_instance where dag_id = %s and run_id = %s and task_id = 'fan_out'", DAG_ID, run_id)
        on_b = [m for m, state, host in rows if state == "running" and host == HOSTS[1]]
        with counting_proxy.lock:
            sent = [m for m in on_b if any(counting_proxy.log.attempts.get(k) for k in shard_keys[m])]
        if sent:
            return sent, "after its payloads were sent, before the reply"
        if on_b and rows and all(state in ("running", "success") for _, state, _ in rows):
            return on_b, "before its payloads were sent"
        return None

    killed_shards, when = wait_until(kill_point, timeout=300, interval=0.1, what=f"a fan-out shard running on {HOSTS[1]}",
                                     on_timeout=lambda: str(fan_out_tries(deployment, run_id)))
    deployment.processes[f"celery-{HOSTS[1]}"].kill9()
    killed_at = time.monotonic() - t0
    # The kill interrupted the shard: its first try never reported success.
    first_tries = dict(deployment.query(
        "select map_index, state from task_instance where dag_id = %s and run_id = %s and task_id = 'fan_out' and map_index = any(%s)",
        DAG_ID, run_id, list(killed_shards)))
    assert "success" not in first_tries.values(), f"the kill came after the shard finished: {first_tries}"

    assert deployment.wait_run_finished(DAG_ID, run_id, timeout=480) == "success", deployment.task_states(DAG_ID, run_id)
    tries = fan_out_tries(deployment, run_id)
    hosts = {host for _, _, host, _ in tries}
    assert set(HOSTS) <= hosts, f"shards ran on {hosts}: {tries}"
    retried = {m for m, t, _, _ in tries if t > 1}
    assert set(killed_shards) & retried, f"the shard killed on {HOSTS[1]} ({killed_shards}) was not retried: {tries}"

    # What the input queue was sent, per key: nothing lost, duplicates only from retried shards.
    planned = planned_keys(spec_path, run_id)
    with counting_proxy.lock:
        sent = Counter({k: n for k, n in counting_proxy.log.attempts.items() if k in planned})
    assert set(sent) == planned, f"keys never sent: {sorted(planned - set(sent))[:5]}"
    max_tries = max(t for _, t, _, _ in tries)
    assert max(sent.values()) <= max_tries, f"a key was sent {max(sent.values())} times, more than the {max_tries} tries of its shard"

    figures = assert_run_exact(deployment, spec_path, run_id, max_writes=spec.queues.max_receive_count * max_tries)
    per_host = Counter(host for _, _, host, _ in tries)
    print(
        f"\ncelery: killed {HOSTS[1]} at {killed_at:.0f}s while shard(s) {sorted(killed_shards)} ran, {when}; tries (map_index, try, host, state): {tries}; "
        f"tries per host {dict(per_host)}; payload sends per key: {dict(Counter(sent.values()))} (count → keys); {figures}; {time.monotonic() - t0:.0f}s"
    )
