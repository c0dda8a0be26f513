"""The results store: the SQL sink and the run ledger in one database (SQLAlchemy; SQLite or PostgreSQL).

Tables (created on first use):

``batchq_results``
    one row per ``key``: batch, run_id, job_type, status, output, error, attempts, worker, finished_at,
    updated_at, and the payload's queue timestamps (enqueued_at, first_received_at, started_at,
    result_sent_at, applied_at: :mod:`batchq.monitor.lag`). Upsert on ``key``; a ``succeeded`` result replaces a ``failed`` one, never the reverse,
    so duplicates and reordering cannot change the outcome.
``batchq_quarantine``
    malformed results (and results a sink rejected), one row per SQS message id, with the reason and the
    raw body: nothing is lost, nothing is retried forever.
``batchq_runs``
    per run: expected count (from the plan), the last counts seen and the outcome once closed. Because
    all of this lives in the sink database, the ledger survives retries of the drain task.
``batchq_repairs`` / ``batchq_repair_keys``
    one row per repair of a run (who, when, why, how many, the outcome before and after) and one per
    re-sent key (its status and attempts before, and after once its new result is applied). A key of
    an open repair counts as pending, not failed, until its new result arrives.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError, OperationalError

from batchq.drain.checks import fits, printable_body
from batchq.drain.sink import SinkUnavailable, merge_duplicates
from batchq.messages import WorkResult

metadata = sa.MetaData()

results_table = sa.Table(
    "batchq_results",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("batch", sa.String(64), nullable=False),
    sa.Column("run_id", sa.String(250), nullable=False),
    sa.Column("job_type", sa.String(128)),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("output", sa.JSON),
    sa.Column("error", sa.JSON),
    sa.Column("attempts", sa.Integer, nullable=False, default=1),
    sa.Column("worker", sa.String(250)),
    sa.Column("finished_at", sa.DateTime(timezone=True)),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    # The plan fingerprint of the payload (None for bodies from before plans were carried).
    sa.Column("plan", sa.String(64)),
    # Queue lag of the payload (batchq.monitor.lag): input message sent / first received (SQS timestamps),
    # handler start, results message sent, and when this drainer committed it. None for older results.
    sa.Column("enqueued_at", sa.DateTime(timezone=True)),
    sa.Column("first_received_at", sa.DateTime(timezone=True)),
    sa.Column("started_at", sa.DateTime(timezone=True)),
    sa.Column("result_sent_at", sa.DateTime(timezone=True)),
    sa.Column("applied_at", sa.DateTime(timezone=True)),
    sa.Index("ix_batchq_results_run", "batch", "run_id", "status"),
)

quarantine_table = sa.Table(
    "batchq_quarantine",
    metadata,
    sa.Column("message_id", sa.String(128), primary_key=True),
    sa.Column("key", sa.String(64)),
    sa.Column("batch", sa.String(64)),
    sa.Column("run_id", sa.String(250)),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("quarantined_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("plan", sa.String(64)),
    # Set by `batchq quarantine replay` once the body was applied through the sink.
    sa.Column("replayed_at", sa.DateTime(timezone=True)),
    sa.Index("ix_batchq_quarantine_run", "batch", "run_id"),
)

runs_table = sa.Table(
    "batchq_runs",
    metadata,
    sa.Column("batch", sa.String(64), primary_key=True),
    sa.Column("run_id", sa.String(250), primary_key=True),
    sa.Column("expected", sa.Integer, nullable=False),
    sa.Column("succeeded", sa.Integer, nullable=False, default=0),
    sa.Column("failed", sa.Integer, nullable=False, default=0),
    sa.Column("outcome", sa.String(16), nullable=False, default="open"),
    sa.Column("closed_at", sa.DateTime(timezone=True)),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    # The plan the ledger counts (results of other plans of the same run id never count) and the DAG
    # that owns the run (another DAG reusing the batch name and run id is refused).
    sa.Column("plan", sa.String(64)),
    sa.Column("dag_id", sa.String(250)),
)

repairs_table = sa.Table(
    "batchq_repairs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("batch", sa.String(64), nullable=False),
    sa.Column("run_id", sa.String(250), nullable=False),
    sa.Column("plan", sa.String(64)),
    sa.Column("mode", sa.String(16), nullable=False),
    sa.Column("reason", sa.Text),
    sa.Column("requested_by", sa.String(250)),
    sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("keys", sa.Integer, nullable=False),
    sa.Column("sent", sa.Integer, nullable=False, default=0),
    sa.Column("keep_dlq", sa.Boolean, nullable=False, default=False),
    sa.Column("dlq_purged", sa.Integer, nullable=False, default=0),
    # The run's outcome when the repair was recorded, and when the ledger closed again after it.
    sa.Column("outcome_before", sa.String(16)),
    sa.Column("outcome_after", sa.String(16)),
    sa.Column("settled_at", sa.DateTime(timezone=True)),
    sa.Index("ix_batchq_repairs_run", "batch", "run_id"),
)

repair_keys_table = sa.Table(
    "batchq_repair_keys",
    metadata,
    sa.Column("repair_id", sa.Integer, primary_key=True),
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("batch", sa.String(64), nullable=False),
    sa.Column("run_id", sa.String(250), nullable=False),
    # failed | quarantined | missing | succeeded: what the key was when the repair re-sent it.
    sa.Column("status_before", sa.String(16), nullable=False),
    sa.Column("attempts_before", sa.Integer),
    # Set when the key's next result is applied (or ``not_sent`` / ``superseded``): the key is open until then.
    sa.Column("status_after", sa.String(16)),
    sa.Column("attempts_after", sa.Integer),
    sa.Column("resolved_at", sa.DateTime(timezone=True)),
    sa.Column("dlq_purged_at", sa.DateTime(timezone=True)),
    sa.Index("ix_batchq_repair_keys_key", "key", "resolved_at"),
    sa.Index("ix_batchq_repair_keys_run", "batch", "run_id"),
)

#: Columns added after the first release: created on existing tables by :meth:`SqlSink.create_tables`.
_ADDED_COLUMNS = {
    "batchq_results": ("plan", "enqueued_at", "first_received_at", "started_at", "result_sent_at", "applied_at"),
    "batchq_quarantine": ("plan", "replayed_at"),
    "batchq_runs": ("plan", "dag_id"),
}


#: Columns a winning duplicate replaces (everything but the key and the run it belongs to).
_UPSERTED = (
    "status", "output", "error", "attempts", "worker", "finished_at", "updated_at", "job_type", "plan",
    "enqueued_at", "first_received_at", "started_at", "result_sent_at", "applied_at",
)
#: The timestamps of :func:`batchq.monitor.lag.run_lag`.
_LAG_COLUMNS = ("status", "enqueued_at", "first_received_at", "started_at", "finished_at", "result_sent_at", "applied_at")


class RunConflict(ValueError):
    """Another DAG already records a run with this batch name and run id."""


@dataclass(frozen=True)
class QuarantineEntry:
    """A results message that will not be applied, and why."""

    message_id: str
    reason: str
    body: str
    key: str | None = None
    batch: str | None = None
    run_id: str | None = None
    plan: str | None = None

    @classmethod
    def from_body(cls, message_id: str, body: str | bytes, reason: str, key: str | None = None) -> QuarantineEntry:
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
        sizes = {c.name: c.type.length for c in quarantine_table.columns if getattr(c.type, "length", None)}
        return cls(
            message_id=str(message_id)[:128],
            reason=printable_body(reason)[:4000],
            body=printable_body(body),
            key=fits(key, sizes["key"]) or fits(fields.get("key"), sizes["key"]),
            batch=fits(fields.get("batch"), sizes["batch"]),
            run_id=fits(fields.get("run_id"), sizes["run_id"]),
            plan=fits(fields.get("plan"), sizes["plan"]),
        )


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


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _utc(value: Any) -> Any:
    # SQLite returns naive datetimes (stored as UTC); PostgreSQL aware ones.
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value


def _row(r: WorkResult, now: datetime) -> dict[str, Any]:
    return {
        "key": r.key,
        "batch": r.batch,
        "run_id": r.run_id,
        "job_type": r.job_type,
        "status": r.status,
        "output": r.output,
        "error": r.error.model_dump() if r.error else None,
        "attempts": r.attempts,
        "worker": r.worker,
        "finished_at": r.finished_at,
        "updated_at": now,
        "plan": r.plan,
        "enqueued_at": r.enqueued_at,
        "first_received_at": r.first_received_at,
        "started_at": r.started_at,
        "result_sent_at": r.result_sent_at,
        "applied_at": now,
    }


class SqlSink:
    """SQL sink + run ledger over one SQLAlchemy engine.

    As a sink it writes ``batchq_results`` (the real-time system reads it, or it is the demo's
    database); as a ledger store it counts distinct keys per run. Connection failures raise
    :class:`~batchq.drain.sink.SinkUnavailable` so the drainer backs off and retries.

    :param url: SQLAlchemy URL, e.g. ``sqlite:///results.db`` or
        ``postgresql+psycopg://user@host:5432/db``.
    :param engine_kwargs: passed to :func:`sqlalchemy.create_engine`.
    """

    def __init__(self, url: str | sa.engine.URL, **engine_kwargs: Any):
        url_obj = sa.engine.make_url(url)
        self.dialect = url_obj.get_backend_name()
        if self.dialect not in ("sqlite", "postgresql"):
            raise ValueError(f"sink URL {url_obj.render_as_string(hide_password=True)}: only sqlite and postgresql are supported")
        kwargs: dict[str, Any] = {"pool_pre_ping": True}
        if self.dialect == "sqlite":
            # Drain threads share the file; wait on its lock instead of failing at once.
            kwargs["connect_args"] = {"timeout": 30, "check_same_thread": False}
        else:
            # Fail fast when the database is unreachable, so back-off (not a hung connect) handles it.
            kwargs["connect_args"] = {"connect_timeout": 5}
            kwargs["pool_size"] = 8
        kwargs.update(engine_kwargs)
        self.engine = sa.create_engine(url_obj, **kwargs)
        if self.dialect == "sqlite" and url_obj.database not in (None, "", ":memory:"):
            # WAL lets readers (the ledger, the real-time system) run beside the drain's writes; the
            # default synchronous=FULL keeps a commit durable before we delete the message.
            sa.event.listen(self.engine, "connect", _sqlite_wal)
        self.description = f"sql:{url_obj.render_as_string(hide_password=True)}"
        self._created = False
        self._create_lock = threading.Lock()

    # -- lifecycle ---------------------------------------------------------------------------------------
    def create_tables(self) -> None:
        """Create the tables if missing. Safe under concurrency: drain threads share one lock, and a
        concurrent creator in another process (create_all checks, then creates) is tolerated as long
        as the tables exist afterwards."""
        with self._create_lock, self._guard("create tables"):
            try:
                metadata.create_all(self.engine)
            except sa.exc.DBAPIError:
                present = set(sa.inspect(self.engine).get_table_names())
                if not set(metadata.tables) <= present:
                    raise
            self._add_missing_columns()
            self._created = True

    def _add_missing_columns(self) -> None:
        """Tables created by an older batchq lack the columns added since (all nullable): add them.
        A concurrent adder in another process is tolerated (the column exists afterwards)."""
        inspector = sa.inspect(self.engine)
        for table_name, names in _ADDED_COLUMNS.items():
            present = {c["name"] for c in inspector.get_columns(table_name)}
            for name in names:
                if name in present:
                    continue
                column = metadata.tables[table_name].c[name]
                ddl = f"ALTER TABLE {table_name} ADD COLUMN {name} {column.type.compile(dialect=self.engine.dialect)}"
                try:
                    with self.engine.begin() as conn:
                        conn.execute(sa.text(ddl))
                except sa.exc.DBAPIError:
                    if name not in {c["name"] for c in sa.inspect(self.engine).get_columns(table_name)}:
                        raise

    def _ensure(self) -> None:
        if not self._created:
            self.create_tables()

    def close(self) -> None:
        self.engine.dispose()

    def _guard(self, what: str):
        return _Guard(self.description, what)

    def _insert(self, table: sa.Table):
        if self.dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        return insert(table)

    # -- writing -----------------------------------------------------------------------------------------
    def write(self, results: Sequence[WorkResult]) -> None:
        """Sink interface: :meth:`apply` with no quarantined entries."""
        self.apply(results, ())

    def apply(self, results: Sequence[WorkResult], quarantined: Iterable[QuarantineEntry] = ()) -> None:
        """Upsert ``results`` and record ``quarantined`` in one transaction (committed on return)."""
        self._ensure()
        now = _now()
        rows = [_row(r, now) for r in merge_duplicates(results)]
        qrows = [
            {
                "message_id": q.message_id,
                "key": q.key,
                "batch": q.batch,
                "run_id": q.run_id,
                "plan": q.plan,
                "reason": printable_body(q.reason)[:4000],
                "body": printable_body(q.body),
                "quarantined_at": now,
            }
            for q in {q.message_id: q for q in quarantined}.values()
        ]
        if not rows and not qrows:
            return
        with self._guard("write results"), self.engine.begin() as conn:
            if rows:
                stmt = self._insert(results_table)
                excluded = stmt.excluded
                stmt = stmt.on_conflict_do_update(
                    index_elements=[results_table.c.key],
                    set_={c: excluded[c] for c in _UPSERTED},
                    # Only a success may replace a failure: a late failed duplicate never undoes a success.
                    # A result of another plan (the run re-planned after its dimension values changed)
                    # replaces the row, so the row belongs to the plan whose ledger may count it.
                    where=sa.or_(
                        sa.and_(results_table.c.status == "failed", excluded.status == "succeeded"),
                        sa.and_(excluded.plan.is_not(None), results_table.c.plan.is_distinct_from(excluded.plan)),
                    ),
                )
                conn.execute(stmt, rows)
                _resolve_repaired(conn, rows, now)
            if qrows:
                conn.execute(self._insert(quarantine_table).on_conflict_do_nothing(index_elements=["message_id"]), qrows)

    # -- the ledger's reads and writes ------------------------------------------------------------------
    def counts(self, batch: str, run_id: str, plan: str | None = None) -> RunCounts:
        """Distinct keys of the run by status; quarantined keys that never got a real result count apart.
        With ``plan``, only rows of that plan count (a result of another plan of the same run id, or a
        body without a plan, never closes this run's ledger)."""
        self._ensure()
        r, q = results_table.c, quarantine_table.c
        own_r = [r.batch == batch, r.run_id == run_id] + ([r.plan == plan] if plan else [])
        own_q = [q.batch == batch, q.run_id == run_id, q.replayed_at.is_(None)] + ([q.plan == plan] if plan else [])
        rk = repair_keys_table.c
        # A failed or quarantined key that an open repair re-sent is pending again, not failed.
        def repairing(key_column: Any) -> Any:
            return sa.exists().where(rk.key == key_column, rk.resolved_at.is_(None))

        only_quarantined = [*own_q, q.key.is_not(None), ~sa.exists().where(results_table.c.key == q.key, *own_r)]
        with self._guard("count results"), self.engine.connect() as conn:
            by_status = dict(conn.execute(sa.select(r.status, sa.func.count()).where(*own_r).group_by(r.status)).all())
            failed_repairing = conn.execute(sa.select(sa.func.count()).where(*own_r, r.status == "failed", repairing(r.key))).scalar_one()
            quarantined = conn.execute(sa.select(sa.func.count(sa.distinct(q.key))).where(*only_quarantined)).scalar_one()
            quarantined_repairing = conn.execute(
                sa.select(sa.func.count(sa.distinct(q.key))).where(*only_quarantined, repairing(q.key))
            ).scalar_one()
        return RunCounts(
            succeeded=int(by_status.get("succeeded", 0)),
            failed=int(by_status.get("failed", 0)) - int(failed_repairing),
            quarantined=int(quarantined) - int(quarantined_repairing),
            repairing=int(failed_repairing) + quarantined_repairing,
        )

    def lag_rows(self, batch: str, run_id: str, plan: str | None = None) -> list[dict[str, Any]]:
        """The run's result rows with their queue timestamps (UTC-aware), for :func:`batchq.monitor.lag.run_lag`.
        One row per key: a few columns, read once per ledger look."""
        self._ensure()
        r = results_table.c
        with self._guard("read lag"), self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(*(r[c] for c in _LAG_COLUMNS)).where(r.batch == batch, r.run_id == run_id, *([r.plan == plan] if plan else []))
            ).all()
        return [{c: _utc(v) for c, v in zip(_LAG_COLUMNS, row)} for row in rows]

    def first_failures(self, batch: str, run_id: str, limit: int = 10, plan: str | None = None) -> list[dict[str, Any]]:
        """Up to ``limit`` failed (or quarantined) keys of the run with their errors, oldest first."""
        self._ensure()
        r, q = results_table.c, quarantine_table.c
        with self._guard("read failures"), self.engine.connect() as conn:
            failed = conn.execute(
                sa.select(r.key, r.error)
                .where(r.batch == batch, r.run_id == run_id, r.status == "failed", *([r.plan == plan] if plan else []))
                .order_by(r.updated_at, r.key)
                .limit(limit)
            ).all()
            out = [{"key": k, "error": e} for k, e in failed]
            if len(out) < limit:
                rows = conn.execute(
                    sa.select(q.key, q.reason)
                    .where(q.batch == batch, q.run_id == run_id, q.key.is_not(None), q.replayed_at.is_(None), *([q.plan == plan] if plan else []))
                    .order_by(q.quarantined_at, q.key)
                    .limit(limit - len(out))
                ).all()
                out += [{"key": k, "error": {"type": "Quarantined", "message": reason, "permanent": True}} for k, reason in rows]
        return out

    def set_expected(self, batch: str, run_id: str, expected: int, *, plan: str | None = None, dag_id: str | None = None) -> None:
        """Record the run's expected count and plan (idempotent; a re-plan updates both and reopens the
        run). Raise :class:`RunConflict` when another DAG already owns this batch name and run id."""
        self._ensure()
        now = _now()
        with self._guard("record expected"), self.engine.begin() as conn:
            prev = conn.execute(
                sa.select(runs_table.c.dag_id, runs_table.c.plan).where(runs_table.c.batch == batch, runs_table.c.run_id == run_id)
            ).first()
            if prev is not None and dag_id and prev.dag_id and prev.dag_id != dag_id:
                raise RunConflict(
                    f"run {run_id!r} of batch {batch!r} is already recorded by DAG {prev.dag_id!r}, not {dag_id!r}: "
                    "two DAGs use the same batch name; give each its own spec name"
                )
            values = {"expected": expected, "updated_at": now}
            if plan:
                values["plan"] = plan
            if dag_id:
                values["dag_id"] = dag_id
            if prev is not None and plan and prev.plan and prev.plan != plan:
                values.update(outcome="open", closed_at=None)  # a new plan of the run: counted afresh
            stmt = self._insert(runs_table).values(batch=batch, run_id=run_id, succeeded=0, failed=0, outcome="open", **values)
            conn.execute(stmt.on_conflict_do_update(index_elements=["batch", "run_id"], set_=values))

    def get_run(self, batch: str, run_id: str) -> dict[str, Any] | None:
        self._ensure()
        with self._guard("read run"), self.engine.connect() as conn:
            row = conn.execute(sa.select(runs_table).where(runs_table.c.batch == batch, runs_table.c.run_id == run_id)).mappings().first()
        return dict(row) if row else None

    def close_run(self, batch: str, run_id: str, succeeded: int, failed: int, outcome: str) -> None:
        self._ensure()
        now = _now()
        with self._guard("close run"), self.engine.begin() as conn:
            conn.execute(
                runs_table.update()
                .where(runs_table.c.batch == batch, runs_table.c.run_id == run_id)
                .values(succeeded=succeeded, failed=failed, outcome=outcome, closed_at=now, updated_at=now)
            )
            # The repairs of this run that were waiting for the ledger to close again: their "after".
            conn.execute(
                repairs_table.update()
                .where(repairs_table.c.batch == batch, repairs_table.c.run_id == run_id, repairs_table.c.settled_at.is_(None))
                .values(outcome_after=outcome, settled_at=now)
            )

    def quarantined(
        self,
        batch: str | None = None,
        run_id: str | None = None,
        *,
        include_replayed: bool = True,
        message_ids: Sequence[str] | None = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        """Quarantine rows, oldest first, optionally filtered."""
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
                quarantine_table.update().where(quarantine_table.c.message_id.in_(list(message_ids))).values(replayed_at=_now())
            )

    # -- repairs (``batchq rerun``) ------------------------------------------------------------------------
    def repair_candidates(self, batch: str, run_id: str, plan: str | None = None) -> list[dict[str, Any]]:
        """The run's failed keys and its quarantined keys without a result: what ``rerun --failed`` re-sends.
        Keys an open repair already re-sent are left out (a second ``--failed`` never double-sends; name
        such a key with ``--keys`` to send it again). Each: ``key``, ``status``
        (``failed``/``quarantined``), ``attempts``."""
        self._ensure()
        r, q, rk = results_table.c, quarantine_table.c, repair_keys_table.c
        own_r = [r.batch == batch, r.run_id == run_id] + ([r.plan == plan] if plan else [])
        own_q = [q.batch == batch, q.run_id == run_id, q.replayed_at.is_(None), q.key.is_not(None)] + ([q.plan == plan] if plan else [])
        with self._guard("read failed keys"), self.engine.connect() as conn:
            failed = conn.execute(
                sa.select(r.key, r.attempts)
                .where(*own_r, r.status == "failed", ~sa.exists().where(rk.key == r.key, rk.resolved_at.is_(None)))
                .order_by(r.key)
            ).all()
            quarantined = conn.execute(
                sa.select(q.key)
                .where(
                    *own_q,
                    ~sa.exists().where(results_table.c.key == q.key, *own_r),
                    ~sa.exists().where(rk.key == q.key, rk.resolved_at.is_(None)),
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
                own_q = [q.batch == batch, q.run_id == run_id, q.key.in_(chunk), q.replayed_at.is_(None)]
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
        now = _now()
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
        now = _now()
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
        now = _now()
        rk = repair_keys_table.c
        with self._guard("mark purged"), self.engine.begin() as conn:
            for repair_id, key in entries:
                conn.execute(repair_keys_table.update().where(rk.repair_id == repair_id, rk.key == key).values(dlq_purged_at=now))
            for repair_id, n in deleted_by_repair.items():
                conn.execute(repairs_table.update().where(repairs_table.c.id == repair_id).values(dlq_purged=repairs_table.c.dlq_purged + n))


def _resolve_repaired(conn: Any, rows: Sequence[dict[str, Any]], now: datetime) -> None:
    """The keys just applied close their open repair entries (status and attempts after): the ledger
    counts them again. Runs in the apply transaction, so a result and its repair closing commit together."""
    rk = repair_keys_table.c
    keys = [row["key"] for row in rows]
    open_keys = set(conn.execute(sa.select(rk.key).where(rk.key.in_(keys), rk.resolved_at.is_(None))).scalars().all())
    for row in rows:
        if row["key"] in open_keys:
            conn.execute(
                repair_keys_table.update()
                .where(rk.key == row["key"], rk.resolved_at.is_(None))
                .values(status_after=row["status"], attempts_after=row["attempts"], resolved_at=now)
            )


def _sqlite_wal(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.close()


class _Guard:
    """Turn "the database is unreachable" into :class:`SinkUnavailable` (transient, retried)."""

    def __init__(self, description: str, what: str):
        self.description, self.what = description, what

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc is not None and isinstance(exc, (OperationalError, DBAPIError)) and _is_transient(exc):
            raise SinkUnavailable(f"{self.description}: cannot {self.what}: {str(exc).splitlines()[0]}") from exc
        return False


def _is_transient(exc: DBAPIError) -> bool:
    # Connection loss, lock timeouts, server shutdown: all worth retrying. Integrity/programming errors
    # are bugs or bad data and must surface.
    if exc.connection_invalidated or isinstance(exc, OperationalError):
        return True
    name = type(getattr(exc, "orig", None)).__name__
    return name in {"OperationalError", "InterfaceError", "AdminShutdown", "ConnectionFailure", "ConnectionException"}
