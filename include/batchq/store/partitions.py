"""The partition ledger: per-partition counts of one run, derived from its results, and when each
partition closed and was announced.

``batchq_partitions`` holds one row per (batch, run, partition key): expected (from the plan,
arithmetically: :meth:`batchq.plan.Plan.partition_expected`), succeeded, failed, the outcome once every
key of the partition is final, when it closed, and its dwell figures (input wait, time to its last
result). It is *derived*: :meth:`PartitionLedger.refresh` recounts from ``batchq_results`` (distinct
keys of the run's plan, the same rule as the run ledger), so duplicates, re-deliveries and repairs can
never skew it, and a crashed refresh is simply redone.

Which partition a result belongs to comes from the payload's ``dims`` the store keeps with each result;
a result without dims (an older worker) is placed by its key, from a key → partition map streamed once
from the plan (only when such a result exists).

Announcement (the partitioned results event) is a claim: :meth:`PartitionLedger.claim` marks the
closed, successful, unannounced partitions with a wave number in one UPDATE, so concurrent waves never
announce a partition twice, and a retried wave gets back exactly the partitions it claimed before.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa

from batchq.monitor.lag import percentile
from batchq.partitions import partition_key
from batchq.store.schema import partitions_table

#: Columns of the partitions XCom / table rows, in order (the Batch view and ``batchq ledger`` read them).
ROW_FIELDS = ("partition", "expected", "succeeded", "failed", "pending", "outcome", "closed_at", "input_wait_s", "time_to_last_s")


def _utc(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


@dataclass
class PartitionStatus:
    """One partition of one run, as the ledger sees it now.

    :param partition: the partition key (``acme`` or ``acme|eu``).
    :param closed_at: when every key of the partition was first final (``None`` while open).
    :param input_wait_s: median input-queue wait of the partition's payloads (enqueue → first receive).
    :param time_to_last_s: from the run's first enqueue to the partition's last result applied: when
        the tenant's results were all in.
    """

    partition: str
    expected: int
    succeeded: int = 0
    failed: int = 0
    outcome: str = "open"
    closed_at: datetime | None = None
    input_wait_s: float | None = None
    time_to_last_s: float | None = None
    announced_wave: int | None = None

    @property
    def pending(self) -> int:
        return max(0, self.expected - self.succeeded - self.failed)

    @property
    def closed(self) -> bool:
        return self.outcome != "open"

    def counts(self) -> dict[str, Any]:
        """What a partitioned results event carries for this partition."""
        return {
            "expected": self.expected,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "outcome": self.outcome,
            "closed_at": self.closed_at.isoformat() if self.closed_at else None,
        }

    def row(self) -> list[Any]:
        """Values in :data:`ROW_FIELDS` order (JSON-ready)."""
        d = {**asdict(self), "pending": self.pending, "closed_at": self.closed_at.timestamp() if self.closed_at else None}
        return [round(d[f], 3) if isinstance(d[f], float) else d[f] for f in ROW_FIELDS]


def partition_rows_xcom(statuses: Iterable[PartitionStatus]) -> dict[str, Any]:
    """The partitions as one compact JSON value (XCom ``partitions``): fields once, a row per partition."""
    return {"fields": list(ROW_FIELDS), "rows": [s.row() for s in statuses]}


class PartitionLedger:
    """Per-partition counts of one run in the results store.

    :param engine: the store's SQLAlchemy engine (:attr:`batchq.store.ResultsStore.engine`).
    :param batch: batch name.
    :param run_id: run id.
    :param partition_by: the spec's partition dimensions.
    :param expected: expected payloads per partition key (``Plan.partition_expected()``); ``None``
        reads them back from the table (the drain recorded them).
    :param plan_fingerprint: count only results of this plan (``None``: every result of the run id).
    :param tolerated: failures a partition of ``n`` expected payloads may have and still succeed
        (the caller applies the spec's tolerance to the partition: the run ledger's
        ``tolerated_failures(n, count, percentage)``); default none.
    :param key_partitions: builds ``{key: partition}`` for results without dims (called at most once).
    """

    def __init__(
        self,
        engine: sa.engine.Engine,
        batch: str,
        run_id: str,
        partition_by: Iterable[str],
        expected: Mapping[str, int] | None = None,
        *,
        plan_fingerprint: str | None = None,
        tolerated: Callable[[int], int] | None = None,
        key_partitions: Any = None,
    ):
        self.engine, self.batch, self.run_id = engine, batch, run_id
        self.partition_by = list(partition_by)
        self.plan = plan_fingerprint
        self.tolerated = tolerated or (lambda expected: 0)
        self._key_partitions_factory = key_partitions
        self._key_partitions: dict[str, str] | None = None
        self._lock = threading.Lock()
        partitions_table.create(engine, checkfirst=True)
        self._results_table: sa.Table | None = None
        if expected is not None:
            self._record_expected(expected)

    # -- expected ------------------------------------------------------------------------------------
    def _record_expected(self, expected: Mapping[str, int]) -> None:
        """Insert a row per partition not recorded yet (a retried drain keeps the counts it has)."""
        now = datetime.now(timezone.utc)
        t = partitions_table
        with self.engine.begin() as conn:
            have = set(conn.scalars(sa.select(t.c.partition).where(t.c.batch == self.batch, t.c.run_id == self.run_id)))
            new = [
                {"batch": self.batch, "run_id": self.run_id, "partition": k, "plan": self.plan, "expected": int(n),
                 "succeeded": 0, "failed": 0, "outcome": "open", "updated_at": now}
                for k, n in expected.items() if k not in have
            ]
            for start in range(0, len(new), 1000):
                conn.execute(sa.insert(t), new[start : start + 1000])

    # -- reading -------------------------------------------------------------------------------------
    def statuses(self) -> list[PartitionStatus]:
        """The recorded partitions (as of the last :meth:`refresh`), by key."""
        t = partitions_table
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(t).where(t.c.batch == self.batch, t.c.run_id == self.run_id).order_by(t.c.partition)
            ).mappings().all()
        started = min((_utc(r["first_enqueued_at"]) for r in rows if r["first_enqueued_at"] is not None), default=None)
        out = []
        for r in rows:
            last = _utc(r["last_result_at"])
            out.append(
                PartitionStatus(
                    partition=r["partition"], expected=r["expected"], succeeded=r["succeeded"], failed=r["failed"],
                    outcome=r["outcome"], closed_at=_utc(r["closed_at"]), input_wait_s=r["input_wait_p50_s"],
                    # Known once the partition closed: until then its "last result" is only the latest so far.
                    time_to_last_s=(last - started).total_seconds() if last and started and r["outcome"] != "open" else None,
                    announced_wave=r["announced_wave"],
                )
            )
        return out

    # -- deriving from results -----------------------------------------------------------------------
    @property
    def _results(self) -> sa.Table:
        # Reflected, not imported: the results table belongs to the store's schema module, and a
        # store written before results carried dims has no dims column (keys place those results).
        if self._results_table is None:
            self._results_table = sa.Table("batchq_results", sa.MetaData(), autoload_with=self.engine)
        return self._results_table

    @property
    def _has_dims(self) -> bool:
        return "dims" in self._results.c

    def _result_rows(self) -> list[Mapping[str, Any]]:
        r = self._results
        cols = [r.c.key, r.c.status, r.c.enqueued_at, r.c.first_received_at, r.c.applied_at, r.c.finished_at]
        if self._has_dims:
            cols.append(r.c.dims)
        where = [r.c.batch == self.batch, r.c.run_id == self.run_id]
        if self.plan is not None:
            where.append(r.c.plan == self.plan)
        with self.engine.connect() as conn:
            return conn.execute(sa.select(*cols).where(*where)).mappings().all()

    def _partition_of(self, row: Mapping[str, Any]) -> str | None:
        dims = row.get("dims") if self._has_dims else None
        if isinstance(dims, Mapping):
            try:
                return partition_key(dims, self.partition_by)
            except KeyError:
                return None
        if self._key_partitions is None:
            self._key_partitions = dict(self._key_partitions_factory()) if self._key_partitions_factory else {}
        return self._key_partitions.get(row["key"])

    def refresh(self) -> list[PartitionStatus]:
        """Recount every partition from the run's results, record what changed (closing partitions
        whose keys are all final), and return the statuses. Safe to call from several threads and
        processes: counts are recomputed, never incremented; ``closed_at`` is kept once set."""
        with self._lock:
            return self._refresh()

    def _refresh(self) -> list[PartitionStatus]:
        agg: dict[str, dict[str, Any]] = {}
        for row in self._result_rows():
            part = self._partition_of(row)
            if part is None:
                continue  # not this plan's key: never counts (the run ledger's rule)
            a = agg.setdefault(part, {"succeeded": 0, "failed": 0, "first": None, "last": None, "waits": []})
            a["succeeded" if row["status"] == "succeeded" else "failed"] += 1
            enq, first, done = _utc(row["enqueued_at"]), _utc(row["first_received_at"]), _utc(row["applied_at"] or row["finished_at"])
            if enq is not None:
                a["first"] = enq if a["first"] is None else min(a["first"], enq)
                if first is not None:
                    a["waits"].append(max(0.0, (first - enq).total_seconds()))
            if done is not None:
                a["last"] = done if a["last"] is None else max(a["last"], done)
        now = datetime.now(timezone.utc)
        t = partitions_table
        with self.engine.begin() as conn:
            recorded = conn.execute(
                sa.select(t.c.partition, t.c.expected, t.c.outcome, t.c.closed_at, t.c.succeeded, t.c.failed)
                .where(t.c.batch == self.batch, t.c.run_id == self.run_id)
            ).mappings().all()
            for rec in recorded:
                a = agg.get(rec["partition"])
                if a is None:
                    continue
                succeeded, failed = a["succeeded"], a["failed"]
                final = succeeded + failed >= rec["expected"]
                outcome = "open"
                if final:
                    ok = failed <= self.tolerated(rec["expected"])
                    outcome = "succeeded" if ok else "failed"
                values: dict[str, Any] = {
                    "succeeded": succeeded, "failed": failed, "outcome": outcome, "updated_at": now,
                    "first_enqueued_at": a["first"], "last_result_at": a["last"],
                    "input_wait_p50_s": percentile(sorted(a["waits"]), 50),
                }
                # closed_at is when the partition first closed; a repair that re-opens it clears it.
                values["closed_at"] = (rec["closed_at"] or now) if final else None
                conn.execute(
                    sa.update(t).where(t.c.batch == self.batch, t.c.run_id == self.run_id, t.c.partition == rec["partition"]).values(**values)
                )
        return self.statuses()

    # -- announcing ----------------------------------------------------------------------------------
    def claim(self, wave: int) -> list[PartitionStatus]:
        """Mark every closed, successful, unannounced partition as announced by ``wave`` and return all
        the partitions ``wave`` holds (those claimed now and by an earlier try of the same wave)."""
        t = partitions_table
        now = datetime.now(timezone.utc)
        with self.engine.begin() as conn:
            conn.execute(
                sa.update(t)
                .where(t.c.batch == self.batch, t.c.run_id == self.run_id, t.c.outcome == "succeeded", t.c.announced_wave.is_(None))
                .values(announced_wave=wave, announced_at=now)
            )
        return [s for s in self.statuses() if s.announced_wave == wave]


def wave_due(wave: int, waves: int, statuses: list[PartitionStatus]) -> bool:
    """Wave ``wave`` of ``waves`` announces once ``(wave + 1) / waves`` of the partitions have closed
    (the last wave: all of them). Partitions close in any order; each wave takes what has closed."""
    if not statuses:
        return False
    closed = sum(1 for s in statuses if s.closed)
    need = -(-(wave + 1) * len(statuses) // waves)  # ceil
    return closed >= need


__all__ = ["PartitionLedger", "PartitionStatus", "ROW_FIELDS", "partition_rows_xcom", "partitions_table", "wave_due"]
