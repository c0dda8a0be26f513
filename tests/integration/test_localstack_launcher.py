"""The dev/CI tooling that provides SQS endpoints: scripts/localstack.sh and bench/_endpoint.py.

LocalStack cases need .venv-localstack (``make localstack-install``; .ci/run installs it before the
tests): they skip without it on a laptop and fail under CI=true.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "localstack.sh"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _endpoint_module():
    sys.path.insert(0, str(REPO / "bench"))
    try:
        import _endpoint
    finally:
        sys.path.remove(str(REPO / "bench"))
    return _endpoint


def _roundtrip(url: str) -> None:
    sqs = _endpoint_module().boto3_client(url)
    q = sqs.create_queue(QueueName=f"launcher-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    sqs.send_message(QueueUrl=q, MessageBody="ping")
    msgs = sqs.receive_message(QueueUrl=q, WaitTimeSeconds=2).get("Messages", [])
    assert [m["Body"] for m in msgs] == ["ping"]
    sqs.delete_queue(QueueUrl=q)


def _proc_state(pid: int) -> str | None:
    """/proc State line of pid, or None once it is gone (a zombie still shows, as "Z")."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("State:"):
                return line.split(":", 1)[1].strip()
    except FileNotFoundError:
        return None
    return "?"


@pytest.fixture
def localstack_env(tmp_path):
    if subprocess.run(["bash", str(SCRIPT), "check"], capture_output=True).returncode != 0:
        msg = ".venv-localstack not installed (make localstack-install)"
        if IN_CI:
            pytest.fail(msg + " - .ci/run installs it before the tests")
        pytest.skip(msg)
    port = _endpoint_module().free_port()
    env = dict(os.environ, LOCALSTACK_PORT=str(port), LOCALSTACK_STATE_DIR=str(tmp_path / "ls"))
    yield port, env
    subprocess.run(["bash", str(SCRIPT), "stop"], env=env, capture_output=True)


def test_localstack_script_start_status_stop(localstack_env):
    port, env = localstack_env
    sh = ["bash", str(SCRIPT)]
    r = subprocess.run([*sh, "start"], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    pid = int((Path(env["LOCALSTACK_STATE_DIR"]) / "localstack.pid").read_text())

    r = subprocess.run([*sh, "status"], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["services"]["sqs"] in ("running", "available")
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/_localstack/health", timeout=5) as resp:
        assert resp.status == 200
    _roundtrip(f"http://127.0.0.1:{port}")

    t0 = time.monotonic()
    r = subprocess.run([*sh, "stop"], env=env, capture_output=True, text=True, timeout=60)
    took = time.monotonic() - t0
    log = (Path(env["LOCALSTACK_STATE_DIR"]) / "localstack.log").read_text()
    assert r.returncode == 0, r.stderr
    state = _proc_state(pid)
    assert state is None, f"pid {pid} still there ({state}) after stop ({took:.1f}s): {r.stderr}\n{log}"
    assert took < 20, f"stop took {took:.1f}s: {r.stderr}"
    assert subprocess.run([*sh, "status"], env=env, capture_output=True).returncode != 0


def test_bench_endpoint_moto():
    ep_mod = _endpoint_module()
    with ep_mod.sqs_endpoint(prefer="moto") as ep:
        assert ep.kind == "moto" and ep_mod.endpoint_kind == "moto"
        assert ep.url.startswith("http://127.0.0.1:")
        _roundtrip(ep.url)
    assert ep_mod.endpoint_kind is None


def test_bench_endpoint_env_override(monkeypatch):
    monkeypatch.setenv("BATCHQ_BENCH_SQS_ENDPOINT", "http://127.0.0.1:9")
    with _endpoint_module().sqs_endpoint() as ep:
        assert (ep.url, ep.kind) == ("http://127.0.0.1:9", "env")
