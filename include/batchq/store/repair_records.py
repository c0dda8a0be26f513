"""The repair records: one row per repair of a run, one per re-sent key, and how a key's repair ends.

A repair is recorded before its payloads are sent and reopens the run; its keys count as pending
until a result *newer than the repair* (finished at or after ``requested_at``, of the repair's plan)
is applied. A redelivered copy of the key's old result is older than the repair and never ends it.
Mixed into :class:`~batchq.store.results.ResultsStore`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa

from batchq.messages import WorkResult
from batchq.store.quarantine import counting
from batchq.store.runs import open_repair
from batchq.store.schema import quarantine_table, repair_keys_table, repairs_table, results_table, runs_table


class RepairRecords:
    """Reads and writes of ``batchq_repairs`` and ``batchq_repair_keys``."""

    def repair_candidates(self, batch: str, run_id: str, plan: str | None = None) -> list[dict[str, Any]]:
        """The run's failed keys and its quarantined keys without a result: what ``rerun --failed`` re-sends.
        Keys an open repair of this plan already re-sent are left out (a second ``--failed`` never
        double-sends; name such a key with ``--keys`` to send it again); an open repair of an earlier plan
        does not hold a key back (that plan no longer counts, so the key reads failed). Each: ``key``, ``status``
        (``failed``/``quarantined``), ``attempts``."""
        self._ensure()
        r, q = results_table.c, quarantine_table.c
        own_r, own_q = self._own(batch, run_id, plan)
        own_q = [*own_q, q.key.is_not(None)]
        with self._guard("read failed keys"), self.engine.connect() as conn:
            failed = conn.execute(
                sa.select(r.key, r.attempts)
                .where(*own_r, r.status == "failed", ~open_repair(r.key, plan))
                .order_by(r.key)
            ).all()
            quarantined = conn.execute(
                sa.select(q.key)
                .where(
                    *own_q,
                    ~sa.exists().where(results_table.c.key == q.key, *own_r),
                    ~open_repair(q.key, plan),
                )
                .distinct()
                .order_by(q.key)
            ).all()
        return [{"key": k, "status": "failed", "attempts": a} for k, a in failed] + [
            {"key": k, "status": "quarantined", "attempts": None} for (k,) in quarantined
        ]

    def key_states(self, batch: str, run_id: str, keys: Sequence[str], plan: str | None = None) -> dict[str, dict[str, Any]]:
        """``{key: {"status", "attempts"}}`` for those of ``keys`` the store knows for this run (a result
        row, else an unreplayed quarantine row as ``quarantined``); absent keys are not in the answer."""
        self._ensure()
        r, q = results_table.c, quarantine_table.c
        out: dict[str, dict[str, Any]] = {}
        with self._guard("read key states"), self.engine.connect() as conn:
            for start in range(0, len(keys), 500):
                chunk = list(keys[start : start + 500])
                own_r = [r.batch == batch, r.run_id == run_id, r.key.in_(chunk)] + ([r.plan == plan] if plan else [])
                for k, status, attempts in conn.execute(sa.select(r.key, r.status, r.attempts).where(*own_r)).all():
                    out[k] = {"status": status, "attempts": attempts}
                own_q = [q.batch == batch, q.run_id == run_id, q.key.in_(chunk), counting(q)]
                for (k,) in conn.execute(sa.select(q.key).where(*own_q).distinct()).all():
                    out.setdefault(k, {"status": "quarantined", "attempts": None})
        return out

    def record_repair(
        self,
        batch: str,
        run_id: str,
        keys: Sequence[dict[str, Any]],
        *,
        mode: str,
        plan: str | None = None,
        reason: str | None = None,
        requested_by: str | None = None,
        keep_dlq: bool = False,
    ) -> int:
        """Record a repair before its payloads are sent and reopen the run: its keys count as pending until
        their new results are applied. An older open repair of the same key is superseded. Returns the id.

        :param keys: ``{"key", "status", "attempts"}`` per re-sent key (status before the repair).
        """
        self._ensure()
        now = self._now()
        rk = repair_keys_table.c
        with self._guard("record repair"), self.engine.begin() as conn:
            run = conn.execute(sa.select(runs_table.c.outcome).where(runs_table.c.batch == batch, runs_table.c.run_id == run_id)).first()
            repair_id = conn.execute(
                repairs_table.insert().values(
                    batch=batch, run_id=run_id, plan=plan, mode=mode, reason=(reason or "")[:4000] or None,
                    requested_by=(requested_by or "")[:250] or None, requested_at=now, keys=len(keys), sent=0,
                    keep_dlq=keep_dlq, dlq_purged=0, outcome_before=run.outcome if run else None,
                )
            ).inserted_primary_key[0]
            names = [k["key"] for k in keys]
            for start in range(0, len(names), 500):
                conn.execute(
                    repair_keys_table.update()
                    .where(rk.key.in_(names[start : start + 500]), rk.resolved_at.is_(None))
                    .values(status_after="superseded", resolved_at=now)
                )
            if keys:
                conn.execute(
                    repair_keys_table.insert(),
                    [
                        {"repair_id": repair_id, "key": k["key"], "batch": batch, "run_id": run_id,
                         "status_before": k["status"], "attempts_before": k.get("attempts")}
                        for k in keys
                    ],
                )
            if run is not None:
                conn.execute(
                    runs_table.update()
                    .where(runs_table.c.batch == batch, runs_table.c.run_id == run_id)
                    .values(outcome="open", closed_at=None, updated_at=now)
                )
        return int(repair_id)

    def finish_repair_send(self, repair_id: int, sent: int, not_sent: Sequence[str]) -> None:
        """After the send: how many went out; keys that could not be sent are closed as ``not_sent`` (they
        count as failed again, so the ledger never waits for a result that cannot come)."""
        self._ensure()
        now = self._now()
        rk = repair_keys_table.c
        with self._guard("record repair send"), self.engine.begin() as conn:
            conn.execute(repairs_table.update().where(repairs_table.c.id == repair_id).values(sent=sent))
            names = list(not_sent)
            for start in range(0, len(names), 500):
                conn.execute(
                    repair_keys_table.update()
                    .where(rk.repair_id == repair_id, rk.key.in_(names[start : start + 500]), rk.resolved_at.is_(None))
                    .values(status_after="not_sent", resolved_at=now)
                )

    def repairs(self, batch: str, run_id: str) -> list[dict[str, Any]]:
        """The run's repairs, oldest first, each with its counts of keys still open and resolved by status."""
        self._ensure()
        rk = repair_keys_table.c
        with self._guard("read repairs"), self.engine.connect() as conn:
            rows = [dict(m) for m in conn.execute(
                sa.select(repairs_table).where(repairs_table.c.batch == batch, repairs_table.c.run_id == run_id).order_by(repairs_table.c.id)
            ).mappings().all()]
            for row in rows:
                by_status = conn.execute(
                    sa.select(rk.status_after, sa.func.count()).where(rk.repair_id == row["id"]).group_by(rk.status_after)
                ).all()
                row["keys_after"] = {str(s or "open"): int(n) for s, n in by_status}
        return rows

    def key_history(self, batch: str, run_id: str, key: str) -> list[dict[str, Any]]:
        """One key across repairs: every repair's status and attempts before and after, oldest first."""
        self._ensure()
        rk = repair_keys_table.c
        with self._guard("read key history"), self.engine.connect() as conn:
            return [dict(m) for m in conn.execute(
                sa.select(rk.repair_id, rk.status_before, rk.attempts_before, rk.status_after, rk.attempts_after, rk.resolved_at)
                .where(rk.batch == batch, rk.run_id == run_id, rk.key == key)
                .order_by(rk.repair_id)
            ).mappings().all()]

    def dlq_purge_candidates(self, batch: str, run_id: str) -> list[tuple[int, str]]:
        """``(repair_id, key)`` of repaired keys whose new result succeeded, whose DLQ copies are not yet
        purged, in repairs that did not ask to keep the DLQ."""
        self._ensure()
        rk, rp = repair_keys_table.c, repairs_table.c
        with self._guard("read purge candidates"), self.engine.connect() as conn:
            return [
                (int(i), str(k))
                for i, k in conn.execute(
                    sa.select(rk.repair_id, rk.key)
                    .join(repairs_table, rp.id == rk.repair_id)
                    .where(rk.batch == batch, rk.run_id == run_id, rk.status_after == "succeeded", rk.dlq_purged_at.is_(None), rp.keep_dlq.is_(False))
                ).all()
            ]

    def mark_dlq_purged(self, entries: Sequence[tuple[int, str]], deleted_by_repair: dict[int, int]) -> None:
        """Record that the DLQ copies of these repaired keys are gone (``deleted_by_repair``: messages
        deleted per repair id, added to ``batchq_repairs.dlq_purged``)."""
        if not entries:
            return
        self._ensure()
        now = self._now()
        rk = repair_keys_table.c
        with self._guard("mark purged"), self.engine.begin() as conn:
            for repair_id, key in entries:
                conn.execute(repair_keys_table.update().where(rk.repair_id == repair_id, rk.key == key).values(dlq_purged_at=now))
            for repair_id, n in deleted_by_repair.items():
                conn.execute(repairs_table.update().where(repairs_table.c.id == repair_id).values(dlq_purged=repairs_table.c.dlq_purged + n))


