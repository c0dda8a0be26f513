"""What the drainer, the ledger, the CLI and the operators need from a results store.

:class:`~batchq.store.results.ResultsStore` (SQLAlchemy: SQLite, PostgreSQL) is the implementation;
code that only reads the ledger or applies results types against this protocol, never builds a sink.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from batchq.messages import WorkResult

if TYPE_CHECKING:
    from batchq.store.quarantine import QuarantineEntry
    from batchq.store.runs import RunCounts


@runtime_checkable
class Store(Protocol):
    """A results store: one ``apply`` transaction, the run records and the ledger's reads."""

    #: short description for logs (never credentials)
    description: str

    def apply(self, results: Sequence[WorkResult], quarantined: Iterable[QuarantineEntry] = (), *, timeout_s: float | None = None) -> None: ...

    def set_expected(
        self, batch: str, run_id: str, expected: int, *, plan: str | None = None, dag_id: str | None = None, spec: str | None = None
    ) -> None: ...

    def get_run(self, batch: str, run_id: str) -> dict[str, Any] | None: ...

    def close_run(self, batch: str, run_id: str, succeeded: int, failed: int, outcome: str) -> None: ...

    def counts(self, batch: str, run_id: str, plan: str | None = None) -> RunCounts: ...

    def first_failures(self, batch: str, run_id: str, limit: int = 10, plan: str | None = None) -> list[dict[str, Any]]: ...

    def lag_rows(self, batch: str, run_id: str, plan: str | None = None) -> list[dict[str, Any]]: ...

    def close(self) -> None: ...
