"""``batchq rerun`` against the real SQS endpoint and a SQLite results store: only the selected keys are
re-sent (drained from the input queue and counted), rebuilt from the plan; the ledger reopens, records
the repair and closes `succeeded` once the new results are applied; ``--purge-dlq`` deletes exactly the
repaired keys' DLQ copies. Results are applied through the store (the drainer's own write path); the
worker-and-Airflow path is tests/e2e/test_customer_batch_repair.py."""

from __future__ import annotations

import json
import threading
import time

import pytest
from batchq.cli import main
from batchq.store import ResultsStore, RunLedger
from batchq.messages import ErrorInfo, WorkResult, parse_payload
from batchq.plan import Plan
from batchq.spec import BatchSpec
from batchq.sqs import delete_messages, receive_messages, send_message

pytestmark = pytest.mark.integration


@pytest.fixture
def setup(tmp_path, queue_spec_factory, sqs_endpoint, monkeypatch):
    queues, urls = queue_spec_factory()
    path = tmp_path / "spec.yaml"
    path.write_text(
        f"""
name: rerun_test
dimensions:
  customer: [c1, c2, c3, c4, c5, c6]
  period: [daily, weekly, monthly]
job_type: t-echo
queues: {{input: {queues.input}, results: {queues.results}}}
target_payloads_per_shard: 5
"""
    )
    spec = BatchSpec.from_yaml(path)
    plan = Plan(spec, "scheduled__2026-11-30", dag_id="rerun_dag")
    store = ResultsStore(f"sqlite:///{tmp_path / 'store.db'}")
    monkeypatch.setenv("BATCHQ_SQS_ENDPOINT", sqs_endpoint)
    yield path, spec, plan, store, urls
    store.close()


def drain_keys(client, url) -> list[str]:
    """Receive and delete everything on ``url``; the keys of the bodies, one per message."""
    keys: list[str] = []
    while True:
        msgs = receive_messages(client, url, max_messages=10, wait_seconds=1)
        if not msgs:
            return keys
        keys += [parse_payload(m["Body"]).key for m in msgs]
        delete_messages(client, url, msgs)


def result(plan: Plan, key: str, status: str, attempts: int = 1) -> WorkResult:
    error = ErrorInfo(type="RuntimeError", message="broken handler") if status == "failed" else None
    return WorkResult(batch=plan.spec.name, run_id=plan.run_id, key=key, status=status, error=error, attempts=attempts, plan=plan.fingerprint,
                      output={"ok": True} if status == "succeeded" else None)


def failed_run(plan, store, client, urls, failing: int = 4):
    """A closed failed run: every key has a result, ``failing`` of them failed (and their payloads sit in the DLQ)."""
    bodies = dict(b for s in plan.shards() for b in plan.iter_bodies(s))
    keys = sorted(bodies)
    failed = keys[:failing]
    ledger = RunLedger(store, plan.spec.name, plan.run_id, plan.expected, plan=plan.fingerprint, dag_id=plan.dag_id)
    store.apply([result(plan, k, "failed" if k in failed else "succeeded", attempts=3 if k in failed else 1) for k in keys])
    for k in failed:
        send_message(client, urls.input_dlq, bodies[k])
    status = ledger.close()
    assert status.outcome == "failed" and status.failed == failing
    return ledger, failed, bodies


