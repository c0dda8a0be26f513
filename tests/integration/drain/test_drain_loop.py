"""The drain loop against a real SQS endpoint and real databases: duplicates collapse to one row per key,
malformed results are quarantined and deleted, the ledger closes, the queue ends empty, the rate holds."""

from __future__ import annotations

import pytest
from batchq.messages import ErrorInfo
from batchq.drain import Drainer, HttpSink
from batchq.store import ResultsStore, RunLedger

from tests.integration.drain._helpers import backlog, make_results, put, sink_rows
from tests.support.http_receiver import Receiver

pytestmark = pytest.mark.integration

MALFORMED = ['{"schema_version": 1, "key": "broken"}', "not json at all", '{"schema_version": 99, "key": "future"}']


def _drain_and_check(sqs_client, url, store):
    results = make_results(60, failed_every=7)
    batch = results[0].batch
    # every result twice (at-least-once), one key first failed then succeeded, plus malformed bodies
    flip = results[1].model_copy(update={"status": "failed", "output": None, "error": ErrorInfo(type="Flaky", message="x")})
    put(sqs_client, url, results, copies=2, extra_bodies=MALFORMED + [flip.model_dump_json()])
    ledger = RunLedger(store, batch, "run-1", expected=60)
    report = Drainer(sqs_client, url, store, max_in_flight=2, receive_wait_s=1).run()

    # >= : SQS (and moto under concurrent receives) may deliver a message twice; rows prove the effect.
    assert report.received >= 124 and report.quarantined >= 3 and report.deleted == report.received
    rows = sink_rows(store, batch)
    assert set(rows) == {r.key for r in results}
    assert rows[results[1].key] == "succeeded"
    status = ledger.status()
    assert (status.expected, status.succeeded, status.failed, status.complete) == (60, 51, 9, True)
    assert not status.ok  # 9 failures, none tolerated
    assert backlog(sqs_client, url) == 0
    reasons = [q["reason"] for q in store.quarantined() if q["key"] in ("broken", "future") or q["key"] is None]
    assert any("not JSON" in r for r in reasons) and any("schema_version" in r for r in reasons)


def test_drain_to_sqlite(sqs_client, make_queue, tmp_path):
    store = ResultsStore(f"sqlite:///{tmp_path}/sink.db")
    _drain_and_check(sqs_client, make_queue(), store)


@pytest.mark.postgres
def test_drain_to_postgres(sqs_client, make_queue, pg_url):
    store = ResultsStore(pg_url)
    try:
        _drain_and_check(sqs_client, make_queue(), store)
    finally:
        store.close()


def test_rate_is_capped(sqs_client, make_queue, tmp_path):
    url = make_queue()
    put(sqs_client, url, make_results(70))
    store = ResultsStore(f"sqlite:///{tmp_path}/sink.db")
    report = Drainer(sqs_client, url, store, max_rate=40, max_in_flight=3, receive_wait_s=1).run()
    assert report.applied >= 70
    # 10 tokens of burst, then 60 more at 40/s: at least 1.5 s whatever the thread count.
    assert report.duration_s >= 1.45
    assert report.paced_s > 0


def test_drain_to_http_with_sql_ledger(sqs_client, make_queue, tmp_path):
    url = make_queue()
    results = make_results(30, failed_every=10)
    put(sqs_client, url, results, copies=2)
    store = ResultsStore(f"sqlite:///{tmp_path}/ledger.db")
    with Receiver() as rx:
        sink = HttpSink(f"{rx.url}/results")
        ledger = RunLedger(store, results[0].batch, "run-1", expected=30, tolerated_failure_count=3)
        report = Drainer(sqs_client, url, sink, store, max_in_flight=2, receive_wait_s=1).run()
        assert report.applied >= 60
        assert set(rx.rows) == {r.key for r in results}
    assert ledger.status().ok
    assert sink_rows(store, results[0].batch).keys() == rx.rows.keys()
    assert backlog(sqs_client, url) == 0


def test_http_rejection_is_quarantined_not_retried(sqs_client, make_queue, tmp_path):
    url = make_queue()
    results = make_results(5)
    put(sqs_client, url, results)
    store = ResultsStore(f"sqlite:///{tmp_path}/ledger.db")
    with Receiver() as rx:
        rx.fail_for(60, status=422, retry_after=None)
        report = Drainer(sqs_client, url, HttpSink(f"{rx.url}/results"), store, receive_wait_s=1).run()
    assert report.quarantined >= 5 and report.sink_retries == 0
    assert all("sink rejected" in q["reason"] for q in store.quarantined())
    assert store.counts(results[0].batch, "run-1").quarantined == 5
    assert backlog(sqs_client, url) == 0
