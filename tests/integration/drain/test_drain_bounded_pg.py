"""A lock held elsewhere on PostgreSQL cannot hold a drain thread past its deadline: the store's apply
runs with ``statement_timeout``/``lock_timeout`` set from the time left, the cancelled write backs off,
and near the deadline the batch is handed back to the queue."""

from __future__ import annotations

import threading
import time

import pytest
from batchq.drain import Drainer
from batchq.store import ResultsStore

from tests.integration.drain._helpers import make_results, put

pytestmark = [pytest.mark.integration, pytest.mark.postgres]


def test_a_held_lock_does_not_outlive_the_drain_deadline(sqs_client, make_queue, pg_url):
    import psycopg

    url = make_queue()
    results = make_results(20)
    put(sqs_client, url, results)
    store = ResultsStore(pg_url)
    store.create_tables()
    blocker = psycopg.connect(pg_url.replace("postgresql+psycopg://", "postgresql://"))
    try:
        # Another session (a migration, a long report) holds the results table.
        blocker.execute("lock table batchq_results in access exclusive mode")
        drainer = Drainer(sqs_client, url, store, max_rate=100, max_in_flight=1, receive_wait_s=1, lease_s=30, backoff_base_s=0.2, backoff_cap_s=1)
        box: dict = {}
        started = time.monotonic()
        t = threading.Thread(target=lambda: box.setdefault("report", drainer.run(deadline=started + 4)), daemon=True)
        t.start()
        t.join(30)
        took = time.monotonic() - started
        assert not t.is_alive(), "the drain thread is still waiting on the lock, past its deadline"
    finally:
        blocker.rollback()
        blocker.close()
    report = box["report"]
    assert report.deadline_reached and report.sink_retries >= 1
    assert took < 15, f"drain took {took:.1f}s with a 4 s deadline"
    assert report.handed_back >= 1  # back to the queue for a later drain, not lost
    store.close()