def test_rerun_failed_sends_only_failed_keys_and_closes_green(setup, sqs_client, capsys):
    path, spec, plan, store, urls = setup
    ledger, failed, bodies = failed_run(plan, store, sqs_client, urls)
    send_message(sqs_client, urls.input_dlq, '{"not": "ours"}')  # another message on the DLQ stays
    base = ["rerun", "--spec", str(path), "--run-id", plan.run_id, "--store", str(store.engine.url)]

    assert main([*base, "--failed", "--dry-run"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["repair"]["selected"] == 4
    # Issue 20: the keys are named by their dimensions, the hash shortened beside them.
    from batchq.messages import describe_key, parse_payload

    for key in failed:
        shown = describe_key(key, parse_payload(bodies[key]).dims)
        assert f"  {shown}" in captured.err and "=" in shown and f"({key[:8]}…)" in shown
    assert drain_keys(sqs_client, urls.input) == [], "a dry run sends nothing"
    assert store.repairs(spec.name, plan.run_id) == []

    assert main([*base, "--failed", "--reason", "handler fixed", "--by", "oncall"]) == 0
    out = json.loads(capsys.readouterr().out)["repair"]
    assert out["sent"] == 4 and out["outcome_before"] == "failed"
    resent = drain_keys(sqs_client, urls.input)
    assert sorted(resent) == sorted(failed), "exactly the failed keys, once each"

    # Reopened: the re-sent keys are pending until their new results arrive.
    status = ledger.status()
    assert (status.outcome, status.failed, status.repairing, status.pending) == ("open", 0, 4, 4)
    assert store.get_run(spec.name, plan.run_id)["outcome"] == "open"

    # The handler is fixed: the new results succeed (one key delivered twice: still one row).
    store.apply([result(plan, k, "succeeded") for k in resent] + [result(plan, resent[0], "succeeded")])
    status = ledger.status()
    assert status.ok and status.succeeded == plan.expected and status.repairing == 0
    ledger.close(status)
    (repair,) = store.repairs(spec.name, plan.run_id)
    assert (repair["outcome_before"], repair["outcome_after"], repair["keys"], repair["sent"]) == ("failed", "succeeded", 4, 4)
    assert (repair["requested_by"], repair["reason"], repair["keys_after"]) == ("oncall", "handler fixed", {"succeeded": 4})
    history = store.key_history(spec.name, plan.run_id, failed[0])
    assert [(h["status_before"], h["attempts_before"], h["status_after"]) for h in history] == [("failed", 3, "succeeded")]

    assert main([*base, "--purge-dlq"]) == 0
    assert json.loads(capsys.readouterr().out)["purge"]["deleted"] == 4
    left = receive_messages(sqs_client, urls.input_dlq, max_messages=10, wait_seconds=1)
    assert [m["Body"] for m in left] == ['{"not": "ours"}'], "only the repaired keys' copies are deleted"
    assert store.repairs(spec.name, plan.run_id)[0]["dlq_purged"] == 4

    assert main([*base, "--history"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["run"]["outcome"] == "succeeded" and [r["keys_after"] for r in shown["repairs"]] == [{"succeeded": 4}]

    assert main([*base, "--failed"]) == 0, "nothing left to repair"
    assert json.loads(capsys.readouterr().out)["repair"]["selected"] == 0


def test_rerun_keys_refuses_unknown_keys_and_sends_nothing(setup, sqs_client, tmp_path):
    path, spec, plan, store, urls = setup
    _, failed, _ = failed_run(plan, store, sqs_client, urls)
    keys = tmp_path / "keys.txt"
    keys.write_text(f"{failed[0]}\n{'f' * 32}\n")
    base = ["rerun", "--spec", str(path), "--run-id", plan.run_id, "--store", str(store.engine.url)]
    assert main([*base, "--keys", str(keys)]) == 2
    assert drain_keys(sqs_client, urls.input) == []
    assert store.repairs(spec.name, plan.run_id) == []

    keys.write_text(f"# the two I want\n{failed[1]}\n{failed[2]}\n")
    assert main([*base, "--keys", str(keys), "--keep-dlq"]) == 0
    assert sorted(drain_keys(sqs_client, urls.input)) == sorted(failed[1:3])
    store.apply([result(plan, k, "succeeded") for k in failed[1:3]])
    assert main([*base, "--purge-dlq"]) == 0
    assert len(receive_messages(sqs_client, urls.input_dlq, max_messages=10, wait_seconds=1)) == 4, "--keep-dlq keeps the copies"


def test_rerun_pending_waits_for_the_new_results(setup, sqs_client, capsys):
    path, spec, plan, store, urls = setup
    keys = sorted(k for s in plan.shards() for k, _ in plan.iter_bodies(s))
    ledger = RunLedger(store, spec.name, plan.run_id, plan.expected, plan=plan.fingerprint, dag_id=plan.dag_id)
    store.apply([result(plan, k, "succeeded") for k in keys[3:]])  # three results were lost
    base = ["rerun", "--spec", str(path), "--run-id", plan.run_id, "--store", str(store.engine.url)]

    def worker_and_drain():
        """Stands in for the workers and the drain: results for what the input queue receives."""
        got: list[str] = []
        deadline = time.monotonic() + 60
        while len(got) < 3 and time.monotonic() < deadline:
            got += drain_keys(sqs_client, urls.input)
        store.apply([result(plan, k, "succeeded") for k in got])
        received.extend(got)

    received: list[str] = []
    helper = threading.Thread(target=worker_and_drain)
    helper.start()
    assert main([*base, "--pending", "--wait", "90"]) == 0
    helper.join(90)
    out = json.loads(capsys.readouterr().out)
    assert sorted(received) == keys[:3], "only the keys without a result"
    assert out["after"] == {"succeeded": 3} and out["purge"]["deleted"] == 0
    assert ledger.status().ok


def test_rerun_refuses_another_plan(setup, sqs_client, tmp_path):
    path, _, plan, store, urls = setup
    failed_run(plan, store, sqs_client, urls)
    changed = tmp_path / "changed.yaml"
    changed.write_text(path.read_text().replace("c6]", "c6, c7]"))
    assert main(["rerun", "--spec", str(changed), "--run-id", plan.run_id, "--store", str(store.engine.url), "--failed"]) == 2
    assert drain_keys(sqs_client, urls.input) == []


def test_rerun_failed_wait_closes_the_ledger_again(setup, sqs_client, capsys):
    """``--wait`` re-sent, waited and purged but left the repair's outcome_after/settled_at null and the
    run's recorded outcome ``open`` with the old counts: the runbook says ``ledger --close`` is only
    needed without ``--wait``."""
    path, spec, plan, store, urls = setup
    _, failed, _ = failed_run(plan, store, sqs_client, urls)
    base = ["rerun", "--spec", str(path), "--run-id", plan.run_id, "--store", str(store.engine.url)]
    received: list[str] = []

    def worker_and_drain():  # the fixed handler: the re-sent keys now succeed
        deadline = time.monotonic() + 60
        while len(received) < len(failed) and time.monotonic() < deadline:
            got = drain_keys(sqs_client, urls.input)
            store.apply([result(plan, k, "succeeded") for k in got])
            received.extend(got)

    helper = threading.Thread(target=worker_and_drain)
    helper.start()
    assert main([*base, "--failed", "--wait", "90", "--reason", "handler fixed"]) == 0
    helper.join(90)
    out = json.loads(capsys.readouterr().out)
    assert sorted(received) == sorted(failed) and out["after"] == {"succeeded": len(failed)}
    assert out["ledger"]["outcome"] == "succeeded"
    run = store.get_run(spec.name, plan.run_id)
    assert (run["outcome"], run["succeeded"], run["failed"]) == ("succeeded", plan.expected, 0)
    (repair,) = store.repairs(spec.name, plan.run_id)
    assert repair["outcome_before"] == "failed" and repair["outcome_after"] == "succeeded" and repair["settled_at"] is not None
    assert out["purge"]["deleted"] == len(failed)


def test_purge_caps_what_it_examines_and_says_what_it_left(setup, sqs_client):
    """A DLQ holding other runs' messages is not read whole: the pass stops at its cap, hands every other
    message back, records only the keys it deleted, and says what it left; a second pass finishes."""
    from batchq.sqs import get_snapshot
    from batchq.store.purge import purge_repaired_dlq

    path, spec, plan, store, urls = setup
    _, failed, _ = failed_run(plan, store, sqs_client, urls)
    for i in range(30):  # other runs' dead letters, ahead of and among ours
        send_message(sqs_client, urls.input_dlq, json.dumps({"batch": "other", "run_id": "r", "key": f"o{i}"}))
    assert main(["rerun", "--spec", str(path), "--run-id", plan.run_id, "--store", str(store.engine.url), "--failed"]) == 0
    store.apply([result(plan, k, "succeeded") for k in drain_keys(sqs_client, urls.input)])

    first = purge_repaired_dlq(sqs_client, urls.input_dlq, store, spec.name, plan.run_id, max_examined=12)
    assert first.examined == 12 and first.stopped_by == "max_examined"
    assert first.keys_left == len(failed) - first.deleted
    assert "stopped by max_examined" in first.describe()
    assert get_snapshot(sqs_client, urls.input_dlq).in_flight == 0, "the other messages were handed back at once"
    second = purge_repaired_dlq(sqs_client, urls.input_dlq, store, spec.name, plan.run_id, max_examined=1000)
    assert second.stopped_by is None and second.keys_left == 0
    assert first.deleted + second.deleted == len(failed)
    assert store.dlq_purge_candidates(spec.name, plan.run_id) == []
    left = get_snapshot(sqs_client, urls.input_dlq)
    assert left.visible == 30


def test_ledger_cli_names_the_failed_keys_by_their_dimensions(setup, sqs_client, capsys):
    # Issue 20: `batchq ledger` showed "4730f5ee…: RuntimeError…"; rows without dims get them from the plan.
    from batchq.messages import describe_key

    path, _spec, plan, store, urls = setup
    _, failed, bodies = failed_run(plan, store, sqs_client, urls, failing=2)
    rc = main(["ledger", "--store", str(store.engine.url), "--spec", str(path), "--run-id", plan.run_id])
    captured = capsys.readouterr()
    assert rc == 1
    for key in failed:
        dims = parse_payload(bodies[key]).dims
        assert describe_key(key, dims) in captured.err
        assert {"key": key, "dims": dims} in [{k: f[k] for k in ("key", "dims")} for f in json.loads(captured.out)["first_failures"]]
    assert "customer=" in captured.err and "period=" in captured.err
