"""The results store over one SQLAlchemy engine (SQLite or PostgreSQL): the one write path.

:meth:`ResultsStore.apply` records a batch of results and quarantine entries in **one** transaction:
plan membership (a key the run's plan cannot produce is quarantined ``not in plan``), the winner of
each key (:func:`batchq.store.rules.replaces`; a stale plan's result that loses is quarantined), the
upsert, and the repairs the results resolve. Reads of the ledger, the quarantine and the repairs are
mixed in from their modules; nothing else touches these tables.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError, OperationalError

from batchq.errors import SinkUnavailable
from batchq.messages import WorkResult
from batchq.store import schema
from batchq.store.quarantine import NOT_IN_PLAN, QuarantineEntry, QuarantineReads
from batchq.store.repair_records import RepairRecords, resolve_repaired
from batchq.store.rules import replaces
from batchq.store.runs import RunRecords
from batchq.store.schema import results_table, runs_table

#: Columns a winning result replaces (everything but the key and the run it belongs to).
_UPSERTED = (
    "status", "output", "error", "attempts", "worker", "finished_at", "updated_at", "job_type", "plan", "dims",
    "enqueued_at", "first_received_at", "started_at", "result_sent_at", "applied_at",
)
_CHUNK = 500


class ResultsStore(RunRecords, QuarantineReads, RepairRecords):
    """Results, run ledger, quarantine and repairs in one database. Connection failures raise
    :class:`~batchq.errors.SinkUnavailable` so the drainer backs off and retries.

    :param url: SQLAlchemy URL, e.g. ``sqlite:///results.db`` or ``postgresql+psycopg://user@host/db``.
    :param engine_kwargs: passed to :func:`sqlalchemy.create_engine`.
    """

    def __init__(self, url: str | sa.engine.URL, **engine_kwargs: Any):
        url_obj = sa.engine.make_url(url)
        self.dialect = url_obj.get_backend_name()
        if self.dialect not in schema.SUPPORTED_DIALECTS:
            raise ValueError(
                f"store URL {url_obj.render_as_string(hide_password=True)}: the results store runs on SQLite, PostgreSQL "
                f"and MySQL/MariaDB, not {self.dialect}"
            )
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
            # default synchronous=FULL keeps a commit durable before the message is deleted.
            sa.event.listen(self.engine, "connect", _sqlite_wal)
        self.description = f"sql:{url_obj.render_as_string(hide_password=True)}"
        self._created = False
        self._create_lock = threading.Lock()
        self._members: dict[str, Any] = {}

    # -- lifecycle ---------------------------------------------------------------------------------
    def create_tables(self) -> None:
        """Create and migrate the tables (safe under concurrency: threads share one lock, another
        process creating them at the same time is tolerated)."""
        with self._create_lock, self._guard("create tables"):
            schema.create(self.engine)
            self._created = True

    def _ensure(self) -> None:
        if not self._created:
            self.create_tables()

    def close(self) -> None:
        self.engine.dispose()

    def _bound(self, conn: Any, timeout_s: float | None) -> None:
        """Bound this transaction's statements and lock waits (PostgreSQL; ``SET LOCAL`` ends with it)."""
        if timeout_s is None or self.dialect != "postgresql":
            return
        ms = max(1, int(timeout_s * 1000))
        conn.exec_driver_sql(f"SET LOCAL statement_timeout = {ms}")
        conn.exec_driver_sql(f"SET LOCAL lock_timeout = {ms}")

    def _guard(self, what: str) -> _Guard:
        return _Guard(self.description, what)

    def _insert(self, table: sa.Table) -> Any:
        return schema.insert(self.dialect, table)

    @staticmethod
    def _now() -> datetime:
        return datetime.now(timezone.utc)

    # -- the one write -----------------------------------------------------------------------------
    def apply(self, results: Sequence[WorkResult], quarantined: Iterable[QuarantineEntry] = (), *, timeout_s: float | None = None) -> None:
        """Record ``results`` and ``quarantined`` in one transaction (committed on return).

        :param timeout_s: on PostgreSQL, the transaction's ``statement_timeout`` and ``lock_timeout`` (the
            time left before the drain's deadline): a lock held elsewhere cannot hold a drain thread past
            its deadline; the cancelled write is :class:`~batchq.errors.SinkUnavailable` (handed back).
        """
        self._ensure()
        now = self._now()
        qrows = {q.message_id: q.row(now) for q in quarantined}
        if not results and not qrows:
            return
        with self._guard("write results"), self.engine.begin() as conn:
            self._bound(conn, timeout_s)
            plans = self._current_plans(conn, {(r.batch, r.run_id) for r in results})
            state = self._stored(conn, sorted({r.key for r in results}))
            winners: dict[str, WorkResult] = {}
            counted: list[WorkResult] = []
            for r in results:
                current, members = plans.get((r.batch, r.run_id), (None, None))
                if members is not None and r.plan == current and not members.produces(r.key, r.dims):
                    self._stray(qrows, r, NOT_IN_PLAN, now)
                    continue
                held = state.get(r.key)
                if replaces(held, r, current):
                    winners[r.key] = r
                    state[r.key] = {"plan": r.plan, "status": r.status}
                elif current is not None and r.plan != current and held is not None and held["plan"] == current:
                    self._stray(qrows, r, f"result of plan {r.plan}; the run counts plan {current}", now)
                    counted.append(r)  # not counted by the run, yet the result an open repair of its plan waits for
                    continue
                counted.append(r)  # the repairs it may end are matched on their own plan
            if winners:
                conn.execute(self._upsert(), [_row(r, now) for r in winners.values()])
            if counted:
                resolve_repaired(conn, counted, now)
            if qrows:
                stmt = schema.on_conflict_do_nothing(self.dialect, self._insert(schema.quarantine_table), ["message_id"])
                conn.execute(stmt, list(qrows.values()))

    def _upsert(self) -> Any:
        stmt = self._insert(results_table)
        new, old = schema.inserted(self.dialect, stmt), results_table.c
        # A key belongs to one (batch, run_id) (it hashes them), so on a conflict the old row names the same
        # run: look the run up from it on every dialect (MySQL/MariaDB allow no VALUES() inside a subquery,
        # and naming the ``excluded`` alias would put it in the subquery's FROM: a join with the whole
        # table, "more than one row returned by a subquery" on PostgreSQL, an arbitrary row on SQLite).
        # The old row's columns are named as text: as Column objects SQLAlchemy would list the table in
        # the subquery's FROM (correlation does not reach into an INSERT's conflict clause).
        row_batch, row_run = (sa.literal_column(f"{results_table.name}.{c}") for c in ("batch", "run_id"))
        current = sa.select(runs_table.c.plan).where(runs_table.c.batch == row_batch, runs_table.c.run_id == row_run).scalar_subquery()
        # Constants inline, not bound: MySQLdb's executemany binds only the VALUES row, not the update clause.
        succeeded, failed = sa.literal_column("'succeeded'"), sa.literal_column("'failed'")
        same_plan = sa.not_(old.plan.is_distinct_from(new.plan))
        never_worse = sa.not_(sa.and_(old.status == succeeded, new.status == failed))
        # The SQL twin of rules.replaces, so two drainers racing on one key agree with the rule.
        return schema.on_conflict_do_update(
            self.dialect,
            stmt,
            ["key"],
            set_={c: new[c] for c in _UPSERTED},
            where=sa.or_(
                sa.and_(same_plan, old.status == failed, new.status == succeeded),
                sa.and_(
                    sa.not_(same_plan),
                    sa.case(
                        (current.is_(None), never_worse),
                        (new.plan == current, sa.true()),
                        (old.plan == current, sa.false()),
                        else_=never_worse,
                    ),
                ),
            ),
        )

    def _stored(self, conn: Any, keys: list[str]) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        c = results_table.c
        for start in range(0, len(keys), _CHUNK):
            for key, plan, status in conn.execute(sa.select(c.key, c.plan, c.status).where(c.key.in_(keys[start : start + _CHUNK]))):
                out[key] = {"plan": plan, "status": status}
        return out

    def _current_plans(self, conn: Any, runs: set[tuple[str, str]]) -> dict[tuple[str, str], tuple[str | None, Any]]:
        """``(batch, run_id) -> (plan the run counts, its PlanMembership or None)`` for recorded runs."""
        from batchq.store.rules import PlanMembership

        out = {}
        c = runs_table.c
        for batch, run_id in runs:
            row = conn.execute(sa.select(c.plan, c.spec, c.dag_id).where(c.batch == batch, c.run_id == run_id)).first()
            if row is None or row.plan is None:
                continue
            members = self._members.get(row.plan)
            if members is None and row.spec:
                members = PlanMembership(row.spec, run_id, row.dag_id)
                if members.fingerprint != row.plan:
                    members = None  # a spec that does not rebuild this plan cannot judge membership
                elif len(self._members) < 64:
                    self._members[row.plan] = members
            out[(batch, run_id)] = (row.plan, members)
        return out

    @staticmethod
    def _stray(qrows: dict[str, dict[str, Any]], r: WorkResult, reason: str, now: datetime) -> None:
        # A deterministic id: the same stray result delivered again is one quarantine row.
        message_id = f"stray:{r.key}:{r.plan}:{r.status}"[:128]
        entry = QuarantineEntry.from_body(message_id, r.model_dump_json(), reason, r.key, stray=True)
        qrows.setdefault(entry.message_id, entry.row(now))


