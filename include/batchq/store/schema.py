"""The results store's tables, the columns added since the first release, and their migration.

``batchq_results``
    one row per ``key``: the effective result (batch, run_id, plan, dims, status, output, error, attempts,
    worker, finished_at) and the payload's queue timestamps (:mod:`batchq.monitor.lag`). Which result
    of a key wins is :func:`batchq.store.rules.replaces`.
``batchq_quarantine``
    results that are not applied, one row per SQS message id, with the reason and the raw body. A
    ``stray`` row (a key the plan cannot produce, a stale plan's result) never counts in any ledger.
``batchq_runs``
    per run: expected count, plan fingerprint, the resolved spec (plan membership), the owning DAG, the
    last counts and the outcome once closed.
``batchq_partitions``
    per run and partition key (spec ``partition_by``): expected, succeeded, failed, outcome, when it
    closed, dwell, the wave that announced it; derived from ``batchq_results`` by
    :mod:`batchq.store.partitions`.
``batchq_repairs`` / ``batchq_repair_keys``
    one row per repair of a run and one per re-sent key (status before; status after once a result
    newer than the repair is applied).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa

#: Dialects the store runs on. MySQL and MariaDB share SQLAlchemy's ``mysql`` dialect (``mariadb://`` URLs
#: name the same one).
MYSQL_FAMILY = ("mysql", "mariadb")
SUPPORTED_DIALECTS = ("sqlite", "postgresql", *MYSQL_FAMILY)


class UtcDateTime(sa.types.TypeDecorator):
    """A timestamp column: timezone-aware on PostgreSQL; on MySQL/MariaDB ``DATETIME(6)`` holding UTC.

    MySQL's plain ``DATETIME`` keeps whole seconds (a result and a repair in the same second would
    tie), and MariaDB refuses a literal with an offset, so aware values are stored as naive UTC there —
    as SQLite stores them.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Any) -> Any:
        if dialect.name in MYSQL_FAMILY:
            from sqlalchemy.dialects.mysql import DATETIME

            return dialect.type_descriptor(DATETIME(fsp=6))
        return dialect.type_descriptor(sa.DateTime(timezone=True))

    def process_bind_param(self, value: Any, dialect: Any) -> Any:
        if value is not None and dialect.name in MYSQL_FAMILY and value.tzinfo is not None:
            return value.astimezone(timezone.utc).replace(tzinfo=None)
        return value


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
    sa.Column("finished_at", UtcDateTime()),
    sa.Column("updated_at", UtcDateTime(), nullable=False),
    # The plan fingerprint of the payload (None for bodies from before plans were carried).
    sa.Column("plan", sa.String(64)),
    # Queue lag of the payload: input sent / first received (SQS), handler start, result sent, applied.
    sa.Column("enqueued_at", UtcDateTime()),
    sa.Column("first_received_at", UtcDateTime()),
    sa.Column("started_at", UtcDateTime()),
    sa.Column("result_sent_at", UtcDateTime()),
    sa.Column("applied_at", UtcDateTime()),
    # The payload's dims (None for results of older workers): plan membership, and what the key stands for.
    sa.Column("dims", sa.JSON),
    sa.Index("ix_batchq_results_run", "batch", "run_id", "status"),
    sa.Index("ix_batchq_results_applied", "applied_at"),
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
    sa.Column("quarantined_at", UtcDateTime(), nullable=False),
    sa.Column("plan", sa.String(64)),
    # Set by `batchq quarantine replay` once the body was applied through the sink.
    sa.Column("replayed_at", UtcDateTime()),
    # True: not work of the run's plan (a key the plan cannot produce, a stale plan): never counts.
    sa.Column("stray", sa.Boolean),
    sa.Index("ix_batchq_quarantine_run", "batch", "run_id"),
    sa.Index("ix_batchq_quarantine_at", "quarantined_at"),
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
    sa.Column("closed_at", UtcDateTime()),
    sa.Column("updated_at", UtcDateTime(), nullable=False),
    # The plan the ledger counts and the DAG that owns the run (another DAG is refused).
    sa.Column("plan", sa.String(64)),
    sa.Column("dag_id", sa.String(250)),
    # The resolved spec of that plan (JSON text): lets any drainer decide plan membership of a result.
    sa.Column("spec", sa.Text),
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
    sa.Column("requested_at", UtcDateTime(), nullable=False),
    sa.Column("keys", sa.Integer, nullable=False),
    sa.Column("sent", sa.Integer, nullable=False, default=0),
    sa.Column("keep_dlq", sa.Boolean, nullable=False, default=False),
    sa.Column("dlq_purged", sa.Integer, nullable=False, default=0),
    sa.Column("outcome_before", sa.String(16)),
    sa.Column("outcome_after", sa.String(16)),
    sa.Column("settled_at", UtcDateTime()),
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
    # Set when a result newer than the repair is applied (or ``not_sent`` / ``superseded``).
    sa.Column("status_after", sa.String(16)),
    sa.Column("attempts_after", sa.Integer),
    sa.Column("resolved_at", UtcDateTime()),
    sa.Column("dlq_purged_at", UtcDateTime()),
    sa.Index("ix_batchq_repair_keys_key", "key", "resolved_at"),
    sa.Index("ix_batchq_repair_keys_run", "batch", "run_id"),
)

