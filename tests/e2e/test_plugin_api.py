"""The plugin's queue-lag API inside Airflow's real API server app: mounted at ``/batchq`` by the plugin,
refusing requests without Airflow's token, and reporting the queue counts a real endpoint holds."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import uuid

import pytest

from batchq.spec import BatchSpec
from batchq.queues import ensure_queues
from batchq.sqs import receive_messages, send_bodies

pytestmark = pytest.mark.e2e

# Runs in a subprocess with the Airflow home's environment: builds the API server exactly as
# `airflow api-server` does (plugins included), then calls it in-process.
CLIENT_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from fastapi.testclient import TestClient
    from airflow.api_fastapi.app import create_app, get_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    client = TestClient(create_app("all"))
    name = sys.argv[1]
    out = {"anonymous": client.get("/batchq/v1/batches").status_code}
    token = get_auth_manager().generate_jwt(SimpleAuthManagerUser(username="admin", role="admin"))
    headers = {"Authorization": f"Bearer {token}"}
    out["bad_token"] = client.get("/batchq/v1/batches", headers={"Authorization": "Bearer nope"}).status_code
    listing = client.get("/batchq/v1/batches", headers=headers)
    out["list_status"], out["list"] = listing.status_code, listing.json()
    queues = client.get(f"/batchq/v1/batches/{name}/queues?backlog_per_worker=5", headers=headers)
    out["queues_status"], out["queues"] = queues.status_code, queues.json()
    missing = client.get("/batchq/v1/batches/no-such-spec/queues", headers=headers)
    out["missing_status"] = missing.status_code
    print("RESULT " + json.dumps(out))
    """
)


def test_queue_lag_api_is_authenticated_and_reports_real_counts(airflow_home, sqs_client, tmp_path):
    base = f"api-{uuid.uuid4().hex[:8]}"
    spec_dir = tmp_path / "specs"
    spec_dir.mkdir()
    (spec_dir / "lagdemo.yaml").write_text(
        f"name: lagdemo\ndimensions: {{n: [1, 2, 3]}}\njob_type: noop\nqueues: {{input: {base}-in, results: {base}-out}}\n"
    )
    (spec_dir / "broken.yaml").write_text("name: broken\ndimensions: {n: []}\njob_type: x\nqueues: {input: a, results: b}\n")
    spec = BatchSpec.from_yaml(spec_dir / "lagdemo.yaml")
    urls = ensure_queues(sqs_client, spec.queues)
    send_bodies(sqs_client, urls.input, [(f"k{i}", "{}") for i in range(12)])
    leased = receive_messages(sqs_client, urls.input, max_messages=2, wait_seconds=0, visibility_timeout=300)
    send_bodies(sqs_client, urls.results, [("r", "{}")])

    env = {**airflow_home.env, "AIRFLOW__BATCHQ__SPEC_DIR": str(spec_dir)}
    proc = subprocess.run(
        [sys.executable, "-c", CLIENT_SCRIPT, "lagdemo"], env=env, capture_output=True, text=True, timeout=300
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = json.loads(lines[-1].removeprefix("RESULT "))

    assert out["anonymous"] == 401
    assert out["bad_token"] in (401, 403)
    assert out["list_status"] == 200
    by_file = {b["file"]: b for b in out["list"]["batches"]}
    assert by_file["lagdemo.yaml"]["name"] == "lagdemo"
    assert "is empty" in by_file["broken.yaml"]["error"]

    assert out["queues_status"] == 200, out["queues"]
    q = out["queues"]
    assert q["input"]["visible"] == 12 - len(leased)
    assert q["input"]["in_flight"] == len(leased)
    assert q["input"]["backlog"] == 12
    assert q["input"]["dlq_visible"] == 0
    assert q["results"]["visible"] == 1
    assert q["desired_workers"] == 3  # ceil(12 / 5)
    assert q["drained"] is False
    assert out["missing_status"] == 404