def resolve_repaired(conn: Any, results: Sequence[WorkResult], now: datetime) -> None:
    """Close the open repair entries that ``results`` end: same key, the repair's plan (or none), and
    the result finished at or after the repair was requested. Runs in the apply transaction, so a
    result and its repair closing commit together. Of several such results of a key, a success wins."""
    rk, rp = repair_keys_table.c, repairs_table.c
    keys = sorted({r.key for r in results})
    entries: dict[str, list[Any]] = {}
    for start in range(0, len(keys), 500):
        rows = conn.execute(
            sa.select(rk.repair_id, rk.key, rp.requested_at, rp.plan)
            .join(repairs_table, rp.id == rk.repair_id)
            .where(rk.key.in_(keys[start : start + 500]), rk.resolved_at.is_(None))
        ).all()
        for row in rows:
            entries.setdefault(row.key, []).append(row)
    if not entries:
        return
    for r in sorted(results, key=lambda r: r.status != "succeeded"):
        for entry in entries.pop(r.key, ()):
            if (entry.plan is not None and entry.plan != r.plan) or _aware(r.finished_at) < _aware(entry.requested_at):
                entries.setdefault(r.key, []).append(entry)  # not ended by this result: still open
                continue
            conn.execute(
                repair_keys_table.update()
                .where(rk.repair_id == entry.repair_id, rk.key == r.key, rk.resolved_at.is_(None))
                .values(status_after=r.status, attempts_after=r.attempts, resolved_at=now)
            )


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value
