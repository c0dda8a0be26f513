"""``batchq dev run``'s pure parts: what it sets up for Airflow and the workers (the list a user had to
learn from scripts/demo.sh, issue 20) and how it finds the workers' spec."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from batchq.dev.run import DevRunOptions, airflow_env, find_spec, sqlite_sink_path
from batchq.errors import BatchqError


def _project(tmp_path: Path, *specs: str) -> Path:
    (tmp_path / "dags").mkdir()
    (tmp_path / "specs").mkdir()
    for name in specs:
        (tmp_path / "specs" / name).write_text("name: x\n")
    return tmp_path


def test_the_environment_holds_everything_a_local_run_needs(tmp_path):
    project = _project(tmp_path, "my_batch.yaml")
    opts = DevRunOptions(dag="my_batch", handlers=["my_jobs"], project=project).resolved()
    env = airflow_env(opts, "http://127.0.0.1:4566", base={"PYTHONPATH": "/elsewhere"})
    assert env["PYTHONPATH"].split(":") == [str(project), "/elsewhere"]  # the project's modules import
    conn = json.loads(env["AIRFLOW_CONN_AWS_DEFAULT"])
    assert conn["extra"]["endpoint_url"] == "http://127.0.0.1:4566" and env["BATCHQ_SQS_ENDPOINT"] == "http://127.0.0.1:4566"
    assert env["AIRFLOW_CONN_BATCHQ_SINK"] == f"sqlite:///{project / '.batchq-dev' / 'results.db'}"
    assert sqlite_sink_path(env) == project / ".batchq-dev" / "results.db"
    assert env["AIRFLOW__BATCHQ__WAIT_STABLE_FOR_S"] == "5"  # not the 60 s AWS default
    assert env["AIRFLOW__BATCHQ__SPEC_DIR"] == str(project / "specs")
    assert env["AIRFLOW__CORE__DAGS_FOLDER"] == str(project / "dags")
    assert env["AIRFLOW_HOME"] == str(project / ".batchq-dev")
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("sqlite:///")


def test_the_users_own_settings_win(tmp_path):
    opts = DevRunOptions(dag="my_batch", project=_project(tmp_path, "my_batch.yaml")).resolved()
    env = airflow_env(opts, "http://127.0.0.1:1", base={"AIRFLOW_CONN_BATCHQ_SINK": "postgresql://db/x",
                                                      "AIRFLOW__BATCHQ__WAIT_STABLE_FOR_S": "30"})
    assert env["AIRFLOW_CONN_BATCHQ_SINK"] == "postgresql://db/x" and sqlite_sink_path(env) is None
    assert env["AIRFLOW__BATCHQ__WAIT_STABLE_FOR_S"] == "30"


def test_the_workers_spec_is_the_dags_name_the_only_one_or_given(tmp_path):
    specs = _project(tmp_path, "my_batch.yaml", "other.yaml") / "specs"
    assert find_spec(None, specs, "my_batch") == specs / "my_batch.yaml"
    with pytest.raises(BatchqError, match=r"Give --spec FILE .*my_batch.yaml, other.yaml"):
        find_spec(None, specs, "third")
    (specs / "other.yaml").unlink()
    assert find_spec(None, specs, "third") == specs / "my_batch.yaml"  # the only one
    with pytest.raises(BatchqError, match="does not exist"):
        find_spec(tmp_path / "nope.yaml", specs, "x")
