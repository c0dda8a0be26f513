"""Store and sink URLs come from the environment or an Airflow connection; argv is optional and a
password on it is warned about (it is visible to every user in ``ps``)."""

from __future__ import annotations

import pytest
from batchq.cli import build_parser, main
from batchq.cli._urls import resolve_url_options
from batchq.errors import BatchqError

RERUN = ["rerun", "--spec", "s.yaml", "--run-id", "r1", "--history"]


def parse(argv):
    args = build_parser().parse_args(argv)
    resolve_url_options(args)
    return args


def test_store_from_the_environment_without_argv(monkeypatch, capsys):
    monkeypatch.setenv("BATCHQ_STORE_URL", "postgresql+psycopg://app:s3cret@db/results")
    assert parse(RERUN).store == "postgresql+psycopg://app:s3cret@db/results"
    assert "warning" not in capsys.readouterr().err


def test_sink_and_ledger_from_the_environment(monkeypatch):
    monkeypatch.setenv("BATCHQ_SINK_URL", "https://sink.example/results")
    monkeypatch.setenv("BATCHQ_LEDGER_URL", "sqlite:///ledger.db")
    args = parse(["drain", "--queue", "q"])
    assert (args.sink, args.ledger_url) == ("https://sink.example/results", "sqlite:///ledger.db")


def test_store_from_an_airflow_connection(monkeypatch):
    monkeypatch.delenv("BATCHQ_STORE_URL", raising=False)
    monkeypatch.setenv("AIRFLOW_CONN_RESULTS_DB", "postgres://app:s3cret-pw@db:5432/results")
    assert parse([*RERUN, "--store-conn-id", "results_db"]).store == "postgresql+psycopg://app:s3cret-pw@db:5432/results"


def test_a_password_on_argv_is_warned_about(monkeypatch, capsys):
    monkeypatch.delenv("BATCHQ_STORE_URL", raising=False)
    assert parse([*RERUN, "--store", "postgresql+psycopg://app:s3cret@db/results"]).store.endswith("@db/results")
    err = capsys.readouterr().err
    assert "warning" in err and "--store" in err and "BATCHQ_STORE_URL" in err and "s3cret" not in err
    parse([*RERUN, "--store", "sqlite:///results.db"])
    assert "warning" not in capsys.readouterr().err


def test_no_url_anywhere_names_the_sources(monkeypatch, capsys):
    monkeypatch.delenv("BATCHQ_STORE_URL", raising=False)
    with pytest.raises(BatchqError, match="BATCHQ_STORE_URL"):
        parse(RERUN)
    assert main(RERUN) == 2 and "--store-conn-id" in capsys.readouterr().err
