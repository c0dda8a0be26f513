"""Results drainer core (Airflow-free): paced, idempotent delivery of results to the real-time system,
the run ledger, and quarantine of malformed results.

* :mod:`~batchq.drain.limiter` — token bucket with back-pressure
* :mod:`~batchq.drain.sink` — the sink interface and its errors
* :mod:`~batchq.drain.sql_sink` — SQL sink + run ledger store (SQLAlchemy: SQLite, PostgreSQL)
* :mod:`~batchq.drain.http_sink` — HTTP POST sink (429/503 + Retry-After are back-pressure)
* :mod:`~batchq.drain.ledger` — completion and tolerance of a run
* :mod:`~batchq.drain.core` — the drain loop
* :mod:`~batchq.sqs.redrive` — move dead-lettered messages back
"""

from batchq.drain.core import Drainer, DrainReport
from batchq.drain.http_sink import HttpSink
from batchq.drain.ledger import LedgerStatus, RunLedger, evaluate, tolerated_failures
from batchq.drain.limiter import TokenBucket
from batchq.drain.sink import (
    Sink,
    SinkMisconfigured,
    SinkRejected,
    SinkUnavailable,
    merge_duplicates,
)
from batchq.drain.sql_sink import QuarantineEntry, SqlSink

__all__ = [
    "DrainReport",
    "Drainer",
    "HttpSink",
    "LedgerStatus",
    "QuarantineEntry",
    "RunLedger",
    "Sink",
    "SinkMisconfigured",
    "SinkRejected",
    "SinkUnavailable",
    "SqlSink",
    "TokenBucket",
    "evaluate",
    "merge_duplicates",
    "open_sink",
    "tolerated_failures",
]


def open_sink(
    target: str,
    *,
    ledger_url: str | None = None,
    headers: dict[str, str] | None = None,
    retry_after_cap_s: float | None = None,
):
    """``(sink, store)`` from a target string: an ``http(s)://`` URL (then ``ledger_url`` names the SQL
    store for the ledger, default a SQLite file ``batchq-ledger.db``; ``headers`` carry its credentials,
    ``retry_after_cap_s`` caps its ``Retry-After``) or a SQLAlchemy URL (the store is the sink)."""
    if target.startswith(("http://", "https://")):
        store = SqlSink(ledger_url or "sqlite:///batchq-ledger.db")
        extra = {} if retry_after_cap_s is None else {"retry_after_cap_s": retry_after_cap_s}
        return HttpSink(target, headers=headers, **extra), store
    store = SqlSink(target)
    return store, store
