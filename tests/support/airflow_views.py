"""An Airflow home for the plugin API and Batch view tests (session-scoped ``view_home`` fixture).

It has the demo DAGs of ``batch_view_dags/`` (one run each, made with ``airflow dags test``), spec files
for their batches with unique queues on the test SQS endpoint, the per-DAG test auth manager
(:mod:`tests.support.dag_scoped_auth`) with users ``admin`` (admin) and ``scoped`` (viewer of ``bv_alpha``
only), and ``[batchq] api_aws_conn_id`` pointing at the test endpoint.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DEMO_DAGS = Path(__file__).with_name("batch_view_dags")
#: What the demo DAGs record (see batch_view_dags/batch_view_demo.py).
ALPHA = {"dag_id": "bv_alpha", "batch": "bvalpha", "expected": 120, "succeeded": 117, "failed": 3, "quarantined": 1, "pending": 0}
BETA = {"dag_id": "bv_beta", "batch": "bvbeta", "expected": 40}
#: The stand-in repair run of bv_alpha's run: re-sends its 3 failed keys (conf ``repair_reason`` below).
ALPHA_REPAIR = {"sent": 3, "reason": "fixed <the> orders handler", "requested_at": "2026-01-01 01:00:00 UTC"}
PASSWORDS = {"admin": "admin-pw-for-tests", "scoped": "scoped-pw-for-tests"}
#: The batch of a spec in the spec directory that no DAG uses.
ORPHAN_BATCH = "bv_orphan"


@dataclass
class ViewHome:
    home: object  # tests.e2e.conftest.AirflowHome
    spec_dir: Path
    queues: dict[str, dict[str, str]]
    run_ids: dict[str, str] = field(default_factory=dict)
    #: bv_alpha's stand-in repair run (its conf names bv_alpha's run as ``repair_run_id``).
    repair_run_id: str = ""

    @property
    def env(self) -> dict[str, str]:
        return self.home.env


@pytest.fixture(scope="session")
def view_home(tmp_path_factory, airflow_home, sqs_client) -> ViewHome:
    from batchq.spec import BatchSpec
    from batchq.sqs.queues import ensure_queues

    path = tmp_path_factory.mktemp("view-home")
    spec_dir = path / "specs"
    spec_dir.mkdir()
    queues = {}
    for batch in (ALPHA["batch"], BETA["batch"]):
        base = f"bv-{uuid.uuid4().hex[:8]}"
        spec_file = spec_dir / f"{batch}.yaml"
        spec_file.write_text(f"name: {batch}\ndimensions: {{n: [1, 2, 3]}}\njob_type: noop\nqueues: {{input: {base}-in, results: {base}-out}}\n")
        urls = ensure_queues(sqs_client, BatchSpec.from_yaml(spec_file).queues)
        queues[batch] = {"input": urls.input, "results": urls.results}
    # A spec no DAG produces: a DAG-scoped user must never see it (nor learn that it exists).
    orphan_base = f"bv-{uuid.uuid4().hex[:8]}"
    orphan = spec_dir / f"{ORPHAN_BATCH}.yaml"
    orphan.write_text(f"name: {ORPHAN_BATCH}\ndimensions: {{n: [1]}}\njob_type: noop\nqueues: {{input: {orphan_base}-in, results: {orphan_base}-out}}\n")
    ensure_queues(sqs_client, BatchSpec.from_yaml(orphan).queues)
    env = {
        **airflow_home.env,
        "AIRFLOW_HOME": str(path),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{path / 'airflow.db'}",
        "AIRFLOW__CORE__DAGS_FOLDER": str(DEMO_DAGS),
        "AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE": "True",
        "AIRFLOW__CORE__AUTH_MANAGER": "tests.support.dag_scoped_auth.DagScopedAuthManager",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin,scoped:viewer",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(path / "passwords.json"),
        "BATCHQ_TEST_DAG_GRANTS": json.dumps({"scoped": [ALPHA["dag_id"]]}),
        "AIRFLOW__BATCHQ__SPEC_DIR": str(spec_dir),
        "AIRFLOW__BATCHQ__API_AWS_CONN_ID": "aws_default",
        "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "include"), os.environ.get("PYTHONPATH", "")]),
    }
    (path / "passwords.json").write_text(json.dumps(PASSWORDS))
    home = type(airflow_home)(path=path, sqs_endpoint=airflow_home.sqs_endpoint, env=env)
    home.run("db", "migrate", timeout=300)
    view = ViewHome(home=home, spec_dir=spec_dir, queues=queues)
    from datetime import datetime, timedelta, timezone

    logical_date = datetime.now(timezone.utc).replace(microsecond=0).isoformat()
    for dag in (ALPHA, BETA):
        _, run_id = home.dags_test(dag["dag_id"], logical_date, timeout=300)
        view.run_ids[dag["dag_id"]] = run_id
    later = datetime.fromisoformat(logical_date) + timedelta(minutes=1)
    conf = {"repair_run_id": view.run_ids[ALPHA["dag_id"]], "repair_reason": ALPHA_REPAIR["reason"]}
    _, view.repair_run_id = home.dags_test(ALPHA["dag_id"], later.isoformat(), conf=conf, timeout=300)
    return view


# Runs in a subprocess with the Airflow home's environment: builds the API server exactly as
# `airflow api-server` does (plugins and auth manager included), then calls it in-process.
_CLIENT = textwrap.dedent(
    """
    import json, sys
    from fastapi.testclient import TestClient
    from airflow.api_fastapi.app import create_app, get_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    client = TestClient(create_app("all"))
    roles = {"admin": "admin", "scoped": "viewer"}
    out = []
    for user, path in json.loads(sys.argv[1]):
        headers = {}
        if user == "bad-token":
            headers["Authorization"] = "Bearer nope"
        elif user:
            token = get_auth_manager().generate_jwt(SimpleAuthManagerUser(username=user, role=roles[user]))
            headers["Authorization"] = f"Bearer {token}"
        resp = client.get(path, headers=headers)
        try:
            body = resp.json()
        except ValueError:
            body = resp.text
        out.append({"status": resp.status_code, "body": body, "type": resp.headers.get("content-type", ""), "headers": dict(resp.headers)})
    print("RESULT " + json.dumps(out))
    """
)


def api_get(env: dict[str, str], requests: list[tuple[str | None, str]]) -> list[dict]:
    """GET each ``(user, path)`` from a real API server app (``user``: ``admin``, ``scoped``, ``bad-token``
    or ``None`` for anonymous); returns ``{"status", "body", "type"}`` per request."""
    proc = subprocess.run(
        [sys.executable, "-c", _CLIENT, json.dumps(requests)], env=env, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL, check=False
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(lines[-1].removeprefix("RESULT "))


@dataclass
class LiveServer:
    """``airflow api-server`` of the view home on a loopback port."""

    url: str

    def get(self, user: str | None, path: str, *, token: str | None = None, timeout: float = 120) -> dict:
        """GET ``path`` as ``user`` (bearer token from ``POST /auth/token``, or ``token``; ``None``:
        anonymous); returns ``{"status", "body", "type", "headers"}`` like :func:`api_get`."""
        import urllib.error
        import urllib.request

        token = token or (self.token(user) if user else None)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        req = urllib.request.Request(f"{self.url}{path}", headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                status, got, raw = resp.status, resp.headers, resp.read()
        except urllib.error.HTTPError as exc:
            status, got, raw = exc.code, exc.headers, exc.read()
        ctype = got.get("content-type", "")
        text = raw.decode()
        body = json.loads(text) if ctype.startswith("application/json") else text
        return {"status": status, "type": ctype, "body": body, "headers": {k.lower(): v for k, v in got.items()}}

    def token(self, user: str) -> str:
        import urllib.request

        body = json.dumps({"username": user, "password": PASSWORDS[user]}).encode()
        req = urllib.request.Request(f"{self.url}/auth/token", data=body, headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(req, timeout=60) as resp:
            return json.loads(resp.read())["access_token"]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_api_server(env: dict[str, str], cwd: Path, log: Path):
    """Start ``airflow api-server`` (one worker) with ``env`` on a loopback port and wait until it
    answers; returns ``(process, LiveServer)``. Stop it with :func:`stop_api_server`."""
    import time
    import urllib.error
    import urllib.request

    port = _free_port()
    airflow_bin = Path(sys.executable).with_name("airflow")
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [str(airflow_bin), "api-server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
            env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300  # generous: 2 shared cores
    try:
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"api-server exited {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{url}/api/v2/monitor/health", timeout=5):
                    break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                if time.monotonic() > deadline:
                    raise AssertionError(f"api-server not up after 300s:\n{log.read_text()[-3000:]}") from None
                time.sleep(1)
    except BaseException:
        stop_api_server(proc)
        raise
    return proc, LiveServer(url)


def stop_api_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=30)


@pytest.fixture(scope="session")
def view_server(view_home, tmp_path_factory):
    """A real ``airflow api-server`` (one worker) serving the view home, stopped after the session."""
    log = tmp_path_factory.mktemp("api-server") / "api-server.log"
    proc, server = start_api_server(view_home.env, view_home.home.path, log)
    try:
        yield server
    finally:
        stop_api_server(proc)
