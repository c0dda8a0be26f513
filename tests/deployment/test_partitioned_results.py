"""Customer by customer on a live Airflow (LocalExecutor, real scheduler, DAG processor, triggerer and API
server on PostgreSQL; ``batchq workers`` outside Airflow; runs triggered through the REST API).

dags/customer_partitions.py runs a spec partitioned by customer, dags/customer_partition_report.py is
scheduled per partition (``PartitionedAssetTimetable``). With N customers, one of which fails beyond the
per-partition tolerance and one of which is slow:

- exactly N - 1 downstream runs, one per successful customer, each with its partition key and the counts
  the ledger has for it in its triggering event's extra (read back by the consumer's task);
- the failing customer emits nothing, and the Batch tab lists it as failed;
- the first downstream run starts before the producer's drain ends (announced in waves, while the slow
  customer, 90 s a payload, is still being processed; a wave pokes every 10 s in reschedule mode);
- then the failing customer is repaired (its handler fixed, the producer triggered with
  ``repair_run_id``): ``announce_repaired`` announces it once, and its downstream run reads the counts
  after the repair; no other customer gets a second run.
"""

from __future__ import annotations

import json
import re
import time
import urllib.request
import uuid
from datetime import datetime, timezone

import pytest
from batchq.spec import BatchSpec
from batchq.sqs.queues import ensure_queues

from tests.deployment.checks import install_write_counter
from tests.deployment.conftest import wait_until

pytestmark = [pytest.mark.deployment, pytest.mark.postgres, pytest.mark.slow]

PRODUCER, CONSUMER = "customer_partitions", "customer_partition_report"
CUSTOMERS = [f"cust-{i:02d}" for i in range(1, 7)]
FAILING, SLOW = "cust-03", "cust-06"


@pytest.fixture(scope="module")
def spec_path(tmp_path_factory):
    directory = tmp_path_factory.mktemp("partition-spec")
    base = f"parts-{uuid.uuid4().hex[:8]}"
    path = directory / f"customer_partitions_{base}.yaml"
    path.write_text(
        f"""
name: customer_partitions
dimensions:
  customer: [{", ".join(CUSTOMERS)}]
  job_type: [classification, segmentation]
  period: [daily, weekly]
partition_by: [customer]
order: dimension-major
fair_queue: true
params: {{model_version: deploy}}
queues: {{input: {base}-in, results: {base}-out, visibility_timeout_s: 60}}
target_payloads_per_shard: 8
# 4 payloads per customer: the failing customer's 4 failures are 16.7 % of the run (tolerated) but 100 %
# of its partition (not tolerated: floor(4 x 20 %) = 0).
tolerated_failure_percentage: 20.0
"""
    )
    return path


