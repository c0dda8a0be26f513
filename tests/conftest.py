"""Shared fixtures: a real SQS-compatible HTTP endpoint on loopback, and PostgreSQL.

SQS: moto's server, started on a free 127.0.0.1 port for the session, unless
``BATCHQ_TEST_SQS_ENDPOINT`` names another endpoint (LocalStack, ElasticMQ, real AWS) — the same tests
run against it. No in-process mocks anywhere.

PostgreSQL: 127.0.0.1:5432, trust auth, database ``test`` (override with ``BATCHQ_TEST_PG_URL``).
Tests that need it skip with a reason on a laptop without it; under ``CI=true`` they fail instead.
MariaDB likewise (127.0.0.1:3306, root, ``test``; ``BATCHQ_TEST_MARIADB_URL``).

Parallel runs (``make test`` runs pytest-xdist workers): the tests share table names, so each xdist
worker gets a database of its own on the same server, ``<database>_<worker>`` (``test_gw0``, …),
created on first use. A serial run uses the configured database itself.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable, Iterator

import pytest

os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
# Never let a test reach for an instance-metadata endpoint.
os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
# In-process tests play the triggerer themselves: no scheduler race to keep a wait's trigger from (see
# [batchq] trigger_min_event_age_s). The live deployment (tests/deployment) drops this and runs the default.
os.environ.setdefault("AIRFLOW__BATCHQ__TRIGGER_MIN_EVENT_AGE_S", "0")
# Every stack this project ships defers by default (Airflow's own [operators] default_deferrable, which
# batchq's deferrable= follows); the in-process operator tests run with the same configuration.
os.environ.setdefault("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE", "True")

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
DEFAULT_MARIADB_URL = "mysql://root@127.0.0.1:3306/test"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def sqs_endpoint() -> Iterator[str]:
    """URL of the SQS endpoint every integration test talks to over HTTP."""
    configured = os.environ.get("BATCHQ_TEST_SQS_ENDPOINT")
    if configured:
        yield configured
        return
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture(scope="session")
def sqs_client(sqs_endpoint: str):
    """A client with the production botocore policy (:func:`batchq.sqs.client.botocore_config`)."""
    from batchq.sqs.client import sqs_client as batchq_sqs_client

    return batchq_sqs_client(endpoint_url=sqs_endpoint, region_name=os.environ["AWS_DEFAULT_REGION"])


def unique_name(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def make_queue(sqs_client) -> Iterator[Callable[..., str]]:
    """Factory: ``make_queue(**attributes) -> url`` of a new uniquely named queue, deleted afterwards."""
    created: list[str] = []

    def factory(name: str | None = None, **attributes: str) -> str:
        url = sqs_client.create_queue(QueueName=name or unique_name(), Attributes=attributes)["QueueUrl"]
        created.append(url)
        return url

    yield factory
    for url in created:
        try:
            sqs_client.delete_queue(QueueUrl=url)
        except Exception:  # noqa: BLE001 - cleanup is best effort
            pass


@pytest.fixture
def queue_spec_factory(sqs_client):
    """Factory: ``(QueueSpec, QueueUrls)`` for new uniquely named input/results queues with DLQs
    (provisioned with :func:`batchq.sqs.queues.ensure_queues`), deleted afterwards."""
    from batchq.spec import QueueSpec
    from batchq.sqs.queues import ensure_queues

    made = []

    def factory(**overrides):
        base = unique_name("bq")
        spec = QueueSpec(**{"input": f"{base}-in", "results": f"{base}-out", **overrides})
        urls = ensure_queues(sqs_client, spec)
        made.append(urls)
        return spec, urls

    yield factory
    for urls in made:
        for url in urls.to_dict().values():
            try:
                sqs_client.delete_queue(QueueUrl=url)
            except Exception:  # noqa: BLE001
                pass


def _worker_database(url: str) -> tuple[str, str | None]:
    """(the URL this process uses, the database to create first or None): the configured URL in a
    serial run; under an xdist worker the same server with the worker's own database."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if not worker:
        return url, None
    from sqlalchemy.engine import make_url

    u = make_url(url)
    name = f"{u.database}_{worker}"
    return u.set(database=name).render_as_string(hide_password=False), name


@pytest.fixture(scope="session")
def pg_url() -> str:
    """SQLAlchemy URL of the test PostgreSQL; skip (laptop) or fail (CI) when it is not reachable."""
    configured = os.environ.get("BATCHQ_TEST_PG_URL", DEFAULT_PG_URL)
    url, own_db = _worker_database(configured)
    try:
        import psycopg

        if own_db is not None:
            admin = configured.replace("postgresql+psycopg://", "postgresql://")
            with psycopg.connect(admin, connect_timeout=3, autocommit=True) as conn:
                if conn.execute("select 1 from pg_database where datname = %s", (own_db,)).fetchone() is None:
                    conn.execute(f'create database "{own_db}"')
        dsn = url.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(dsn, connect_timeout=3) as conn:
            conn.execute("select 1")
    except Exception as exc:  # noqa: BLE001
        reason = f"PostgreSQL not reachable at {url}: {exc}"
        if IN_CI:
            pytest.fail(f"{reason} (CI=true: PostgreSQL is required, not optional)")
        pytest.skip(reason)
    return url


@pytest.fixture(scope="session")
def mariadb_url() -> str:
    """URL of the test MariaDB (.ci/run's ensure_mariadb: 127.0.0.1:3306, root, database ``test``;
    override with ``BATCHQ_TEST_MARIADB_URL``); skip (laptop) or fail (CI) when it is not reachable."""
    configured = os.environ.get("BATCHQ_TEST_MARIADB_URL", DEFAULT_MARIADB_URL)
    url, own_db = _worker_database(configured)
    try:
        import MySQLdb
        from sqlalchemy.engine import make_url

        u = make_url(url)
        server = {"host": u.host, "port": u.port or 3306, "user": u.username, "passwd": u.password or "", "connect_timeout": 3}
        if own_db is not None:
            admin = MySQLdb.connect(**server)
            try:
                admin.cursor().execute(f"CREATE DATABASE IF NOT EXISTS `{own_db}`")
            finally:
                admin.close()
        conn = MySQLdb.connect(db=u.database, **server)
        conn.close()
    except Exception as exc:  # noqa: BLE001
        reason = f"MariaDB not reachable at {url}: {exc}"
        if IN_CI:
            pytest.fail(f"{reason} (CI=true: MariaDB is required, not optional)")
        pytest.skip(reason)
    return url
