"""Sink connections of the drain operator (issue 8): a PostgreSQL connection keeps its TLS settings; an
HTTP connection's credentials authenticate the POSTs and are never rendered or logged; an expired
token fails the task fast with the results left on the queue."""

from __future__ import annotations

import json
import logging
from types import SimpleNamespace

import pytest
import sqlalchemy as sa
from batchq.drain import SinkUnavailable
from batchq.store import ResultsStore

from tests.integration.drain._helpers import make_results, put
from tests.integration.drain.test_drain_airflow import (  # noqa: F401
    CONN_ID,
    FakeTI,
    aws_conn,
    context,
    drain_op,
)
from tests.support.http_receiver import Receiver

pytestmark = pytest.mark.integration

SECRET = "tok-7f3a9c-very-secret"


def _conn(**kw):
    base = {"conn_id": "c", "conn_type": None, "host": None, "port": None, "schema": None, "login": None, "password": None, "extra_dejson": {}}
    return SimpleNamespace(**{**base, **kw})


def _airflow_conn(monkeypatch, **fields):
    """A real Airflow connection (an env var, as a deployment would define it): its hook resolves the sink."""
    from batchq.airflow.sinks import get_connection

    monkeypatch.setenv("AIRFLOW_CONN_BATCHQ_SINK_TEST", json.dumps(fields))
    return get_connection("batchq_sink_test")


def test_postgres_connection_keeps_tls_settings_from_the_extra(monkeypatch):
    from batchq.airflow.operators.drain import sink_target_from_connection

    extra = {"sslmode": "verify-full", "sslrootcert": "/etc/ssl/ca.pem", "sslcert": "/c.pem", "sslkey": "/k.pem", "unrelated": "x"}
    conn = _airflow_conn(monkeypatch, conn_type="postgres", host="db", schema="res", login="app", extra=extra)
    url = sa.engine.make_url(sink_target_from_connection(conn))
    assert dict(url.query) == {"sslmode": "verify-full", "sslrootcert": "/etc/ssl/ca.pem", "sslcert": "/c.pem", "sslkey": "/k.pem"}


@pytest.mark.postgres
def test_the_tls_setting_reaches_the_driver(pg_url, monkeypatch):
    """The test server has no TLS: sslmode=require from the connection's extra must make the connect fail
    (before issue 8 the setting was dropped and the sink silently connected in clear text)."""
    from batchq.airflow.operators.drain import sink_target_from_connection

    u = sa.engine.make_url(pg_url)
    conn = _airflow_conn(monkeypatch, conn_type="postgres", host=u.host, port=u.port, schema=u.database, login=u.username, extra={"sslmode": "require"})
    store = ResultsStore(sink_target_from_connection(conn))
    with pytest.raises(SinkUnavailable, match="SSL"):
        store.create_tables()
    store.close()


def test_http_connection_headers():
    from batchq.airflow.operators.drain import sink_headers_from_connection

    assert sink_headers_from_connection(_conn(conn_type="http", password=SECRET)) == {"Authorization": f"Bearer {SECRET}"}
    assert sink_headers_from_connection(_conn(conn_type="https", login="u", password="p"))["Authorization"].startswith("Basic ")
    hdrs = sink_headers_from_connection(_conn(conn_type="http", extra_dejson={"token": SECRET, "headers": {"X-Tenant": "t1"}}))
    assert hdrs == {"Authorization": f"Bearer {SECRET}", "X-Tenant": "t1"}
    assert sink_headers_from_connection(_conn(conn_type="postgres", password="p")) == {}


def _http_conn(monkeypatch, rx, conn_id: str = "batchq_http_sink") -> str:
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{conn_id.upper()}",
        json.dumps({"conn_type": "http", "host": "127.0.0.1", "port": rx.port, "schema": "results", "password": SECRET}),
    )
    return conn_id


def test_operator_authenticates_from_the_connection_and_never_shows_the_token(sqs_client, make_queue, aws_conn, tmp_path, monkeypatch, caplog):  # noqa: F811
    url = make_queue()
    results = make_results(12)
    put(sqs_client, url, results)
    caplog.set_level(logging.DEBUG)
    with Receiver() as rx:
        rx.require_headers = {"Authorization": f"Bearer {SECRET}"}
        op = drain_op(batch=results[0].batch, results_queue=url, sink_conn_id=_http_conn(monkeypatch, rx), ledger=f"sqlite:///{tmp_path}/l.db", expected=12, run_id="run-1")
        out = op.execute(context("run-1"))
        assert out["succeeded"] == 12 and set(rx.rows) == {r.key for r in results} and rx.unauthorized == 0
    rendered = {f: getattr(op, f, None) for f in op.template_fields}
    assert SECRET not in repr(rendered) and SECRET not in caplog.text


def test_operator_fails_fast_on_a_rejected_token_and_keeps_the_results(sqs_client, make_queue, aws_conn, tmp_path, monkeypatch):  # noqa: F811
    from airflow.sdk.exceptions import AirflowFailException
    from batchq.sqs import get_snapshot

    url = make_queue()
    put(sqs_client, url, make_results(12))
    with Receiver() as rx:
        rx.require_headers = {"Authorization": "Bearer the-new-token"}
        op = drain_op(batch="b-auth", results_queue=url, sink_conn_id=_http_conn(monkeypatch, rx), ledger=f"sqlite:///{tmp_path}/l.db", expected=12, run_id="run-1", lease_s=60)
        with pytest.raises(AirflowFailException, match="HTTP 401.*credentials"):
            op.execute(context("run-1"))
        assert rx.rows == {}
    assert ResultsStore(f"sqlite:///{tmp_path}/l.db").quarantined() == []
    snap = get_snapshot(sqs_client, url)
    assert snap.visible + snap.in_flight == 12 and snap.visible >= 10  # handed back, not held for 60 s


def test_batchq_http_connection_type(monkeypatch):
    """The provider's own connection type (issue 20): the form's fields make the URL and the headers."""
    from batchq.airflow.sinks import (
        sink_headers_from_connection,
        sink_target_from_connection,
    )

    conn = _airflow_conn(monkeypatch, conn_type="batchq_http", host="rt.internal", port=8443, schema="/v1/results",
                         extra={"token": SECRET + "\n", "headers": '{"X-Tenant": "t1"}'})
    assert sink_target_from_connection(conn) == "https://rt.internal:8443/v1/results"
    assert sink_headers_from_connection(conn) == {"Authorization": f"Bearer {SECRET}\n", "X-Tenant": "t1"}
    plain = _airflow_conn(monkeypatch, conn_type="batchq_http", host="rt", schema="r", extra={"use_https": False})
    assert sink_target_from_connection(plain) == "http://rt/r"
    # The sink cleans the token's newline (a secret file's) before anything is sent.
    from batchq.drain.http_sink import HttpSink

    sink = HttpSink(sink_target_from_connection(conn), headers=sink_headers_from_connection(conn))
    assert sink._headers["Authorization"] == f"Bearer {SECRET}"
    sink.close()
