"""``batchq quarantine list|replay`` as a user runs them (issue 8): results an HTTP receiver refused are
quarantined; once it accepts them again a replay applies them through the sink, the ledger closes, and a
second replay does nothing (idempotent). A body still invalid stays quarantined (exit 1)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from batchq.drain import Drainer, HttpSink
from batchq.store import ResultsStore, RunLedger

from tests.integration.drain._helpers import make_results, put
from tests.support.http_receiver import Receiver

pytestmark = pytest.mark.integration


def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    import os

    return subprocess.run([sys.executable, "-m", "batchq.cli", *args], check=False, capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})})


def test_quarantine_list_and_replay(sqs_client, make_queue, tmp_path):
    url = make_queue()
    results = make_results(20)
    batch = results[0].batch
    refused = {results[4].key, results[13].key}
    put(sqs_client, url, results, extra_bodies=["[" * 100_000])
    ledger_url = f"sqlite:///{tmp_path}/ledger.db"
    store = ResultsStore(ledger_url)
    ledger = RunLedger(store, batch, "run-1", expected=20)
    with Receiver() as rx:
        rx.refuse_keys = set(refused)
        rx.require_headers = {"Authorization": "Bearer s3cret"}
        Drainer(sqs_client, url, HttpSink(f"{rx.url}/results", headers={"Authorization": "Bearer s3cret"}), store, receive_wait_s=1).run()
        assert not ledger.status().ok and ledger.status().quarantined == 2

        listed = _cli("quarantine", "list", "--store", ledger_url)
        assert listed.returncode == 0, listed.stderr
        rows = [json.loads(line) for line in listed.stdout.splitlines()]
        assert {r["key"] for r in rows} == refused | {None} and len(rows) == 3
        assert all("sink rejected" in r["reason"] for r in rows if r["key"])

        # The receiver is fixed: replay that run through it (credentials from the environment).
        rx.refuse_keys = set()
        args = ("quarantine", "replay", "--store", ledger_url, "--sink", f"{rx.url}/results", "--batch", batch, "--run-id", "run-1", "--header-env", "Authorization=SINK_AUTH")
        done = _cli(*args, env={"SINK_AUTH": "Bearer s3cret"})
        assert done.returncode == 0, done.stderr[-2000:]
        assert json.loads(done.stdout)["replayed"] == 2
        assert refused <= set(rx.rows) and all(rx.writes[k] == 1 for k in refused)
        status = ledger.status()
        assert status.ok and status.succeeded == 20 and status.quarantined == 0

        again = _cli(*args, env={"SINK_AUTH": "Bearer s3cret"})
        assert again.returncode == 0 and json.loads(again.stdout)["replayed"] == 0
        assert all(rx.writes[k] == 1 for k in refused)  # idempotent: nothing re-posted

        # The deep-JSON body (no batch/run) is still invalid: it stays, with a reason, and says so.
        rest = _cli("quarantine", "replay", "--store", ledger_url, "--sink", f"{rx.url}/results", "--header-env", "Authorization=SINK_AUTH", env={"SINK_AUTH": "Bearer s3cret"})
        assert rest.returncode == 1 and json.loads(rest.stdout)["not_replayed"] == 1
    pending = _cli("quarantine", "list", "--store", ledger_url)
    assert len(pending.stdout.splitlines()) == 1
    assert len(_cli("quarantine", "list", "--store", ledger_url, "--all").stdout.splitlines()) == 3
    store.close()
