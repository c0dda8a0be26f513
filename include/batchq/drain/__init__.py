"""Results drainer core (Airflow-free): paced, idempotent delivery of results to the real-time system,
the run ledger, and quarantine of malformed results.

* :mod:`~batchq.drain.limiter` — token bucket with back-pressure
* :mod:`~batchq.drain.sink` — the sink interface and its errors
* :mod:`~batchq.drain.sql_sink` — SQL sink writing through the results store (:mod:`batchq.store`)
* :mod:`~batchq.drain.http_sink` — HTTP POST sink (429/503 + Retry-After are back-pressure)
* :mod:`~batchq.drain.core` — the drain loop
* :mod:`~batchq.sqs.redrive` — move dead-lettered messages back
"""

from batchq.drain.core import Drainer, DrainReport
from batchq.drain.http_sink import HttpSink
from batchq.drain.limiter import TokenBucket
from batchq.drain.sink import Sink, SinkMisconfigured, SinkRejected, SinkUnavailable
from batchq.drain.sql_sink import SqlSink
from batchq.store import ResultsStore

__all__ = [
    "DrainReport",
    "Drainer",
    "HttpSink",
    "Sink",
    "SinkMisconfigured",
    "SinkRejected",
    "SinkUnavailable",
    "SqlSink",
    "TokenBucket",
    "open_sink",
]


def open_sink(
    target: str,
    *,
    ledger_url: str | None = None,
    headers: dict[str, str] | None = None,
    retry_after_cap_s: float | None = None,
):
    """``(sink, store)`` from a target string: an ``http(s)://`` URL (then ``ledger_url`` names the
    results store for the ledger, default a SQLite file ``batchq-ledger.db``; ``headers`` carry its
    credentials, ``retry_after_cap_s`` caps its ``Retry-After``) or a SQLAlchemy URL (a
    :class:`SqlSink` writing through the store at that URL)."""
    if target.startswith(("http://", "https://")):
        store = ResultsStore(ledger_url or "sqlite:///batchq-ledger.db")
        extra = {} if retry_after_cap_s is None else {"retry_after_cap_s": retry_after_cap_s}
        return HttpSink(target, headers=headers, **extra), store
    store = ResultsStore(target)
    return SqlSink(store), store
