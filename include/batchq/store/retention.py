"""Retention: delete what is older than a cutoff, in small batches, safe while a drain runs.

Results rows go by ``applied_at`` (``updated_at`` for rows from before it was stored), quarantine rows
by ``quarantined_at``, repairs (and their keys) by ``requested_at`` once settled, runs by ``updated_at``
once closed. Every batch is its own short transaction of at most ``batch_size`` rows, chosen by
primary key, so a drain's writes wait at most one batch; a row a drain updates after the cutoff was
read is newer than the cutoff and is not deleted (the delete re-checks the age).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from batchq.store.schema import partitions_table, quarantine_table, repair_keys_table, repairs_table, results_table, runs_table

if TYPE_CHECKING:
    from batchq.store.results import ResultsStore

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_age(text: str) -> timedelta:
    """``30d``, ``12h``, ``90m``, ``2w``, ``45s`` → a timedelta (positive)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", str(text))
    if not m or float(m.group(1)) <= 0:
        raise ValueError(f"age must be a positive number with a unit s/m/h/d/w (e.g. 30d), got {text!r}")
    return timedelta(seconds=float(m.group(1)) * _UNITS[m.group(2)])


@dataclass
class PruneReport:
    """Rows deleted (or, for a dry run, that would be) per table."""

    results: int = 0
    quarantine: int = 0
    repairs: int = 0
    repair_keys: int = 0
    runs: int = 0
    partitions: int = 0
    dry_run: bool = False
    cutoff: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def prune(store: ResultsStore, older_than: timedelta, *, dry_run: bool = False, batch_size: int = 5000) -> PruneReport:
    """Delete results, quarantine rows, settled repairs and closed runs older than ``older_than``."""
    store._ensure()
    cutoff = store._now() - older_than
    report = PruneReport(dry_run=dry_run, cutoff=cutoff.isoformat())
    r, q, rp, rk, ru = results_table.c, quarantine_table.c, repairs_table.c, repair_keys_table.c, runs_table.c
    old_result = sa.func.coalesce(r.applied_at, r.updated_at) < cutoff
    settled_repair = sa.and_(rp.requested_at < cutoff, rp.settled_at.is_not(None), rp.settled_at < cutoff)
    old_run = sa.and_(ru.updated_at < cutoff, ru.outcome != "open")
    old_repair_key = rk.repair_id.in_(sa.select(rp.id).where(settled_repair))
    plans = [
        ("results", results_table, [r.key], old_result),
        ("quarantine", quarantine_table, [q.message_id], q.quarantined_at < cutoff),
        ("repair_keys", repair_keys_table, [rk.repair_id, rk.key], old_repair_key),
        ("repairs", repairs_table, [rp.id], settled_repair),
        ("runs", runs_table, [ru.batch, ru.run_id], old_run),
        # A run's partition rows go once nothing of them changes any more (closed, last updated before it).
        ("partitions", partitions_table, [partitions_table.c.batch, partitions_table.c.run_id, partitions_table.c.partition],
         sa.and_(partitions_table.c.updated_at < cutoff, partitions_table.c.outcome != "open")),
    ]
    with store._guard("prune"):
        for name, table, pk, old in plans:
            setattr(report, name, _count(store, old) if dry_run else _delete(store, table, pk, old, batch_size))
    return report


def _count(store: ResultsStore, condition: Any) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).where(condition)).scalar_one())


def _delete(store: ResultsStore, table: sa.Table, pk: list[Any], condition: Any, batch_size: int) -> int:
    deleted = 0
    while True:
        with store.engine.begin() as conn:
            ids = conn.execute(sa.select(*pk).where(condition).limit(batch_size)).all()
            if not ids:
                return deleted
            match = sa.tuple_(*pk).in_([tuple(i) for i in ids]) if len(pk) > 1 else pk[0].in_([i[0] for i in ids])
            # The age is checked again: a row a drain rewrote since the select stays.
            deleted += conn.execute(table.delete().where(match, condition)).rowcount
        if len(ids) < batch_size:
            return deleted


__all__ = ["PruneReport", "parse_age", "prune"]
