"""``batchq store prune``: old rows go, new rows and open runs stay; a dry run deletes nothing."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
import sqlalchemy as sa
from batchq.cli import main
from batchq.messages import WorkResult
from batchq.store import QuarantineEntry, ResultsStore, RunLedger
from batchq.store.retention import parse_age, prune
from batchq.store.schema import quarantine_table, results_table, runs_table


def test_parse_age():
    assert parse_age("30d") == timedelta(days=30)
    assert parse_age("12h") == timedelta(hours=12)
    for bad in ("30", "d", "-1d", "0d", "3y"):
        with pytest.raises(ValueError):
            parse_age(bad)


def test_prune_deletes_only_what_is_older(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 's.db'}"
    store = ResultsStore(url)
    ledger = RunLedger(store, "b", "old", 3)
    store.apply([WorkResult(batch="b", run_id="old", key=f"o{i}", status="succeeded") for i in range(3)],
                [QuarantineEntry.from_body("m1", "junk", "bad")])
    ledger.close()
    RunLedger(store, "b", "open", 5)  # an open run is never pruned
    past = store._now() - timedelta(days=40)
    with store.engine.begin() as conn:
        conn.execute(results_table.update().values(applied_at=past, updated_at=past))
        conn.execute(quarantine_table.update().values(quarantined_at=past))
        conn.execute(runs_table.update().values(updated_at=past))
    store.apply([WorkResult(batch="b", run_id="new", key="n0", status="succeeded")])

    assert main(["store", "prune", "--store", url, "--older-than", "30d", "--dry-run"]) == 0
    dry = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (dry["results"], dry["quarantine"], dry["runs"], dry["dry_run"]) == (3, 1, 1, True)
    report = prune(store, timedelta(days=30), batch_size=2)  # several batches
    assert (report.results, report.quarantine, report.runs) == (3, 1, 1)
    with store.engine.connect() as conn:
        assert conn.execute(sa.select(results_table.c.key)).scalars().all() == ["n0"]
        assert conn.execute(sa.select(runs_table.c.run_id)).scalars().all() == ["open"]
    store.close()


def test_prune_deletes_closed_partition_rows_only(tmp_path):
    from batchq.store.partitions import PartitionLedger
    from batchq.store.schema import partitions_table

    store = ResultsStore(f"sqlite:///{tmp_path / 's.db'}")
    store.create_tables()
    PartitionLedger(store.engine, "b", "old", ["customer"], {"a": 1, "b": 1})
    past = store._now() - timedelta(days=40)
    with store.engine.begin() as conn:
        conn.execute(partitions_table.update().where(partitions_table.c.partition == "a").values(outcome="succeeded", updated_at=past))
        conn.execute(partitions_table.update().where(partitions_table.c.partition == "b").values(updated_at=past))  # still open
    assert prune(store, timedelta(days=30)).partitions == 1
    with store.engine.connect() as conn:
        assert conn.execute(sa.select(partitions_table.c.partition)).scalars().all() == ["b"]
    store.close()
