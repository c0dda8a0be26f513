"""The winner rule exists twice — :func:`batchq.store.rules.replaces` (decided in the apply transaction)
and the upsert's ``WHERE`` (so two drainers racing on one key agree). This proves they agree on every
combination of stored row, incoming result and the run's current plan, on SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

import itertools
import uuid
from datetime import datetime, timezone

import pytest
import sqlalchemy as sa
from batchq.messages import ErrorInfo, WorkResult
from batchq.store import ResultsStore
from batchq.store.results import _row
from batchq.store.rules import replaces
from batchq.store.schema import results_table

PLANS = [None, "p1", "p2", "p3"]
STATUSES = ["succeeded", "failed"]


def result(batch: str, run_id: str, key: str, plan: str | None, status: str) -> WorkResult:
    return WorkResult(batch=batch, run_id=run_id, key=key, status=status, plan=plan,
                      error=ErrorInfo(type="E", message="m") if status == "failed" else None)


def check_agreement(store: ResultsStore) -> int:
    batch = f"u{uuid.uuid4().hex[:8]}"
    for current in ("p1", "p2"):
        store.set_expected(batch, f"run-{current}", 1, plan=current)
    now = datetime.now(timezone.utc)
    checked = 0
    for (old_plan, old_status, new_plan, new_status, current) in itertools.product(PLANS, STATUSES, PLANS, STATUSES, [None, "p1", "p2"]):
        run_id = f"run-{current}"  # run-None has no runs row: no current plan
        key = uuid.uuid4().hex
        old = result(batch, run_id, key, old_plan, old_status)
        new = result(batch, run_id, key, new_plan, new_status)
        with store.engine.begin() as conn:
            conn.execute(store._upsert(), [_row(old, now)])
            conn.execute(store._upsert(), [_row(new, now)])
            got = conn.execute(sa.select(results_table.c.plan, results_table.c.status).where(results_table.c.key == key)).one()
        want_new = replaces({"plan": old_plan, "status": old_status}, new, current)
        want = (new_plan, new_status) if want_new else (old_plan, old_status)
        assert tuple(got) == want, f"stored {old_plan}/{old_status}, incoming {new_plan}/{new_status}, run counts {current}: SQL kept {tuple(got)}, rule says {want}"
        checked += 1
    return checked


def test_sql_guard_agrees_with_the_rule_sqlite(tmp_path):
    store = ResultsStore(f"sqlite:///{tmp_path / 's.db'}")
    store.create_tables()
    assert check_agreement(store) == 4 * 2 * 4 * 2 * 3
    store.close()


@pytest.mark.postgres
def test_sql_guard_agrees_with_the_rule_postgres(pg_url):
    store = ResultsStore(pg_url)
    store.create_tables()
    assert check_agreement(store) == 4 * 2 * 4 * 2 * 3
    store.close()


@pytest.mark.mariadb
def test_sql_guard_agrees_with_the_rule_mariadb(mariadb_url):
    store = ResultsStore(mariadb_url)
    store.create_tables()
    assert check_agreement(store) == 4 * 2 * 4 * 2 * 3
    store.close()
