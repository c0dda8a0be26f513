"""End-to-end fixtures: a throwaway Airflow home that runs the repo's DAGs against the test SQS endpoint.

``airflow_home`` (session-scoped; ``airflow db migrate`` takes ~4 s on SQLite) gives:

- ``env``: the environment for ``airflow`` subprocesses: temp ``AIRFLOW_HOME``, SQLite metadata DB,
  ``dags/`` and ``plugins/`` of this repo, no examples, and ``AIRFLOW_CONN_AWS_DEFAULT`` pointing at the
  test SQS endpoint through the ``endpoint_url`` extra (moto server, or ``BATCHQ_TEST_SQS_ENDPOINT``);
- ``run(*args, env=..., timeout=...)``: run ``airflow <args>`` and return the completed process;
- ``dags_test(dag_id, logical_date, env=...)``: ``airflow dags test`` returning ``(process, run_id)`` of
  the run it created;
- ``query(sql, *params)``: read the metadata DB (task states, rendered map indexes, XComs).

Per-test settings (a small spec, a Variable) go in the ``env`` argument, e.g.
``{"BATCHQ_CUSTOMER_BATCH_SPEC": str(path), "AIRFLOW_VAR_X": "[...]"}``.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

# The Batch view tests' session fixtures (an Airflow home with demo runs, a live api-server), registered
# once here so every module shares one instance.
from tests.support.airflow_views import view_home, view_server  # noqa: F401

REPO = Path(__file__).resolve().parents[2]
AIRFLOW_BIN = Path(sys.executable).with_name("airflow")


@dataclass
class AirflowHome:
    path: Path
    sqs_endpoint: str
    env: dict[str, str] = field(default_factory=dict)

    @property
    def db_path(self) -> Path:
        return self.path / "airflow.db"

    def run(self, *args: str, env: dict[str, str] | None = None, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            [str(AIRFLOW_BIN), *args],
            env={**self.env, **(env or {})},
            cwd=self.path,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        if check and proc.returncode != 0:
            tail = "\n".join((proc.stdout + "\n" + proc.stderr).splitlines()[-60:])
            raise AssertionError(f"airflow {' '.join(args)} exited {proc.returncode}:\n{tail}")
        return proc

    def query(self, sql: str, *params: Any) -> list[tuple]:
        with sqlite3.connect(self.db_path) as conn:
            return conn.execute(sql, params).fetchall()

    def dags_test(
        self,
        dag_id: str,
        logical_date: str,
        *,
        env: dict[str, str] | None = None,
        timeout: float = 600,
        check: bool = True,
        mark_success_pattern: str | None = None,
        conf: dict | None = None,
    ) -> tuple[subprocess.CompletedProcess, str]:
        """Run ``airflow dags test`` and return the process and the run id it created.

        :param mark_success_pattern: task ids (regex) Airflow marks successful instead of running, e.g. the
            drain steps in a test that runs no workers.
        """
        before = self.query("select coalesce(max(id), 0) from dag_run")[0][0]
        extra = ["--mark-success-pattern", mark_success_pattern] if mark_success_pattern else []
        extra += ["--conf", json.dumps(conf)] if conf is not None else []
        proc = self.run("dags", "test", dag_id, logical_date, *extra, env=env, timeout=timeout, check=check)
        rows = self.query("select run_id from dag_run where dag_id = ? and id > ? order by id", dag_id, before)
        assert len(rows) == 1, f"expected one new run of {dag_id}, found {rows}\n{proc.stdout[-3000:]}"
        return proc, rows[0][0]


@pytest.fixture(scope="session")
def airflow_home(tmp_path_factory, sqs_endpoint) -> AirflowHome:
    home = tmp_path_factory.mktemp("airflow-home")
    region = os.environ.get("AWS_DEFAULT_REGION", "us-east-1")
    connection = {
        "conn_type": "aws",
        "login": os.environ.get("AWS_ACCESS_KEY_ID", "testing"),
        "password": os.environ.get("AWS_SECRET_ACCESS_KEY", "testing"),
        "extra": {"endpoint_url": sqs_endpoint, "region_name": region},
    }
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE": "True",
        "AIRFLOW_CONN_AWS_DEFAULT": json.dumps(connection),
        "AWS_DEFAULT_REGION": region,
        "AWS_EC2_METADATA_DISABLED": "true",
        "PYTHONUNBUFFERED": "1",
    }
    # Nothing from a developer's shell may redirect these runs elsewhere.
    for name in ("BATCHQ_CUSTOMER_BATCH_SPEC", "AIRFLOW_CONFIG", "AIRFLOW__CORE__EXECUTOR"):
        env.pop(name, None)
    af = AirflowHome(path=home, sqs_endpoint=sqs_endpoint, env=env)
    af.run("db", "migrate", timeout=300)
    return af


@pytest.fixture
def customer_spec(tmp_path):
    """Factory fixture: ``customer_spec(customers=20, params="{...}")`` writes a spec file (see below)."""
    return lambda **kwargs: write_customer_spec(tmp_path, **kwargs)


def write_customer_spec(directory: Path, *, customers: int, params: str, queue_extra: str = "", extra: str = "") -> Path:
    """A small copy of the example spec (customer × job_type × period, daily use-case analysis excluded)
    with uniquely named queues, so e2e tests stay fast on moto and never share queues."""
    import uuid

    base = f"e2e-{uuid.uuid4().hex[:8]}"
    names = ", ".join(f"cust-{i:04d}" for i in range(1, customers + 1))
    path = directory / f"customer_batch_{base}.yaml"
    path.write_text(
        f"""
name: customer_batch
dimensions:
  customer: [{names}]
  job_type: [classification, segmentation, use_case_analysis]
  period: [daily, weekly, monthly]
exclude:
  - {{job_type: use_case_analysis, period: daily}}
params: {params}
queues: {{input: {base}-in, results: {base}-out{queue_extra}}}
target_payloads_per_shard: 40
{extra}
"""
    )
    return path

