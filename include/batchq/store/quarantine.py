"""The quarantine: results that are not applied, with the reason and the raw body, one row per SQS
message id. Nothing is lost (``batchq quarantine replay`` re-applies them once the cause is fixed) and
nothing is retried forever. ``stray`` rows — a key the run's plan cannot produce, a result of a plan
the run no longer counts — are kept for the record but never count in a ledger."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from batchq.store.schema import column_lengths, quarantine_table

#: Longest raw body kept in the quarantine (the SQS maximum: every real message fits).
MAX_QUARANTINE_BODY_CHARS = 1_048_576
#: Longest reason kept.
MAX_REASON_CHARS = 4000
#: The reason of a result whose key the run's plan cannot produce.
NOT_IN_PLAN = "not in plan"


def printable_body(body: str | bytes) -> str:
    """A raw body as text any database stores: NULs escaped, lone surrogates replaced, bounded to
    :data:`MAX_QUARANTINE_BODY_CHARS` (a truncated body says so at its end)."""
    text = body.decode("utf-8", errors="replace") if isinstance(body, bytes) else body
    text = text.replace("\x00", "\\u0000")
    text = text.encode("utf-8", errors="replace").decode("utf-8")
    if len(text) > MAX_QUARANTINE_BODY_CHARS:
        text = text[:MAX_QUARANTINE_BODY_CHARS] + f"…[truncated from {len(text)} characters]"
    return text


def fits(value: Any, limit: int) -> str | None:
    """``value`` if it is a string that fits a column of ``limit`` characters without NULs, else None."""
    if isinstance(value, str) and len(value) <= limit and "\x00" not in value:
        return value
    return None


@dataclass(frozen=True)
class QuarantineEntry:
    """A results message that will not be applied, and why (``stray``: never counts in a ledger)."""

    message_id: str
    reason: str
    body: str
    key: str | None = None
    batch: str | None = None
    run_id: str | None = None
    plan: str | None = None
    stray: bool = False

    @classmethod
    def from_body(cls, message_id: str, body: str | bytes, reason: str, key: str | None = None, *, stray: bool = False) -> QuarantineEntry:
        """Best-effort: read ``key``/``batch``/``run_id``/``plan`` from the body so the run's ledger can
        count it. Never raises: a body of any shape (deep, huge, not JSON) still becomes an entry; a
        field that does not fit its column is left out (it cannot name a planned key anyway)."""
        fields: dict[str, Any] = {}
        try:
            raw = json.loads(body)
            if isinstance(raw, dict):
                fields = {f: raw.get(f) for f in ("key", "batch", "run_id", "plan")}
        except Exception:  # noqa: BLE001, S110 - not JSON, too deep, ...: the reason already says why
            pass
        sizes = column_lengths(quarantine_table)
        return cls(
            message_id=str(message_id)[:128],
            reason=printable_body(reason)[:MAX_REASON_CHARS],
            body=printable_body(body),
            key=fits(key, sizes["key"]) or fits(fields.get("key"), sizes["key"]),
            batch=fits(fields.get("batch"), sizes["batch"]),
            run_id=fits(fields.get("run_id"), sizes["run_id"]),
            plan=fits(fields.get("plan"), sizes["plan"]),
            stray=stray,
        )

    def row(self, now: datetime) -> dict[str, Any]:
        return {
            "message_id": self.message_id, "key": self.key, "batch": self.batch, "run_id": self.run_id, "plan": self.plan,
            "reason": printable_body(self.reason)[:MAX_REASON_CHARS], "body": printable_body(self.body),
            "quarantined_at": now, "stray": self.stray,
        }


def counting(q: Any = quarantine_table.c) -> Any:
    """SQL condition: a quarantine row that counts in its run's ledger (not replayed, not stray)."""
    return sa.and_(q.replayed_at.is_(None), sa.or_(q.stray.is_(None), q.stray.is_(False)))


class QuarantineReads:
    """The quarantine's reads and marks (mixed into :class:`~batchq.store.results.ResultsStore`)."""

    def quarantined(
        self,
        batch: str | None = None,
        run_id: str | None = None,
        *,
        include_replayed: bool = True,
        message_ids: Sequence[str] | None = None,
        limit: int | None = None,
        include_stray: bool = True,
    ) -> list[dict[str, Any]]:
        """Quarantine rows, oldest first, optionally filtered (``include_stray=False``: only rows that are
        work of their run's plan — what a replay may apply)."""
        self._ensure()
        q = quarantine_table.c
        stmt = sa.select(quarantine_table).order_by(q.quarantined_at, q.message_id)
        if batch is not None:
            stmt = stmt.where(q.batch == batch)
        if run_id is not None:
            stmt = stmt.where(q.run_id == run_id)
        if not include_replayed:
            stmt = stmt.where(q.replayed_at.is_(None))
        if message_ids:
            stmt = stmt.where(q.message_id.in_(list(message_ids)))
        if not include_stray:
            stmt = stmt.where(sa.or_(q.stray.is_(None), q.stray.is_(False)))
        if limit is not None:
            stmt = stmt.limit(limit)
        with self._guard("read quarantine"), self.engine.connect() as conn:
            return [dict(m) for m in conn.execute(stmt).mappings().all()]

    def mark_replayed(self, message_ids: Sequence[str]) -> None:
        """Record that these quarantine rows were applied through the sink (``batchq quarantine replay``)."""
        if not message_ids:
            return
        self._ensure()
        with self._guard("mark replayed"), self.engine.begin() as conn:
            conn.execute(
                quarantine_table.update().where(quarantine_table.c.message_id.in_(list(message_ids))).values(replayed_at=self._now())
            )
