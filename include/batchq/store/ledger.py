"""The run ledger: has every planned payload of a run ended in exactly one effective result, and did the
run fail more than its spec tolerates?

Expected comes from the plan (arithmetic, known up front); succeeded/failed are distinct keys in the
results store, so duplicate deliveries never inflate them. The decision is pure (:func:`evaluate`);
:class:`RunLedger` reads the store and records the outcome there, so a retried drain task picks up
where the previous try stopped. :meth:`RunLedger.lag` adds the run's queue lag figures.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from batchq import xcom_keys
from batchq.errors import safe_error_text
from batchq.messages import describe_key
from batchq.monitor.lag import run_lag
from batchq.plan import Plan
from batchq.store.protocol import Store


@dataclass(frozen=True)
class LedgerStatus:
    """One look at a run's ledger.

    ``failed`` includes quarantined keys (a malformed result is a failure of that work unit).
    ``complete``: succeeded + failed >= expected. ``ok``: complete and failures within tolerance.
    """

    batch: str
    run_id: str
    expected: int
    succeeded: int
    failed: int
    quarantined: int
    tolerated_failures: int
    first_failures: list[dict[str, Any]] = field(default_factory=list)
    #: failed keys re-sent by an open repair (``batchq rerun``): counted as pending until their new result
    repairing: int = 0

    @property
    def closed(self) -> int:
        return self.succeeded + self.failed

    @property
    def pending(self) -> int:
        return max(0, self.expected - self.closed)

    @property
    def complete(self) -> bool:
        return self.closed >= self.expected

    @property
    def within_tolerance(self) -> bool:
        return self.failed <= self.tolerated_failures

    @property
    def ok(self) -> bool:
        return self.complete and self.within_tolerance

    @property
    def outcome(self) -> str:
        if not self.complete:
            return "open"
        return "succeeded" if self.within_tolerance else "failed"

    def counts(self) -> dict[str, Any]:
        """JSON-friendly counts (XCom, Asset event extra, CLI output)."""
        return {
            "batch": self.batch,
            "run_id": self.run_id,
            "expected": self.expected,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "quarantined": self.quarantined,
            "pending": self.pending,
            "repairing": self.repairing,
            "tolerated_failures": self.tolerated_failures,
            "outcome": self.outcome,
        }

    def to_dict(self) -> dict[str, Any]:
        """Counts and first failures; each failure's error text passes :func:`batchq.errors.safe_error_text`
        (Airflow's masker inside Airflow, capped everywhere) before it reaches an XCom or a page."""
        return {**self.counts(), xcom_keys.FIRST_FAILURES: [_safe_failure(f) for f in self.first_failures]}

    def describe(self) -> str:
        text = (
            f"run {self.run_id} of {self.batch}: {self.succeeded} succeeded, {self.failed} failed "
            f"({self.quarantined} quarantined), {self.pending} pending"
            f"{f' ({self.repairing} being repaired)' if self.repairing else ''} of {self.expected} expected; "
            f"tolerated failures {self.tolerated_failures}"
        )
        if self.first_failures:
            shown = "; ".join(f"{describe_key(f['key'], f.get('dims'))}: {_error_text(f.get('error'))}"
                              for f in self.first_failures)
            text += f". First failed keys: {shown}"
        return text


def _safe_failure(failure: Any) -> Any:
    if not isinstance(failure, dict):
        return safe_error_text(failure)
    error = failure.get("error")
    if isinstance(error, dict):
        error = {**error, "message": safe_error_text(error.get("message", ""))}
    elif error is not None:
        error = safe_error_text(error)
    return {**failure, "error": error}


def _error_text(error: Any) -> str:
    if isinstance(error, dict):
        return f"{error.get('type', 'Error')}: {error.get('message', '')}"
    return str(error)


def tolerated_failures(expected: int, count: int = 0, percentage: float = 0.0) -> int:
    """Failures a run may have and still succeed: the larger of the absolute count and the percentage
    of expected (rounded down), like Step Functions Distributed Map's ToleratedFailureCount/Percentage."""
    if expected < 0 or count < 0 or not 0 <= percentage <= 100:
        raise ValueError(f"need expected >= 0, count >= 0, 0 <= percentage <= 100; got {expected}, {count}, {percentage}")
    return max(count, math.floor(expected * percentage / 100 + 1e-9))


def evaluate(
    batch: str,
    run_id: str,
    expected: int,
    succeeded: int,
    failed: int,
    quarantined: int = 0,
    *,
    tolerated_failure_count: int = 0,
    tolerated_failure_percentage: float = 0.0,
    first_failures: list[dict[str, Any]] | None = None,
    repairing: int = 0,
) -> LedgerStatus:
    """Pure: the ledger status from counts. Quarantined keys count as failed."""
    return LedgerStatus(
        batch=batch,
        run_id=run_id,
        expected=expected,
        succeeded=succeeded,
        failed=failed + quarantined,
        quarantined=quarantined,
        tolerated_failures=tolerated_failures(expected, tolerated_failure_count, tolerated_failure_percentage),
        first_failures=list(first_failures or []),
        repairing=repairing,
    )


class RunLedger:
    """The ledger of one run over a results store (:class:`~batchq.store.protocol.Store`).

    :param store: the results store (the sink database).
    :param batch: batch name.
    :param run_id: run id (the idempotency keys' run key).
    :param expected: planned payloads after exclusions (``Plan.expected``); recorded in the store.
        ``None`` reads it back from the store (a previous try recorded it).
    :param tolerated_failure_count: from the spec.
    :param tolerated_failure_percentage: from the spec.
    :param failures_shown: how many failed keys a failing status lists.
    :param plan: the plan fingerprint of the run (:attr:`batchq.plan.Plan.fingerprint`): only results
        carrying it count, so a re-plan of the same run id (dimension values changed) never closes on
        the old plan's keys. ``None`` (no plan known) counts every result of the run id; recorded in the
        store and read back like ``expected``.
    :param dag_id: the DAG that owns the run; another DAG recording the same batch and run id is
        refused (:class:`~batchq.store.runs.RunConflict`).
    :param spec: the plan's resolved spec as JSON (:meth:`for_plan` passes it): recorded so results
        whose key the plan cannot produce are quarantined "not in plan" instead of counting.
    """

    def __init__(
        self,
        store: Store,
        batch: str,
        run_id: str,
        expected: int | None = None,
        *,
        tolerated_failure_count: int = 0,
        tolerated_failure_percentage: float = 0.0,
        failures_shown: int = 10,
        plan: str | None = None,
        dag_id: str | None = None,
        spec: str | None = None,
    ):
        self.store, self.batch, self.run_id = store, batch, run_id
        self.tolerated_failure_count = tolerated_failure_count
        self.tolerated_failure_percentage = tolerated_failure_percentage
        self.failures_shown = failures_shown
        # What is not given is read back from the store (a previous try, or the drain, recorded it).
        run = store.get_run(batch, run_id) if expected is None or plan is None else None
        plan = plan or (run or {}).get("plan")
        if expected is None:
            if run is None:
                raise ValueError(f"no expected count recorded for run {run_id!r} of {batch!r}: pass expected=")
            expected = int(run["expected"])
        elif expected < 0:
            raise ValueError(f"expected must be >= 0, got {expected}")
        else:
            store.set_expected(batch, run_id, expected, plan=plan, dag_id=dag_id, spec=spec)
        self.expected = expected
        self.plan = plan

    @classmethod
    def for_plan(cls, store: Store, plan: Plan, **kwargs: Any) -> RunLedger:
        """The ledger of ``plan``'s run, recording its expected count, fingerprint, DAG and resolved spec
        (so every drainer can quarantine a key the plan cannot produce as "not in plan")."""
        return cls(
            store, plan.spec.name, plan.run_id, plan.expected, plan=plan.fingerprint, dag_id=plan.dag_id,
            spec=plan.spec.model_dump_json(), **kwargs,
        )

    def status(self) -> LedgerStatus:
        c = self.store.counts(self.batch, self.run_id, plan=self.plan)
        failures = self.store.first_failures(self.batch, self.run_id, self.failures_shown, plan=self.plan) if (c.failed or c.quarantined) else []
        return evaluate(
            self.batch,
            self.run_id,
            self.expected,
            c.succeeded,
            c.failed,
            c.quarantined,
            tolerated_failure_count=self.tolerated_failure_count,
            tolerated_failure_percentage=self.tolerated_failure_percentage,
            first_failures=failures,
            repairing=c.repairing,
        )

    def lag(self) -> dict[str, Any]:
        """The run's queue lag figures (:func:`batchq.monitor.lag.run_lag`): input wait, processing and results
        wait percentiles, time to drain, peak depth, failures. Reads the run's rows once: call it when
        the figures are wanted (the end of a drain, ``batchq ledger``), not on every poll."""
        return run_lag(self.store.lag_rows(self.batch, self.run_id, plan=self.plan))

    def close(self, status: LedgerStatus | None = None) -> LedgerStatus:
        """Record the outcome of a complete run in ``batchq_runs``. Returns the status recorded."""
        status = status or self.status()
        if not status.complete:
            raise ValueError(f"cannot close an incomplete ledger: {status.describe()}")
        self.store.close_run(self.batch, self.run_id, status.succeeded, status.failed, status.outcome)
        return status


__all__ = ["LedgerStatus", "RunLedger", "evaluate", "tolerated_failures"]
