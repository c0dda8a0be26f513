"""The results store: the SQL sink and the run ledger in one database (SQLAlchemy; SQLite or PostgreSQL).

Tables (created on first use):

``batchq_results``
    one row per ``key``: batch, run_id, job_type, status, output, error, attempts, worker, finished_at,
    updated_at. Upsert on ``key``; a ``succeeded`` result replaces a ``failed`` one, never the reverse,
    so duplicates and reordering cannot change the outcome.
``batchq_quarantine``
    malformed results (and results a sink rejected), one row per SQS message id, with the reason and the
    raw body: nothing is lost, nothing is retried forever.
``batchq_runs``
    per run: expected count (from the plan), the last counts seen and the outcome once closed. Because
    all of this lives in the sink database, the ledger survives retries of the drain task.
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

from batchq.messages import WorkResult
from batchq.drain.sink import SinkUnavailable, merge_duplicates

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
)


@dataclass(frozen=True)
class QuarantineEntry:
    """A results message that will not be applied, and why."""

    message_id: str
    reason: str
    body: str
    key: str | None = None
    batch: str | None = None
    run_id: str | None = None

    @classmethod
    def from_body(cls, message_id: str, body: str, reason: str, key: str | None = None) -> QuarantineEntry:
        """Best-effort: read ``key``/``batch``/``run_id`` from the body so the run's ledger can count it."""
        fields: dict[str, Any] = {}
        try:
            raw = json.loads(body)
            if isinstance(raw, dict):
                fields = {f: raw[f] for f in ("key", "batch", "run_id") if isinstance(raw.get(f), str)}
        except ValueError:
            pass
        return cls(
            message_id=message_id,
            reason=reason,
            body=body,
            key=key or fields.get("key"),
            batch=fields.get("batch"),
            run_id=fields.get("run_id"),
        )


@dataclass(frozen=True)
class RunCounts:
    """Distinct keys of one run in the store."""

    succeeded: int
    failed: int
    quarantined: int

    @property
    def closed(self) -> int:
        return self.succeeded + self.failed + self.quarantined


def _now() -> datetime:
    return datetime.now(timezone.utc)


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
            self._created = True

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
                "reason": q.reason[:4000],
                "body": q.body,
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
                    set_={c: excluded[c] for c in ("status", "output", "error", "attempts", "worker", "finished_at", "updated_at", "job_type")},
                    # Only a success may replace a failure: a late failed duplicate never undoes a success.
                    where=sa.and_(results_table.c.status == "failed", excluded.status == "succeeded"),
                )
                conn.execute(stmt, rows)
            if qrows:
                conn.execute(self._insert(quarantine_table).on_conflict_do_nothing(index_elements=["message_id"]), qrows)

    # -- the ledger's reads and writes ------------------------------------------------------------------
    def counts(self, batch: str, run_id: str) -> RunCounts:
        """Distinct keys of the run by status; quarantined keys that never got a real result count apart."""
        self._ensure()
        r, q = results_table.c, quarantine_table.c
        with self._guard("count results"), self.engine.connect() as conn:
            by_status = dict(
                conn.execute(
                    sa.select(r.status, sa.func.count()).where(r.batch == batch, r.run_id == run_id).group_by(r.status)
                ).all()
            )
            quarantined = conn.execute(
                sa.select(sa.func.count(sa.distinct(q.key))).where(
                    q.batch == batch,
                    q.run_id == run_id,
                    q.key.is_not(None),
                    ~sa.exists().where(results_table.c.key == q.key),
                )
            ).scalar_one()
        return RunCounts(int(by_status.get("succeeded", 0)), int(by_status.get("failed", 0)), int(quarantined))

    def first_failures(self, batch: str, run_id: str, limit: int = 10) -> list[dict[str, Any]]:
        """Up to ``limit`` failed (or quarantined) keys of the run with their errors, oldest first."""
        self._ensure()
        r, q = results_table.c, quarantine_table.c
        with self._guard("read failures"), self.engine.connect() as conn:
            failed = conn.execute(
                sa.select(r.key, r.error)
                .where(r.batch == batch, r.run_id == run_id, r.status == "failed")
                .order_by(r.updated_at, r.key)
                .limit(limit)
            ).all()
            out = [{"key": k, "error": e} for k, e in failed]
            if len(out) < limit:
                rows = conn.execute(
                    sa.select(q.key, q.reason)
                    .where(q.batch == batch, q.run_id == run_id, q.key.is_not(None))
                    .order_by(q.quarantined_at, q.key)
                    .limit(limit - len(out))
                ).all()
                out += [{"key": k, "error": {"type": "Quarantined", "message": reason, "permanent": True}} for k, reason in rows]
        return out

    def set_expected(self, batch: str, run_id: str, expected: int) -> None:
        """Record the run's expected count (idempotent; a re-plan with a different count updates it)."""
        self._ensure()
        now = _now()
        stmt = self._insert(runs_table).values(batch=batch, run_id=run_id, expected=expected, succeeded=0, failed=0, outcome="open", updated_at=now)
        stmt = stmt.on_conflict_do_update(index_elements=["batch", "run_id"], set_={"expected": expected, "updated_at": now})
        with self._guard("record expected"), self.engine.begin() as conn:
            conn.execute(stmt)

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

    def quarantined(self, batch: str | None = None, run_id: str | None = None) -> list[dict[str, Any]]:
        self._ensure()
        q = quarantine_table.c
        stmt = sa.select(quarantine_table).order_by(q.quarantined_at)
        if batch is not None:
            stmt = stmt.where(q.batch == batch)
        if run_id is not None:
            stmt = stmt.where(q.run_id == run_id)
        with self._guard("read quarantine"), self.engine.connect() as conn:
            return [dict(m) for m in conn.execute(stmt).mappings().all()]


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