partitions_table = sa.Table(
    "batchq_partitions",
    metadata,
    sa.Column("batch", sa.String(64), primary_key=True),
    sa.Column("run_id", sa.String(250), primary_key=True),
    sa.Column("partition", sa.String(250), primary_key=True),
    sa.Column("plan", sa.String(64)),
    sa.Column("expected", sa.Integer, nullable=False),
    sa.Column("succeeded", sa.Integer, nullable=False, default=0),
    sa.Column("failed", sa.Integer, nullable=False, default=0),
    # open | succeeded | failed (failed = final with failures beyond the tolerance)
    sa.Column("outcome", sa.String(16), nullable=False, default="open"),
    sa.Column("closed_at", sa.DateTime(timezone=True)),
    sa.Column("first_enqueued_at", sa.DateTime(timezone=True)),
    sa.Column("last_result_at", sa.DateTime(timezone=True)),
    sa.Column("input_wait_p50_s", sa.Float),
    sa.Column("announced_wave", sa.Integer),
    sa.Column("announced_at", sa.DateTime(timezone=True)),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)


#: Columns added after the first release (all nullable): created on existing tables by :func:`migrate`.
ADDED_COLUMNS = {
    "batchq_results": ("plan", "enqueued_at", "first_received_at", "started_at", "result_sent_at", "applied_at", "dims"),
    "batchq_quarantine": ("plan", "replayed_at", "stray"),
    "batchq_runs": ("plan", "dag_id", "spec"),
}
#: Indexes added after the first release (retention scans by time).
ADDED_INDEXES = ("ix_batchq_results_applied", "ix_batchq_quarantine_at")


def create(engine: sa.Engine) -> None:
    """Create missing tables, then add missing columns and indexes. A concurrent creator in another
    process is tolerated as long as everything exists afterwards."""
    try:
        metadata.create_all(engine)
    except sa.exc.DBAPIError:
        if not set(metadata.tables) <= set(sa.inspect(engine).get_table_names()):
            raise
    migrate(engine)


def migrate(engine: sa.Engine) -> None:
    """Bring tables created by an older batchq up to date (nullable columns, indexes)."""
    inspector = sa.inspect(engine)
    for table_name, names in ADDED_COLUMNS.items():
        present = {c["name"] for c in inspector.get_columns(table_name)}
        for name in names:
            if name in present:
                continue
            column = metadata.tables[table_name].c[name]
            ddl = f"ALTER TABLE {table_name} ADD COLUMN {name} {column.type.compile(dialect=engine.dialect)}"
            try:
                with engine.begin() as conn:
                    conn.execute(sa.text(ddl))
            except sa.exc.DBAPIError:
                if name not in {c["name"] for c in sa.inspect(engine).get_columns(table_name)}:
                    raise
    for table in metadata.tables.values():
        present = {i["name"] for i in sa.inspect(engine).get_indexes(table.name)}
        for index in table.indexes:
            if index.name in ADDED_INDEXES and index.name not in present:
                try:
                    index.create(engine)
                except sa.exc.DBAPIError:
                    if index.name not in {i["name"] for i in sa.inspect(engine).get_indexes(table.name)}:
                        raise


def insert(dialect: str, table: sa.Table):
    """The dialect's INSERT with ``ON CONFLICT`` (``ON DUPLICATE KEY``) support."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table)
    if dialect in MYSQL_FAMILY:
        from sqlalchemy.dialects.mysql import insert as mysql_insert

        return mysql_insert(table)
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table)


def inserted(dialect: str, stmt: Any) -> Any:
    """The proposed row of an upsert: ``excluded`` (PostgreSQL, SQLite), ``VALUES()`` (MySQL/MariaDB)."""
    return stmt.inserted if dialect in MYSQL_FAMILY else stmt.excluded


#: MySQL/MariaDB session variable holding one upsert row's ``where`` (see :func:`on_conflict_do_update`).
_UPSERT_WINS = "@batchq_upsert_wins"


def on_conflict_do_nothing(dialect: str, stmt: Any, index_elements: list[str]) -> Any:
    """Insert, keeping the existing row on a key conflict."""
    if dialect in MYSQL_FAMILY:
        # Not INSERT IGNORE: that would also turn real errors (a value too long) into warnings.
        first = index_elements[0]
        return stmt.on_duplicate_key_update({first: stmt.table.c[first]})
    return stmt.on_conflict_do_nothing(index_elements=index_elements)


def on_conflict_do_update(dialect: str, stmt: Any, index_elements: list[str], set_: dict[str, Any], where: Any = None) -> Any:
    """Insert, or update the existing row with ``set_`` — only where ``where`` holds (old columns are the
    table's, the proposed row's :func:`inserted`).

    MySQL/MariaDB have no ``WHERE`` on ``ON DUPLICATE KEY UPDATE``, and evaluate its assignments left to
    right, each seeing the columns already assigned. So the condition is evaluated once, first, against
    the old row, into a session variable (re-set for every row of the statement), and every column takes
    ``IF(<that>, new, old)``.
    """
    if dialect not in MYSQL_FAMILY:
        return stmt.on_conflict_do_update(index_elements=index_elements, set_=set_, where=where)
    if where is None:
        return stmt.on_duplicate_key_update(set_)
    table = stmt.table
    first = index_elements[0]
    wins = sa.literal_column(_UPSERT_WINS)
    decide = sa.func.IF(wins.op(":=")(where), table.c[first], table.c[first])
    assignments = [(first, decide)] + [(name, sa.func.IF(wins, value, table.c[name])) for name, value in set_.items()]
    return stmt.on_duplicate_key_update(assignments)


def column_lengths(table: sa.Table = results_table) -> dict[str, int]:
    """Longest value of each string column of ``table`` (one truth for the checks and the quarantine)."""
    return {c.name: c.type.length for c in table.columns if getattr(c.type, "length", None)}


def utc(value: Any) -> Any:
    """SQLite returns naive datetimes (stored as UTC); PostgreSQL aware ones."""
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value
