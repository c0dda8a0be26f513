"""``batchq ledger --partitions`` against a real SQLite store: recounts with --spec, reads back what was
recorded without it, prints slowest first, and its exit code says open / failed / done."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone

from batchq.cli import main
from batchq.store import ResultsStore
from batchq.messages import ErrorInfo, WorkResult, parse_payload
from batchq.plan import Plan
from batchq.spec import BatchSpec

SPEC = """name: cli_parts
job_type: j
dimensions:
  customer: [a, b, c]
  item: [1, 2]
partition_by: [customer]
queues: {input: in, results: out}
"""
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def test_partitions_cli(tmp_path, capsys):
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(SPEC)
    store_url = f"sqlite:///{tmp_path}/r.db"
    plan = Plan(BatchSpec.from_yaml(spec_path), "r1")
    payloads = [parse_payload(b) for s in plan.shards() for _, b in plan.iter_bodies(s)]
    sink = ResultsStore(store_url)
    late = {"a": 50, "b": 5, "c": 20}
    results = [
        WorkResult(batch=p.batch, run_id=p.run_id, key=p.key, plan=p.plan, enqueued_at=T0, first_received_at=T0 + timedelta(seconds=1),
                   status="failed" if p.dims == {"customer": "b", "item": 2} else "succeeded",
                   error=ErrorInfo(type="E", message="x") if p.dims == {"customer": "b", "item": 2} else None,
                   finished_at=T0 + timedelta(seconds=late[p.dims["customer"]]))
        for p in payloads if p.dims["customer"] != "c" or p.dims["item"] == 1
    ]
    # Time to last result counts from the run's first enqueue to the result's commit (applied_at):
    # customer a's results are committed last, so a is the slowest closed partition.
    for customer in ("b", "c", "a"):
        sink.apply([r for r, p in zip(results, [p for p in payloads if p.dims["customer"] != "c" or p.dims["item"] == 1]) if p.dims["customer"] == customer])
        time.sleep(0.05)
    sink.close()
    base = ["ledger", "--store", store_url, "--run-id", "r1", "--partitions"]
    assert main([*base, "--spec", str(spec_path), "--json"]) == 3  # c is still open
    out = json.loads(capsys.readouterr().out)
    assert [r["partition"] for r in out["partitions"]] == ["c", "a", "b"]  # open first, then slowest
    assert (out["done"], out["failed"], out["pending"]) == (1, 1, 1)
    # Without --spec: what was recorded, as a table.
    assert main([*base, "--batch", "cli_parts"]) == 3
    text = capsys.readouterr().out.splitlines()
    assert text[0].startswith("partition") and text[1].split()[:2] == ["c", "pending"]
    assert main([*base, "--batch", "nothing"]) == 3