@pytest.fixture(scope="module")
def deployment(start_deployment, spec_path, sqs_endpoint, sqs_client, deploy_db):
    ensure_queues(sqs_client, BatchSpec.from_yaml(spec_path).queues)
    # The scheduler creates asset-triggered (and partitioned) runs only with job scheduling on; the
    # other deployment tests turn it off so that no scheduled run gets in their way (paused below).
    dep = start_deployment(executor="LocalExecutor", spec=spec_path, sqs_endpoint=sqs_endpoint,
                           extra_env={"BATCHQ_CUSTOMER_PARTITIONS_SPEC": str(spec_path), "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "True"})
    for dag_id in ("customer_batch", "customer_batch_explicit", "customer_batch_report", "batchq_queue_health"):
        dep.api("PATCH", f"/dags/{dag_id}", {"is_paused": True})
    install_write_counter(deploy_db)
    wait_until(lambda: dep.assert_alive() or dep.query(
        "select 1 from serialized_dag s join dag d on d.dag_id = s.dag_id where s.dag_id = %s and not d.is_stale and s.data::text like %s",
        PRODUCER, f"%{spec_path}%") and dep.query("select 1 from dag where dag_id = %s and not is_stale", CONSUMER),
        timeout=240, interval=1, what="the DAG processor to parse the partition DAG pair", on_timeout=dep.logs)
    return dep


def _page(dep, path: str) -> str:
    req = urllib.request.Request(dep.api_url + path, headers={"Authorization": f"Bearer {dep.token()}"})
    with urllib.request.urlopen(req, timeout=120) as resp:
        return resp.read().decode()


def _start_workers(deployment, spec_path, name: str, env: dict[str, str]):
    # 8 handler threads: the slow customer's 4 payloads hold 4 of them for 90 s, the others keep going
    # (with 4, the slow customer would hold every thread: the noisy neighbour, in one worker).
    return deployment.start(
        name,
        [__import__("sys").executable, "-m", "batchq.cli", "workers", "--spec", str(spec_path), "--handlers", "partition_jobs",
         "--endpoint-url", deployment.env["BATCHQ_SQS_ENDPOINT"], "--min", "1", "--max", "1", "--poll-interval", "1",
         "--wait-seconds", "1", "--concurrency", "8", "--grace-period", "5", "--worker-id", name],
        env=env,
    )


def _consumer_runs(deployment):
    return deployment.query("select run_id, partition_key, state, start_date from dag_run where dag_id = %s order by start_date", CONSUMER)


def _counts(deployment, consumer_run):
    value = deployment.query(
        "select value from xcom where dag_id = %s and run_id = %s and task_id = 'customer_report' and key = 'return_value'", CONSUMER, consumer_run)
    return value[0][0] if isinstance(value[0][0], dict) else json.loads(value[0][0])


def test_one_downstream_run_per_customer_with_its_counts(deployment, spec_path):
    t0 = time.monotonic()
    _start_workers(deployment, spec_path, "workers-parts",
                   {"BATCHQ_TEST_FAILING_CUSTOMER": FAILING, "BATCHQ_TEST_SLOW_CUSTOMER": SLOW, "BATCHQ_TEST_SLOW_S": "90"})
    try:
        deployment.api("PATCH", f"/dags/{CONSUMER}", {"is_paused": False})
        run_id = f"parts_{uuid.uuid4().hex[:8]}"
        deployment.trigger(PRODUCER, run_id)
        assert deployment.wait_run_finished(PRODUCER, run_id, timeout=600) == "success", deployment.task_states(PRODUCER, run_id)
        expected_keys = sorted(set(CUSTOMERS) - {FAILING})

        def consumer_runs():
            rows = _consumer_runs(deployment)
            done = [r for r in rows if r[2] in ("success", "failed")]
            return rows if len(done) >= len(expected_keys) else None

        runs = wait_until(consumer_runs, timeout=300, interval=2, what="a downstream run per successful customer",
                          on_timeout=lambda: str(deployment.query("select run_id, partition_key, state from dag_run where dag_id = %s", CONSUMER)))
        time.sleep(15)  # nothing more may come: no run for the failing customer, no duplicate
        runs = _consumer_runs(deployment)
        assert sorted(r[1] for r in runs) == expected_keys, runs
        assert all(r[2] == "success" for r in runs), runs

        # Each run's task read its own customer's counts from the triggering event; they match the ledger.
        ledger = {p: (e, s, f) for p, e, s, f in deployment.query(
            "select partition, expected, succeeded, failed from batchq_partitions where batch = %s and run_id = %s", PRODUCER, run_id)}
        assert ledger[FAILING] == (4, 0, 4)
        for consumer_run, key, _, _ in runs:
            counts = _counts(deployment, consumer_run)
            assert counts["partition"] == key and counts["run_id"] == run_id
            assert (counts["expected"], counts["succeeded"], counts["failed"]) == ledger[key] == (4, 4, 0)

        # Announced while the drain was still going: the first downstream run started before it ended.
        drain_end = deployment.query(
            "select max(end_date) from task_instance where dag_id = %s and run_id = %s and task_id = 'drain_results'", PRODUCER, run_id)[0][0]
        first_start = min(r[3] for r in runs)
        assert isinstance(drain_end, datetime) and first_start < drain_end, (first_start, drain_end)

        # The Batch tab lists the failing customer as failed, and its table agrees with the ledger.
        html = _page(deployment, f"/batchq/ui/dags/{PRODUCER}/runs/{run_id}?psort=partition&pdir=asc")
        shown = {m.group(1): (m.group(2), int(m.group(3)), int(m.group(4)), int(m.group(5))) for m in re.finditer(
            r'<tr data-partition="([^"]+)" data-outcome="([^"]+)">.*?data-col="succeeded">([\d,]+)<.*?data-col="pending">([\d,]+)<.*?data-col="failed">([\d,]+)<', html)}
        assert shown[FAILING] == ("failed", 0, 0, 4)
        assert {k: (v[1], v[3]) for k, v in shown.items()} == {k: (s, f) for k, (e, s, f) in ledger.items()}
        print(f"\npartitions: {len(runs)} downstream runs, first started {(drain_end - first_start).total_seconds():.0f}s before the drain ended; {time.monotonic() - t0:.0f}s")

        # The repair: the failing customer's handler is fixed (a worker without the failure), and the
        # producer is triggered with repair_run_id, as from the trigger form.
        deployment.processes["workers-parts"].stop()
        _start_workers(deployment, spec_path, "workers-fixed", {})
        repair_run = f"repair_{uuid.uuid4().hex[:8]}"
        repair_asked = datetime.now(timezone.utc)
        deployment.trigger(PRODUCER, repair_run, conf={"repair_run_id": run_id})
        assert deployment.wait_run_finished(PRODUCER, repair_run, timeout=300) == "success", deployment.task_states(PRODUCER, repair_run)
        states = deployment.task_states(PRODUCER, repair_run)
        fan_out = [state for (task, _), state in states.items() if task == "fan_out"]
        assert states[("announce_repaired", -1)] == "success" and fan_out and set(fan_out) == {"skipped"}, states

        def repaired_run():
            rows = [r for r in _consumer_runs(deployment) if r[1] == FAILING and r[2] in ("success", "failed")]
            return rows or None

        wait_until(repaired_run, timeout=180, interval=2, what=f"a downstream run for the repaired {FAILING}",
                   on_timeout=lambda: str(_consumer_runs(deployment)))
        time.sleep(15)  # nothing more may come: one run for the repaired customer, none again for the others
        runs = _consumer_runs(deployment)
        assert sorted(r[1] for r in runs) == sorted(CUSTOMERS) and all(r[2] == "success" for r in runs), runs
        repaired = next(r for r in runs if r[1] == FAILING)
        counts = _counts(deployment, repaired[0])
        assert (counts["partition"], counts["run_id"], counts["expected"], counts["succeeded"], counts["failed"]) == (FAILING, run_id, 4, 4, 0)
        assert deployment.query(
            "select expected, succeeded, failed, outcome from batchq_partitions where batch = %s and run_id = %s and partition = %s",
            PRODUCER, run_id, FAILING) == [(4, 4, 0, "succeeded")]
        print(f"repair: {FAILING} announced by the repair run; its downstream run started {(repaired[3] - repair_asked).total_seconds():.0f}s after the repair was triggered")
    finally:
        for name in ("workers-parts", "workers-fixed"):
            if name in deployment.processes:
                deployment.processes[name].stop()
