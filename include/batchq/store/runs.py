"""The run records: what a run expects (its plan), what its ledger counts, and its outcome.

Counted are distinct keys of the run's own plan: result rows carrying the plan, and counting
quarantine rows (not replayed, not stray) of keys without a result. A failed or quarantined key that
an open repair *of this plan* re-sent counts as pending (``repairing``) until a newer result arrives.
Mixed into :class:`~batchq.store.results.ResultsStore`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from batchq.errors import BatchqError
from batchq.store import schema
from batchq.store.quarantine import counting
from batchq.store.schema import (
    quarantine_table,
    repair_keys_table,
    repairs_table,
    results_table,
    runs_table,
    utc,
)

#: The timestamps of :func:`batchq.monitor.lag.run_lag`.
LAG_COLUMNS = ("status", "enqueued_at", "first_received_at", "started_at", "finished_at", "result_sent_at", "applied_at")


class RunConflict(BatchqError, ValueError):
    """Another DAG already records a run with this batch name and run id."""


@dataclass(frozen=True)
class RunCounts:
    """Distinct keys of one run in the store."""

    succeeded: int
    failed: int
    quarantined: int
    #: failed or quarantined keys re-sent by an open repair: pending again until their new result
    repairing: int = 0

    @property
    def closed(self) -> int:
        return self.succeeded + self.failed + self.quarantined


def open_repair(key_column: Any, plan: str | None) -> Any:
    """SQL: ``key_column`` has an open repair entry (of ``plan``'s repairs, when a plan is given)."""
    rk, rp = repair_keys_table.c, repairs_table.c
    where = [rk.key == key_column, rk.resolved_at.is_(None)]
    if plan:
        where += [rp.id == rk.repair_id, sa.or_(rp.plan.is_(None), rp.plan == plan)]
    return sa.exists().where(*where)


class RunRecords:
    """Reads and writes of ``batchq_runs`` and the counts over the results and the quarantine."""

    def _own(self, batch: str, run_id: str, plan: str | None) -> tuple[list[Any], list[Any]]:
        r, q = results_table.c, quarantine_table.c
        own_r = [r.batch == batch, r.run_id == run_id] + ([r.plan == plan] if plan else [])
        own_q = [q.batch == batch, q.run_id == run_id, counting(q)] + ([q.plan == plan] if plan else [])
        return own_r, own_q

    def counts(self, batch: str, run_id: str, plan: str | None = None) -> RunCounts:
        """Distinct keys of the run by status. With ``plan``, only that plan's rows count."""
        self._ensure()
        r, q = results_table.c, quarantine_table.c
        own_r, own_q = self._own(batch, run_id, plan)
        only_quarantined = [*own_q, q.key.is_not(None), ~sa.exists().where(results_table.c.key == q.key, *own_r)]
        with self._guard("count results"), self.engine.connect() as conn:
            by_status = dict(conn.execute(sa.select(r.status, sa.func.count()).where(*own_r).group_by(r.status)).all())
            failed_repairing = conn.execute(
                sa.select(sa.func.count()).where(*own_r, r.status == "failed", open_repair(r.key, plan))
            ).scalar_one()
            quarantined = conn.execute(sa.select(sa.func.count(sa.distinct(q.key))).where(*only_quarantined)).scalar_one()
            quarantined_repairing = conn.execute(
                sa.select(sa.func.count(sa.distinct(q.key))).where(*only_quarantined, open_repair(q.key, plan))
            ).scalar_one()
        return RunCounts(
            succeeded=int(by_status.get("succeeded", 0)),
            failed=int(by_status.get("failed", 0)) - int(failed_repairing),
            quarantined=int(quarantined) - int(quarantined_repairing),
            repairing=int(failed_repairing) + int(quarantined_repairing),
        )

    def lag_rows(self, batch: str, run_id: str, plan: str | None = None) -> list[dict[str, Any]]:
        """The run's result rows with their queue timestamps (UTC-aware), for :func:`batchq.monitor.lag.run_lag`."""
        self._ensure()
        r = results_table.c
        own_r, _ = self._own(batch, run_id, plan)
        with self._guard("read lag"), self.engine.connect() as conn:
            rows = conn.execute(sa.select(*(r[c] for c in LAG_COLUMNS)).where(*own_r)).all()
        return [{c: utc(v) for c, v in zip(LAG_COLUMNS, row)} for row in rows]

    def first_failures(self, batch: str, run_id: str, limit: int = 10, plan: str | None = None) -> list[dict[str, Any]]:
        """Up to ``limit`` failed (or quarantined) keys of the run with their errors and dims (``None`` for
        results of older workers and for quarantined rows), oldest first. The dims are how a person reads
        a key (:func:`batchq.messages.describe_key`)."""
        self._ensure()
        r, q = results_table.c, quarantine_table.c
        own_r, own_q = self._own(batch, run_id, plan)
        with self._guard("read failures"), self.engine.connect() as conn:
            failed = conn.execute(sa.select(r.key, r.error, r.dims).where(*own_r, r.status == "failed").order_by(r.updated_at, r.key).limit(limit)).all()
            out = [{"key": k, "error": e, "dims": d} for k, e, d in failed]
            if len(out) < limit:
                rows = conn.execute(
                    sa.select(q.key, q.reason).where(*own_q, q.key.is_not(None)).order_by(q.quarantined_at, q.key).limit(limit - len(out))
                ).all()
                out += [{"key": k, "error": {"type": "Quarantined", "message": reason, "permanent": True}} for k, reason in rows]
        return out

    def set_expected(
        self, batch: str, run_id: str, expected: int, *, plan: str | None = None, dag_id: str | None = None, spec: str | None = None
    ) -> None:
        """Record the run's expected count and plan (idempotent; a new plan reopens the run). ``spec``:
        the plan's resolved spec as JSON, so every drainer can tell a key of the plan from a stray one.
        Raise :class:`RunConflict` when another DAG already owns this batch name and run id."""
        self._ensure()
        now = self._now()
        c = runs_table.c
        with self._guard("record expected"), self.engine.begin() as conn:
            prev = conn.execute(sa.select(c.dag_id, c.plan).where(c.batch == batch, c.run_id == run_id)).first()
            if prev is not None and dag_id and prev.dag_id and prev.dag_id != dag_id:
                raise RunConflict(
                    f"run {run_id!r} of batch {batch!r} is already recorded by DAG {prev.dag_id!r}, not {dag_id!r}: "
                    "two DAGs use the same batch name; give each its own spec name"
                )
            values: dict[str, Any] = {"expected": expected, "updated_at": now}
            if plan:
                values["plan"] = plan
                if spec is not None or (prev is not None and prev.plan != plan):
                    values["spec"] = spec  # kept when the same plan is recorded again without it
            if dag_id:
                values["dag_id"] = dag_id
            if prev is not None and plan and prev.plan and prev.plan != plan:
                values.update(outcome="open", closed_at=None)  # a new plan of the run: counted afresh
            # The insert's own defaults first; ``values`` (which may carry an outcome) overrides them.
            stmt = self._insert(runs_table).values({"batch": batch, "run_id": run_id, "succeeded": 0, "failed": 0, "outcome": "open", **values})
            conn.execute(schema.on_conflict_do_update(self.dialect, stmt, ["batch", "run_id"], set_=values))

    def get_run(self, batch: str, run_id: str) -> dict[str, Any] | None:
        self._ensure()
        with self._guard("read run"), self.engine.connect() as conn:
            row = conn.execute(sa.select(runs_table).where(runs_table.c.batch == batch, runs_table.c.run_id == run_id)).mappings().first()
        return dict(row) if row else None

    def close_run(self, batch: str, run_id: str, succeeded: int, failed: int, outcome: str) -> None:
        """Record the outcome; the repairs of this run waiting for the ledger to close get their "after"."""
        self._ensure()
        now = self._now()
        with self._guard("close run"), self.engine.begin() as conn:
            conn.execute(
                runs_table.update()
                .where(runs_table.c.batch == batch, runs_table.c.run_id == run_id)
                .values(succeeded=succeeded, failed=failed, outcome=outcome, closed_at=now, updated_at=now)
            )
            conn.execute(
                repairs_table.update()
                .where(repairs_table.c.batch == batch, repairs_table.c.run_id == run_id, repairs_table.c.settled_at.is_(None))
                .values(outcome_after=outcome, settled_at=now)
            )
