"""One regression test per ledger bug of issue 15 (each failed on the store before ``batchq.store``).
SQLite; the model-based test (tests/integration/store/test_ledger_model.py) finds them all again."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from batchq.store import NOT_IN_PLAN, ResultsStore, RunLedger
from batchq.messages import ErrorInfo, WorkResult
from batchq.plan import Plan, idempotency_key
from batchq.spec import BatchSpec


def make_plan(customers=("c0", "c1", "c2"), batch="reg") -> Plan:
    spec = BatchSpec.from_dict(
        {"name": batch, "dimensions": {"customer": list(customers)}, "job_type": "t", "queues": {"input": "in", "results": "out"}}
    )
    return Plan(spec, "run-1", dag_id="dag")


def planned(plan: Plan) -> dict[str, dict]:
    return {idempotency_key(plan.spec.name, plan.run_id, {"customer": c}, plan.dag_id): {"customer": c} for c in plan.values[0]}


def result(plan: Plan, key: str, status: str, *, dims=None, finished_at=None, attempts=1) -> WorkResult:
    extra = {"dims": dims} if (dims is not None and "dims" in WorkResult.model_fields) else {}
    return WorkResult(
        batch=plan.spec.name, run_id=plan.run_id, key=key, status=status, plan=plan.fingerprint, attempts=attempts,
        error=ErrorInfo(type="Boom", message="no") if status == "failed" else None,
        finished_at=finished_at or datetime.now(timezone.utc), **extra,
    )


def ledger_for(store, plan: Plan) -> RunLedger:
    return RunLedger.for_plan(store, plan)


@pytest.fixture
def store(tmp_path):
    s = ResultsStore(f"sqlite:///{tmp_path / 'store.db'}")
    yield s
    s.close()


@pytest.mark.parametrize("with_dims", [True, False])
def test_a_key_the_plan_never_produced_does_not_count(store, with_dims):
    """2 real successes + 1 stray success (the run's batch, run id and plan; a key no plan produces)
    used to close a 3-key run as succeeded with a planned key never run."""
    plan = make_plan()
    keys = planned(plan)
    ledger = ledger_for(store, plan)
    real = [result(plan, k, "succeeded", dims=d) for k, d in list(keys.items())[:2]]
    stray_dims = {"customer": "c9"}
    stray = result(plan, idempotency_key(plan.spec.name, plan.run_id, stray_dims, plan.dag_id), "succeeded", dims=stray_dims if with_dims else None)
    store.apply([*real, stray], ())
    status = ledger.status()
    assert (status.succeeded, status.failed, status.pending, status.outcome) == (2, 0, 1, "open")
    [entry] = store.quarantined(plan.spec.name, plan.run_id)
    assert (entry["reason"], entry["stray"], entry["key"]) == (NOT_IN_PLAN, True, stray.key)


def test_a_stale_copy_of_the_old_failure_does_not_end_the_repair(store):
    """The redelivered copy of a key's old failed result, arriving after a repair was recorded, used to
    close the key's repair entry as failed (and the run as failed)."""
    plan = make_plan()
    keys = list(planned(plan).items())
    ledger = ledger_for(store, plan)
    old_failure = result(plan, keys[0][0], "failed", dims=keys[0][1], finished_at=datetime.now(timezone.utc) - timedelta(minutes=5))
    store.apply([old_failure, *(result(plan, k, "succeeded", dims=d) for k, d in keys[1:])], ())
    ledger.close()
    store.record_repair(plan.spec.name, plan.run_id, [{"key": keys[0][0], "status": "failed", "attempts": 1}], mode="failed", plan=plan.fingerprint)
    store.apply([old_failure], ())  # the drainer crashed between commit and delete: the copy comes back
    status = ledger.status()
    assert (status.repairing, status.failed, status.outcome) == (1, 0, "open")
    [repair] = store.repairs(plan.spec.name, plan.run_id)
    assert repair["keys_after"] == {"open": 1}
    store.apply([result(plan, keys[0][0], "succeeded", dims=keys[0][1])], ())  # the repair's real result
    assert ledger.status().outcome == "succeeded"
    assert store.repairs(plan.spec.name, plan.run_id)[0]["keys_after"] == {"succeeded": 1}


def test_replanning_a_recorded_run_records_the_new_plan(store):
    """Re-planning a run whose ledger row holds another plan crashed with ``TypeError: values() got
    multiple values for keyword argument 'outcome'``."""
    a, b = make_plan(), make_plan(("c0", "c1", "c2", "c3"))
    ledger_for(store, a)
    ledger = ledger_for(store, b)
    run = store.get_run(b.spec.name, b.run_id)
    assert (run["plan"], run["expected"], run["outcome"]) == (b.fingerprint, 4, "open")
    assert ledger.status().pending == 4


def test_a_late_failure_of_another_plan_never_replaces_a_success(store):
    """A late failed result of an older plan used to overwrite the current plan's succeeded row."""
    old, cur = make_plan(("c0", "c1")), make_plan(("c0", "c1", "c2"))
    assert old.fingerprint != cur.fingerprint
    ledger = ledger_for(store, cur)
    keys = planned(cur)
    store.apply([result(cur, k, "succeeded", dims=d) for k, d in keys.items()], ())
    assert ledger.status().outcome == "succeeded"
    k0, d0 = next(iter(keys.items()))
    store.apply([result(old, k0, "failed", dims=d0)], ())
    status = ledger.status()
    assert (status.succeeded, status.failed, status.outcome) == (3, 0, "succeeded")


def test_a_repair_of_an_earlier_plan_does_not_hold_a_failed_key_back(store):
    """Found by the model on the new store: a key re-sent by an open repair of plan a, failed under plan
    b after a re-plan, counts as failed in b's ledger, so ``rerun --failed`` of b must select it."""
    from batchq.store.repairs import select_keys

    a, b = make_plan(), make_plan(("c0", "c1", "c2", "c3"))
    RunLedger.for_plan(store, a)
    k, d = next(iter(planned(a).items()))
    store.record_repair(a.spec.name, a.run_id, [{"key": k, "status": "missing", "attempts": None}], mode="pending", plan=a.fingerprint)
    ledger = RunLedger.for_plan(store, b)
    store.apply([result(b, k, "failed", dims=d)], ())
    assert (ledger.status().failed, ledger.status().repairing) == (1, 0)
    assert [s["key"] for s in select_keys(store, b, "failed")] == [k]