def _row(r: WorkResult, now: datetime) -> dict[str, Any]:
    return {
        "key": r.key, "batch": r.batch, "run_id": r.run_id, "job_type": r.job_type, "status": r.status, "output": r.output,
        "error": r.error.model_dump() if r.error else None, "attempts": r.attempts, "worker": r.worker,
        "finished_at": r.finished_at, "updated_at": now, "plan": r.plan, "dims": r.dims, "enqueued_at": r.enqueued_at,
        "first_received_at": r.first_received_at, "started_at": r.started_at, "result_sent_at": r.result_sent_at, "applied_at": now,
    }


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

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        if exc is not None and isinstance(exc, (OperationalError, DBAPIError)) and _is_transient(exc):
            raise SinkUnavailable(f"{self.description}: cannot {self.what}: {str(exc).splitlines()[0]}") from exc
        return False


def _is_transient(exc: DBAPIError) -> bool:
    # Connection loss, lock timeouts, server shutdown: worth retrying. Integrity/programming errors are
    # bugs or bad data and must surface.
    if exc.connection_invalidated or isinstance(exc, OperationalError):
        return True
    name = type(getattr(exc, "orig", None)).__name__
    return name in {"OperationalError", "InterfaceError", "AdminShutdown", "ConnectionFailure", "ConnectionException"}
