"""SqlSink on SQLite: upsert rules, duplicates, quarantine, and a ledger that survives a restart.
(The same statements run on PostgreSQL in tests/integration/drain.)"""

from __future__ import annotations

import itertools

import pytest
from batchq.messages import ErrorInfo, WorkResult
from batchq.store import RunLedger
from batchq.store.rules import merge_duplicates
from batchq.store import QuarantineEntry, ResultsStore
from hypothesis import given, settings
from hypothesis import strategies as st


def result(key: str, status: str = "succeeded", run_id: str = "r1", batch: str = "b", **kw) -> WorkResult:
    if status == "failed":
        kw.setdefault("error", ErrorInfo(type="Boom", message=f"{key} broke"))
    else:
        kw.setdefault("output", {"key": key})
    return WorkResult(batch=batch, run_id=run_id, key=key, status=status, **kw)


@pytest.fixture
def store(tmp_path):
    s = ResultsStore(f"sqlite:///{tmp_path}/results.db")
    yield s
    s.close()


def rows(store: ResultsStore) -> dict[str, str]:
    import sqlalchemy as sa
    from batchq.store.schema import results_table

    with store.engine.connect() as conn:
        return dict(conn.execute(sa.select(results_table.c.key, results_table.c.status)).all())


def test_duplicates_make_one_row(store):
    store.apply([result("a"), result("a"), result("b")])
    store.apply([result("a"), result("b")])
    assert rows(store) == {"a": "succeeded", "b": "succeeded"}
    assert store.counts("b", "r1").succeeded == 2


@pytest.mark.parametrize("order", list(itertools.permutations(["failed", "succeeded", "failed"])))
def test_success_wins_whatever_the_order_across_batches(store, order):
    for status in order:
        store.apply([result("k", status)])
    assert rows(store) == {"k": "succeeded"}


def test_success_wins_within_one_batch(store):
    store.apply([result("k", "failed"), result("k", "succeeded"), result("k", "failed")])
    assert rows(store) == {"k": "succeeded"}
    c = store.counts("b", "r1")
    assert (c.succeeded, c.failed) == (1, 0)


def test_failed_then_failed_keeps_the_first_error(store):
    store.apply([result("k", "failed", error=ErrorInfo(type="First", message="1"))])
    store.apply([result("k", "failed", error=ErrorInfo(type="Second", message="2"))])
    assert store.first_failures("b", "r1") == [{"key": "k", "error": {"type": "First", "message": "1", "permanent": False}, "dims": None}]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("abcd"), st.sampled_from(["failed", "succeeded"])), max_size=12), st.integers(1, 4))
def test_outcome_is_order_independent(tmp_path_factory, events, chunk):
    """Any delivery order and batching of any duplicates: each key ends succeeded iff any success arrived."""
    s = ResultsStore(f"sqlite:///{tmp_path_factory.mktemp('h')}/h.db")
    s.create_tables()
    try:
        items = [result(k, st_) for k, st_ in events]
        for i in range(0, len(items), chunk):
            s.apply(items[i : i + chunk])
        want = {}
        for k, st_ in events:
            want[k] = "succeeded" if st_ == "succeeded" or want.get(k) == "succeeded" else "failed"
        assert rows(s) == want
        c = s.counts("b", "r1")
        assert c.succeeded == sum(v == "succeeded" for v in want.values())
        assert c.failed == sum(v == "failed" for v in want.values())
    finally:
        s.close()


def test_merge_duplicates_keeps_first_of_equals_and_success_over_failure():
    a1, a2 = result("a", output={"n": 1}), result("a", output={"n": 2})
    merged = merge_duplicates([result("b", "failed"), a1, a2, result("b")])
    assert [(r.key, r.status) for r in merged] == [("b", "succeeded"), ("a", "succeeded")]
    assert merged[1].output == {"n": 1}


def test_counts_are_per_run(store):
    store.apply([result("a", run_id="r1"), result("b", run_id="r2"), result("c", "failed", run_id="r1")])
    assert store.counts("b", "r1").succeeded == 1 and store.counts("b", "r1").failed == 1
    assert store.counts("b", "r2").succeeded == 1 and store.counts("b", "r2").failed == 0


def test_quarantine_is_idempotent_and_counts_keys_without_a_result(store):
    q = QuarantineEntry.from_body("m1", '{"key":"x","batch":"b","run_id":"r1","schema_version":9}', "unsupported schema_version 9")
    assert (q.key, q.batch, q.run_id) == ("x", "b", "r1")
    store.apply([], [q, q])
    store.apply([], [q])
    store.apply([], [QuarantineEntry.from_body("m2", "not json", "result body is not JSON")])
    assert len(store.quarantined()) == 2
    assert store.counts("b", "r1").quarantined == 1
    # A real result for the same key later: the key is closed by it, not double-counted.
    store.apply([result("x")])
    c = store.counts("b", "r1")
    assert (c.succeeded, c.quarantined) == (1, 0)


def test_ledger_survives_a_new_store_and_closes(tmp_path):
    url = f"sqlite:///{tmp_path}/ledger.db"
    s1 = ResultsStore(url)
    RunLedger(s1, "b", "r1", 3, tolerated_failure_count=1)
    s1.apply([result("a"), result("b", "failed")])
    s1.close()

    s2 = ResultsStore(url)  # e.g. the drain task's retry, in a new process
    ledger = RunLedger(s2, "b", "r1", tolerated_failure_count=1)  # expected read back from the store
    assert ledger.expected == 3
    st1 = ledger.status()
    assert (st1.succeeded, st1.failed, st1.pending, st1.complete) == (1, 1, 1, False)
    with pytest.raises(ValueError, match="incomplete"):
        ledger.close()
    s2.apply([result("c")])
    closed = ledger.close()
    assert closed.outcome == "succeeded"
    run = s2.get_run("b", "r1")
    assert (run["outcome"], run["succeeded"], run["failed"], run["expected"]) == ("succeeded", 2, 1, 3)
    assert closed.first_failures[0]["key"] == "b"
    s2.close()


def test_ledger_without_expected_and_nothing_recorded_is_an_error(store):
    with pytest.raises(ValueError, match="no expected count recorded"):
        RunLedger(store, "b", "never")


def test_rejects_unsupported_database():
    # MySQL/MariaDB joined SQLite and PostgreSQL (issue 20); a dialect the store does not speak is named.
    with pytest.raises(ValueError, match="SQLite, PostgreSQL and MySQL/MariaDB, not oracle"):
        ResultsStore("oracle://u@h/db")


def test_concurrent_first_writes_create_the_tables_once(tmp_path):
    # Drain threads share one store: the first batches of two threads used to race in create_all
    # (both checked "missing", the second then failed "table already exists" -> a spurious sink retry).
    import threading

    for trial in range(10):
        store = ResultsStore(f"sqlite:///{tmp_path}/race-{trial}.db")
        barrier = threading.Barrier(4)
        errors: list[BaseException] = []

        def first_write(i: int) -> None:
            barrier.wait()
            try:
                store.apply([result(f"k{trial}-{i}")])
            except BaseException as exc:  # noqa: BLE001 - collected and asserted below
                errors.append(exc)

        threads = [threading.Thread(target=first_write, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        store.close()
        assert not errors, errors
