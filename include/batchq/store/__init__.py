"""The results store: the only code that touches the results, ledger, quarantine and repair tables.

* :mod:`~batchq.store.schema` — tables, added columns, migration
* :mod:`~batchq.store.rules` — which result of a key wins; which keys a plan produces (pure)
* :mod:`~batchq.store.results` — :class:`ResultsStore`: engine, guard, WAL, the one ``apply`` transaction
* :mod:`~batchq.store.runs` / :mod:`~batchq.store.ledger` — the run records and the ledger over them
* :mod:`~batchq.store.quarantine` — what is not applied, and why
* :mod:`~batchq.store.repair_records` / :mod:`~batchq.store.repairs` / :mod:`~batchq.store.purge` —
  ``batchq rerun``: records, selection and send, DLQ purge
* :mod:`~batchq.store.retention` — ``batchq store prune``
* :mod:`~batchq.store.protocol` — :class:`Store`, what the drainer, the CLI and the operators take
"""

from batchq.store.ledger import LedgerStatus, RunLedger, evaluate, tolerated_failures
from batchq.store.protocol import Store
from batchq.store.quarantine import NOT_IN_PLAN, QuarantineEntry
from batchq.store.results import ResultsStore
from batchq.store.runs import RunConflict, RunCounts

__all__ = [
    "NOT_IN_PLAN", "LedgerStatus", "QuarantineEntry", "ResultsStore", "RunConflict", "RunCounts", "RunLedger", "Store",
    "evaluate", "tolerated_failures",
]
