"""The partition ledger against a real SQLite store: per-partition counts derived from the results
(distinct keys, the run's plan only), closing within the per-partition tolerance, ``closed_at`` kept
once set, dwell figures, and announcement claims that never hand a partition to two waves."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from batchq.store import ResultsStore, tolerated_failures
from batchq.messages import ErrorInfo, WorkResult, parse_payload
from batchq.plan import Plan
from batchq.spec import BatchSpec
from batchq.store.partitions import PartitionLedger, partition_rows_xcom, wave_due

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


@pytest.fixture
def store(tmp_path):
    sink = ResultsStore(f"sqlite:///{tmp_path}/results.db")
    sink.create_tables()
    yield sink
    sink.close()


def _plan(**over):
    data = {
        "name": "tenants",
        "job_type": "j",
        "queues": {"input": "in", "results": "out"},
        "dimensions": {"customer": ["a", "b", "c"], "item": [1, 2, 3, 4]},
        "partition_by": ["customer"],
        "tolerated_failure_percentage": 25,
    }
    data.update(over)
    return Plan(BatchSpec.from_dict(data), "run-1")


def _payloads(plan):
    return [parse_payload(b) for s in plan.shards() for _, b in plan.iter_bodies(s)]


def _result(p, status="succeeded", *, plan=None, wait_s=1.0, done_s=10.0, run_id=None, dims=True):
    return WorkResult(
        dims=p.dims if dims else None,
        batch=p.batch, run_id=run_id or p.run_id, key=p.key, status=status, plan=plan if plan is not None else p.plan,
        error=ErrorInfo(type="Boom", message="no") if status == "failed" else None,
        enqueued_at=T0, first_received_at=T0 + timedelta(seconds=wait_s), finished_at=T0 + timedelta(seconds=done_s),
    )


def _ledger(store, plan, by_key=True):
    return PartitionLedger(
        store.engine, plan.spec.name, plan.run_id, plan.spec.partition_by, plan.partition_expected(),
        plan_fingerprint=plan.fingerprint,
        tolerated=lambda n: tolerated_failures(n, 0, plan.spec.tolerated_failure_percentage),
        key_partitions=plan.key_partitions if by_key else None,
    )


def test_counts_per_partition_close_within_tolerance(store):
    plan = _plan()
    ledger = _ledger(store, plan, by_key=False)  # every result carries its dims: no key map needed
    by = {}
    for p in _payloads(plan):
        by.setdefault(p.dims["customer"], []).append(p)
    # a: all four succeed; b: one failure (25 % of 4 is tolerated); c: two failures (beyond it) + one pending.
    store.apply([_result(p) for p in by["a"]])
    store.apply([_result(by["b"][0], "failed")] + [_result(p) for p in by["b"][1:]])
    store.apply([_result(by["c"][0], "failed"), _result(by["c"][1], "failed"), _result(by["c"][2])])
    # Duplicates and another plan's results never count.
    store.apply([_result(by["c"][2])])
    store.apply([_result(by["c"][3], plan="other-plan")])
    got = {s.partition: s for s in ledger.refresh()}
    assert {k: (s.expected, s.succeeded, s.failed, s.pending, s.outcome) for k, s in got.items()} == {
        "a": (4, 4, 0, 0, "succeeded"),
        "b": (4, 3, 1, 0, "succeeded"),
        "c": (4, 1, 2, 1, "open"),
    }
    assert got["a"].closed_at is not None and got["c"].closed_at is None
    store.apply([_result(by["c"][3], "succeeded")])
    got2 = {s.partition: s for s in ledger.refresh()}
    assert got2["c"].outcome == "failed" and got2["c"].pending == 0
    assert got2["a"].closed_at == got["a"].closed_at  # closed_at is when it first closed


def test_results_without_dims_are_placed_by_their_key(store):
    """Older workers send no dims: the plan's key → partition map places their results."""
    plan = _plan()
    ledger = _ledger(store, plan)
    payloads = _payloads(plan)
    store.apply([_result(p, dims=False) for p in payloads if p.dims["customer"] == "b"])
    store.apply([_result(p) for p in payloads if p.dims["customer"] == "c"])
    got = {s.partition: (s.succeeded, s.outcome) for s in ledger.refresh()}
    assert got == {"a": (0, "open"), "b": (4, "succeeded"), "c": (4, "succeeded")}


def test_dwell_figures_per_partition(store):
    plan = _plan()
    ledger = _ledger(store, plan)
    for p in _payloads(plan):
        slow = p.dims["customer"] == "c"
        store.apply([_result(p, wait_s=30.0 if slow else 2.0, done_s=100.0 if slow else 20.0)])
    got = {s.partition: s for s in ledger.refresh()}
    assert got["c"].input_wait_s == 30.0 and got["a"].input_wait_s == 2.0
    # time to last result is measured from the run's first enqueue to the partition's last result.
    assert got["a"].time_to_last_s is not None and got["c"].time_to_last_s > got["a"].time_to_last_s
    table = partition_rows_xcom(got.values())
    assert table["fields"][0] == "partition" and len(table["rows"]) == 3


def test_claims_never_announce_a_partition_twice(store):
    plan = _plan()
    ledger = _ledger(store, plan)
    payloads = _payloads(plan)
    store.apply([_result(p) for p in payloads if p.dims["customer"] == "a"])
    statuses = ledger.refresh()
    assert wave_due(0, 3, statuses) and not wave_due(1, 3, statuses)
    assert [s.partition for s in ledger.claim(0)] == ["a"]
    assert ledger.claim(1) == []  # nothing new closed
    assert [s.partition for s in ledger.claim(0)] == ["a"]  # a retried wave gets back what it claimed
    store.apply([_result(p) for p in payloads if p.dims["customer"] != "a"])
    statuses = ledger.refresh()
    assert wave_due(2, 3, statuses)
    assert sorted(s.partition for s in ledger.claim(2)) == ["b", "c"]


def test_failed_partitions_are_never_claimed(store):
    plan = _plan(tolerated_failure_percentage=0)
    ledger = _ledger(store, plan)
    store.apply([_result(p, "failed" if p.dims["item"] == 1 and p.dims["customer"] == "b" else "succeeded") for p in _payloads(plan)])
    ledger.refresh()
    assert sorted(s.partition for s in ledger.claim(0)) == ["a", "c"]


def test_a_second_ledger_reads_expected_back(store):
    plan = _plan()
    _ledger(store, plan)
    again = PartitionLedger(store.engine, plan.spec.name, plan.run_id, plan.spec.partition_by, plan_fingerprint=plan.fingerprint)
    assert {s.partition: s.expected for s in again.statuses()} == {"a": 4, "b": 4, "c": 4}
