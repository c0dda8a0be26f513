"""A run repaired with the CLI's ``batchq rerun`` leaves no trace in Airflow: with ``[batchq]
view_ledger_conn_id`` the Batch view reads the run's current ledger and its repairs from the ledger store
(through an Airflow connection, as the API server would), and the run's report shows them."""

from __future__ import annotations

import json

import pytest
from batchq.cli import main
from batchq.monitor.report import run_report

from tests.integration.cli.test_rerun import drain_keys, failed_run, result, setup  # noqa: F401 - the fixture

pytestmark = pytest.mark.integration


def test_the_view_reads_a_cli_repair_from_the_ledger_store(setup, sqs_client, monkeypatch, capsys):  # noqa: F811
    from batchq.airflow.views.data import _stored_runs

    path, spec, plan, store, urls = setup
    _, failed, _ = failed_run(plan, store, sqs_client, urls)
    recorded = {"batch": spec.name, "run_id": plan.run_id, "expected": plan.expected, "succeeded": plan.expected - len(failed),
                "failed": len(failed), "quarantined": 0, "pending": 0, "outcome": "failed"}  # what the drain task left in XCom
    base = ["rerun", "--spec", str(path), "--run-id", plan.run_id, "--store", str(store.engine.url)]
    assert main([*base, "--failed", "--reason", "handler fixed", "--by", "cli:ana"]) == 0
    capsys.readouterr()
    store.apply([result(plan, k, "succeeded") for k in drain_keys(sqs_client, urls.input)])
    assert main(["ledger", "--store", str(store.engine.url), "--spec", str(path), "--run-id", plan.run_id, "--close"]) == 0

    # Not configured: Airflow's record alone (no store opened).
    assert _stored_runs([(spec.name, plan.run_id)]) == {}
    monkeypatch.setenv("AIRFLOW_CONN_BATCHQ_LEDGER", json.dumps({"conn_type": "sqlite", "host": store.engine.url.database}))
    monkeypatch.setenv("AIRFLOW__BATCHQ__VIEW_LEDGER_CONN_ID", "batchq_ledger")
    stored = _stored_runs([(spec.name, plan.run_id), (spec.name, "no-such-run")])
    assert set(stored) == {plan.run_id}
    r = run_report("dag", plan.run_id, [("return_value", recorded)], state="failed", stored=stored[plan.run_id])
    assert (r.ledger.outcome, r.ledger.failed, r.ledger_source) == ("succeeded", 0, "the ledger store")
    assert r.repairs.repaired and [(x.requested_by, x.reason, x.sent, x.outcome_after) for x in r.repairs.stored] == [("cli:ana", "handler fixed", len(failed), "succeeded")]

    # An unreachable store leaves the page on Airflow's record, never an error.
    monkeypatch.setenv("AIRFLOW_CONN_BATCHQ_LEDGER", json.dumps({"conn_type": "postgres", "host": "127.0.0.1", "port": 1, "schema": "x", "login": "u"}))
    assert _stored_runs([(spec.name, plan.run_id)]) == {}
