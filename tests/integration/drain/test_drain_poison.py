"""One result never stops the drainer (issue 8): hostile bodies next to good ones, on SQLite and
PostgreSQL. Every poison message is quarantined with a reason, every good neighbour commits, the queue
ends empty and the ledger closes. On the code before issue 8 each of these crashed the drain loop (deep
JSON: RecursionError; attempts: OverflowError on SQLite; long strings, NUL, NaN: PostgreSQL errors) or
quarantined whole batches (a sink refusing one entry)."""

from __future__ import annotations

import json
import uuid

import pytest
import sqlalchemy as sa
from batchq.drain import Drainer, HttpSink
from batchq.store import ResultsStore, RunLedger

from tests.integration.drain._helpers import backlog, make_results, put, sink_rows
from tests.support.http_receiver import Receiver

pytestmark = pytest.mark.integration


def _poison(batch: str, run_id: str) -> dict[str, str]:
    """name → body; each would be refused by some layer below the drainer."""

    def body(key: str, **over) -> str:
        raw = {"schema_version": 1, "batch": batch, "run_id": run_id, "key": key, "status": "succeeded", "output": {"v": 1}, **over}
        return json.dumps(raw)

    p = uuid.uuid4().hex[:6]
    return {
        "deep_json": "[" * 100_000,
        "deep_output": body(f"{p}-deep", output={"a": json.loads("[" * 500 + "]" * 500)}),
        "attempts": body(f"{p}-att", attempts=2**40),
        "long_key": body("k" * 65),
        "long_batch": body(f"{p}-lb", batch="b" * 65),
        "long_job_type": body(f"{p}-lj", job_type="j" * 129),
        "long_run_id": body(f"{p}-lr", run_id="r" * 251),
        "nul_output": body(f"{p}-nul", output={"s": "a\u0000b"}),
        "nul_key": body(f"{p}-\u0000"),
        "nul_error": body(f"{p}-nule", status="failed", output=None, error={"type": "E", "message": "x\u0000"}),
        "nan": body(f"{p}-nan", output={"x": float("nan")}),
        "inf": body(f"{p}-inf", output={"x": float("inf")}),
    }


def _check(sqs_client, url: str, store: ResultsStore) -> None:
    good = make_results(30)
    batch = good[0].batch
    poison = _poison(batch, "run-1")
    # Poison first and last, good results between: every receive batch mixes them.
    put(sqs_client, url, good, extra_bodies=list(poison.values()))
    ledger = RunLedger(store, batch, "run-1", expected=30)
    report = Drainer(sqs_client, url, store, max_in_flight=2, receive_wait_s=1).run()

    assert set(sink_rows(store, batch)) == {r.key for r in good}
    assert report.quarantined >= len(poison) and backlog(sqs_client, url) == 0
    rows = store.quarantined()
    bodies = {q["body"] for q in rows}
    for name, raw in poison.items():
        assert raw.replace("\x00", "\\u0000")[:1000] in {b[:1000] for b in bodies}, f"{name} not quarantined"
    reasons = " | ".join(q["reason"] for q in rows if q["body"] in {b.replace("\x00", "\\u0000") for b in poison.values()})
    # Wordings of the parser (messages.parse_result) or of the drain's checks, whichever catches it first.
    expected = (("recursion", "nested too deeply"), ("nested deeper",), ("attempts",), ("key is 65",), ("batch is 65",),
                ("job_type is 129",), ("run_id is 251",), ("nul",), ("nan",), ("inf",))
    for words in expected:
        assert any(w in reasons.lower() for w in words), (words, reasons)
    status = ledger.status()
    # The ledger closes; poison bodies that name a key of this run count as its (quarantined) failures.
    assert status.complete and status.succeeded == 30 and status.failed == status.quarantined > 0


def test_poison_results_are_isolated_on_sqlite(sqs_client, make_queue, tmp_path):
    store = ResultsStore(f"sqlite:///{tmp_path}/sink.db")
    try:
        _check(sqs_client, make_queue(), store)
    finally:
        store.close()


@pytest.mark.postgres
def test_poison_results_are_isolated_on_postgres(sqs_client, make_queue, pg_url):
    store = ResultsStore(pg_url)
    try:
        _check(sqs_client, make_queue(), store)
    finally:
        store.close()


def test_a_database_refusal_is_bisected_to_the_poison_row(sqs_client, make_queue, tmp_path):
    """A refusal the checks cannot foresee (here a trigger): the batch is bisected, only the refused row
    is quarantined (with the database's reason), its neighbours commit."""
    store = ResultsStore(f"sqlite:///{tmp_path}/sink.db")
    store.create_tables()
    with store.engine.begin() as conn:
        conn.execute(sa.text(
            "CREATE TRIGGER refuse_poison BEFORE INSERT ON batchq_results WHEN NEW.output LIKE '%poison%' "
            "BEGIN SELECT RAISE(ABORT, 'poison row refused'); END"
        ))
    results = make_results(40)
    batch = results[0].batch
    bad = {results[i].key for i in (3, 17, 31)}
    results = [r.model_copy(update={"output": {"v": "poison"}}) if r.key in bad else r for r in results]
    url = make_queue()
    put(sqs_client, url, results)
    report = Drainer(sqs_client, url, store, receive_wait_s=1).run()
    assert set(sink_rows(store, batch)) == {r.key for r in results} - bad
    q = {row["key"]: row["reason"] for row in store.quarantined(batch=batch)}
    assert set(q) == bad and all("poison row refused" in reason for reason in q.values())
    assert report.quarantined == 3 and backlog(sqs_client, url) == 0
    store.close()


def test_an_http_sink_refusing_one_entry_is_bisected(sqs_client, make_queue, tmp_path):
    results = make_results(30)
    bad = {results[5].key, results[22].key}
    url = make_queue()
    put(sqs_client, url, results)
    store = ResultsStore(f"sqlite:///{tmp_path}/ledger.db")
    with Receiver() as rx:
        rx.refuse_keys = bad
        report = Drainer(sqs_client, url, HttpSink(f"{rx.url}/results"), store, receive_wait_s=1).run()
        assert set(rx.rows) == {r.key for r in results} - bad
    q = {row["key"]: row["reason"] for row in store.quarantined(batch=results[0].batch)}
    assert set(q) == bad and all("sink rejected" in reason and "HTTP 400" in reason for reason in q.values())
    assert report.quarantined == 2 and backlog(sqs_client, url) == 0
    store.close()

