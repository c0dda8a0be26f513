"""Any SQL connection is a sink (issue 20): the drain operator resolves ``sink_conn_id`` through the
connection's own ``DbApiHook``, so batchq holds no per-database mapping. Proven on three engines through
their providers' hooks: SQLite, PostgreSQL and MariaDB (the MySQL provider). Before issue 20 a ``mysql``
connection failed with "cannot make a sink from conn_type 'mysql'"."""

from __future__ import annotations

import json
import uuid

import pytest
import sqlalchemy as sa
from batchq.store import ResultsStore

from tests.integration.drain._helpers import make_results, put, sink_rows
from tests.integration.drain.test_drain_airflow import aws_conn, context, drain_op  # noqa: F401

pytestmark = pytest.mark.integration


def _sqlite(tmp_path, _request):
    return {"conn_type": "sqlite", "host": str(tmp_path / "sink.db")}


def _postgres(_tmp_path, request):
    u = sa.engine.make_url(request.getfixturevalue("pg_url"))
    return {"conn_type": "postgres", "host": u.host, "port": u.port, "login": u.username, "schema": u.database}


def _mariadb(_tmp_path, request):
    u = sa.engine.make_url(request.getfixturevalue("mariadb_url"))
    return {"conn_type": "mysql", "host": u.host, "port": u.port, "login": u.username, "password": u.password or "", "schema": u.database}


ENGINES = [
    pytest.param(_sqlite, "SqliteHook", id="sqlite"),
    pytest.param(_postgres, "PostgresHook", id="postgres", marks=pytest.mark.postgres),
    pytest.param(_mariadb, "MySqlHook", id="mariadb", marks=pytest.mark.mariadb),
]


@pytest.mark.parametrize(("fields", "hook_class"), ENGINES)
def test_the_connections_own_hook_names_the_sink(fields, hook_class, tmp_path, request, monkeypatch):
    from batchq.airflow.sinks import get_connection, sink_target_from_connection

    monkeypatch.setenv("AIRFLOW_CONN_BATCHQ_HOOK_TEST", json.dumps(fields(tmp_path, request)))
    conn = get_connection("batchq_hook_test")
    assert type(conn.get_hook()).__name__ == hook_class
    target = sink_target_from_connection(conn)
    assert sa.engine.make_url(target).get_backend_name() == {"SqliteHook": "sqlite", "PostgresHook": "postgresql", "MySqlHook": "mysql"}[hook_class]


@pytest.mark.parametrize(("fields", "hook_class"), ENGINES)
def test_drain_operator_writes_through_any_sql_connection(fields, hook_class, sqs_client, make_queue, aws_conn, tmp_path, request, monkeypatch):  # noqa: F811
    from batchq.airflow.sinks import get_connection, sink_target_from_connection

    conn_id = f"sink_{uuid.uuid4().hex[:8]}"
    spec = fields(tmp_path, request)
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(spec))
    url = make_queue()
    results = make_results(25, failed_every=10)
    put(sqs_client, url, results, copies=2)  # duplicates: the upsert keeps one row per key
    op = drain_op(batch=results[0].batch, results_queue=url, sink_conn_id=conn_id, expected=25, run_id="run-1", tolerated_failure_count=5)
    out = op.execute(context("run-1"))
    assert (out["succeeded"], out["failed"]) == (22, 3)
    store = ResultsStore(sink_target_from_connection(get_connection(conn_id)))
    try:
        rows = sink_rows(store, results[0].batch)
        assert rows == {r.key: r.status for r in results}
    finally:
        store.close()
