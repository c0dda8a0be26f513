"""Repair without SQS: payloads rebuilt from the plan, key selection, and the ledger's repair records over
a SQLite store (reopen, pending while repairing, closed by the new result, superseded, not sent)."""

from __future__ import annotations

import pytest
from batchq.store import ResultsStore, RunLedger
from batchq.messages import ErrorInfo, WorkResult, parse_payload
from batchq.plan import Plan
from batchq.store.repairs import RepairError, missing_keys, rebuild_bodies, select_keys
from batchq.spec import BatchSpec


@pytest.fixture
def plan() -> Plan:
    spec = BatchSpec.from_dict(
        {
            "name": "repair_unit",
            "dimensions": {"customer": [f"c{i}" for i in range(10)], "period": ["d", "w", "m"]},
            "exclude": [{"customer": "c0", "period": "d"}],
            "job_type": "t",
            "queues": {"input": "in", "results": "out"},
            "target_payloads_per_shard": 7,
        }
    )
    return Plan(spec, "run-1", dag_id="dag")


@pytest.fixture
def store(tmp_path):
    s = ResultsStore(f"sqlite:///{tmp_path / 'store.db'}")
    yield s
    s.close()


def all_bodies(plan: Plan) -> dict[str, str]:
    return dict(b for s in plan.shards() for b in plan.iter_bodies(s))


def result(plan: Plan, key: str, status: str, attempts: int = 1) -> WorkResult:
    return WorkResult(
        batch=plan.spec.name, run_id=plan.run_id, key=key, status=status, attempts=attempts, plan=plan.fingerprint,
        error=ErrorInfo(type="E", message="boom") if status == "failed" else None,
    )


def test_rebuilt_payloads_are_the_planned_ones(plan):
    bodies = all_bodies(plan)
    wanted = sorted(bodies)[::7]
    rebuilt = dict(rebuild_bodies(plan, wanted))
    assert sorted(rebuilt) == wanted
    for key, body in rebuilt.items():
        got, planned = parse_payload(body), parse_payload(bodies[key])
        assert (got.key, got.dims, got.plan, got.job_type, got.params) == (planned.key, planned.dims, planned.plan, planned.job_type, planned.params)


def test_keys_outside_the_plan_are_named(plan):
    key = next(iter(all_bodies(plan)))
    assert missing_keys(plan, [key, "0" * 32]) == {"0" * 32}
    with pytest.raises(RepairError, match="0{32}"):
        list(rebuild_bodies(plan, [key, "0" * 32]))
    # a key of the same run in another DAG is not in this plan either
    excluded = Plan(plan.spec, plan.run_id, dag_id="other")
    assert missing_keys(plan, [next(iter(all_bodies(excluded)))])


def test_a_repair_reopens_the_run_until_the_new_results_arrive(plan, store):
    keys = sorted(all_bodies(plan))
    ledger = RunLedger(store, plan.spec.name, plan.run_id, plan.expected, plan=plan.fingerprint, dag_id="dag")
    store.apply([result(plan, k, "failed" if k in keys[:3] else "succeeded", attempts=2) for k in keys])
    ledger.close()
    selected = select_keys(store, plan, "failed")
    assert [(k["key"], k["status"], k["attempts"]) for k in selected] == [(k, "failed", 2) for k in keys[:3]]

    repair_id = store.record_repair(plan.spec.name, plan.run_id, selected, mode="failed", plan=plan.fingerprint, requested_by="me")
    store.finish_repair_send(repair_id, 2, [keys[2]])  # one key could not be sent: failed again at once
    status = ledger.status()
    assert (status.outcome, status.repairing, status.failed, status.pending) == ("open", 2, 1, 2)
    assert store.get_run(plan.spec.name, plan.run_id)["outcome"] == "open"

    store.apply([result(plan, keys[0], "succeeded"), result(plan, keys[1], "failed", attempts=3)])
    status = ledger.status()
    assert (status.outcome, status.repairing, status.failed, status.succeeded) == ("failed", 0, 2, len(keys) - 2)
    ledger.close(status)
    (repair,) = store.repairs(plan.spec.name, plan.run_id)
    assert (repair["outcome_before"], repair["outcome_after"]) == ("failed", "failed")
    assert repair["keys_after"] == {"succeeded": 1, "failed": 1, "not_sent": 1}
    assert store.dlq_purge_candidates(plan.spec.name, plan.run_id) == [(repair_id, keys[0])]

    # A second repair of the still-failed key: its history spans both.
    again = store.record_repair(plan.spec.name, plan.run_id, select_keys(store, plan, "keys", [keys[1]]), mode="keys")
    store.apply([result(plan, keys[1], "succeeded")])
    history = store.key_history(plan.spec.name, plan.run_id, keys[1])
    assert [(h["repair_id"], h["status_before"], h["attempts_before"], h["status_after"], h["attempts_after"]) for h in history] == [
        (repair_id, "failed", 2, "failed", 3),
        (again, "failed", 2, "succeeded", 1),
    ]


def test_a_newer_repair_supersedes_an_open_one(plan, store):
    keys = sorted(all_bodies(plan))
    RunLedger(store, plan.spec.name, plan.run_id, plan.expected, plan=plan.fingerprint)
    store.apply([result(plan, keys[0], "failed")])
    first = store.record_repair(plan.spec.name, plan.run_id, select_keys(store, plan, "failed"), mode="failed")
    assert select_keys(store, plan, "failed") == [], "--failed never re-sends a key an open repair sent"
    second = store.record_repair(plan.spec.name, plan.run_id, select_keys(store, plan, "keys", [keys[0]]), mode="keys")
    after = {r["id"]: r["keys_after"] for r in store.repairs(plan.spec.name, plan.run_id)}
    assert after == {first: {"superseded": 1}, second: {"open": 1}}


def test_pending_selects_planned_keys_without_any_result(plan, store):
    keys = sorted(all_bodies(plan))
    store.apply([result(plan, k, "succeeded") for k in keys[2:]])
    assert sorted(k["key"] for k in select_keys(store, plan, "pending")) == keys[:2]
