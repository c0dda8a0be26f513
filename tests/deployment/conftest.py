"""A live Airflow deployment on loopback: API server, scheduler, DAG processor and triggerer as separate
processes on PostgreSQL, with ``batchq workers`` outside Airflow, against the test SQS endpoint.

- ``deploy_db`` (session): a fresh PostgreSQL database ``batchq_deploy_<pid>`` holding Airflow's metadata
  and the batchq sink/ledger tables, migrated once (``airflow db migrate``) and dropped at the end.
- ``start_deployment(executor, spec, ...)`` (module): starts the processes with that executor and
  returns a :class:`Deployment` — REST calls with a real token, metadata queries, kill/restart of any
  process by name. Everything is stopped (process groups, SIGTERM then SIGKILL) at the end of the module.
- Each process logs to ``<AIRFLOW_HOME>/logs/<name>.log``; when a test fails the tails of all of them
  are attached to its report.

Only loopback: the API server on a free port, log servers on free ports, Redis on 127.0.0.1:6379 for the
Celery broker (a queue name unique to this session, so other users of that Redis are never touched).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import free_port

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
AIRFLOW_BIN = VENV_BIN / "airflow"
HERE = Path(__file__).resolve().parent
PG_SERVER = "postgres@127.0.0.1:5432"
REDIS_URL = "redis://127.0.0.1:6379/0"
#: Every live deployment of the session, so a failing test's report can carry their logs.
_LIVE: list[Deployment] = []


def wait_until(check: Callable[[], Any], *, timeout: float, what: str, interval: float = 0.5, on_timeout: Callable[[], str] | None = None) -> Any:
    """Poll ``check`` until it returns something truthy (returned); fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            detail = on_timeout() if on_timeout else ""
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}\n{detail}")
        time.sleep(interval)


@dataclass
class Process:
    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    popen: subprocess.Popen | None = None
    #: Stopped or killed on purpose (not a crash): :meth:`Deployment.assert_alive` ignores it.
    down: bool = False

    def start(self) -> None:
        self.down = False
        with open(self.log_path, "ab") as log:
            log.write(f"\n==== start {' '.join(self.argv)} at {time.strftime('%H:%M:%S')}\n".encode())
            log.flush()
            # Its own session: kill -9 of the group takes every child (task processes, worker children) too.
            self.popen = subprocess.Popen(
                self.argv, env=self.env, cwd=self.env["AIRFLOW_HOME"], stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )

    @property
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def signal_group(self, sig: int) -> None:
        if self.popen is None:
            return
        try:
            os.killpg(self.popen.pid, sig)
        except ProcessLookupError:
            pass

    def kill9(self) -> None:
        """``kill -9`` of the whole process group, as a crashed machine would go."""
        self.down = True
        self.signal_group(signal.SIGKILL)
        self.popen.wait(timeout=30)

    def stop(self, timeout: float = 30) -> None:
        if self.popen is None:
            return
        self.down = True
        self.signal_group(signal.SIGTERM)
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
        # Whatever is left of the group (a task process, a pool child) goes too.
        self.signal_group(signal.SIGKILL)
        try:
            self.popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass

    def tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


@dataclass
class Deployment:
    """A running Airflow (plus batchq workers) on loopback.

    :param home: its ``AIRFLOW_HOME``.
    :param env: the environment every process gets.
    :param db_url: the metadata (and sink) database, a ``postgresql://`` DSN.
    :param api_url: the API server's base URL.
    """

    home: Path
    env: dict[str, str]
    db_url: str
    api_url: str
    executor: str
    processes: dict[str, Process] = field(default_factory=dict)
    #: The ``job`` row id of the live triggerer process (see :func:`start_triggerer`).
    triggerer_job_id: int | None = None
    _token: str | None = None

    # -- processes -------------------------------------------------------------------------------
    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> Process:
        proc = self.processes.get(name)
        if proc is None:
            proc = Process(name, argv, {**self.env, **(env or {})}, self.home / "logs" / f"{name}.log")
            self.processes[name] = proc
        proc.start()
        return proc

    def restart(self, name: str) -> Process:
        proc = self.processes[name]
        proc.start()
        return proc

    def airflow(self, name: str, *args: str, env: dict[str, str] | None = None) -> Process:
        return self.start(name, [str(AIRFLOW_BIN), *args], env=env)

    def start_workers(self, name: str, spec: Path, *, max_workers: int = 1) -> Process:
        """``batchq workers`` (the supervisor and its ``batchq worker`` processes) on the spec's queues."""
        return self.start(name, [
            sys.executable, "-m", "batchq.cli", "workers", "--spec", str(spec), "--handlers", "batchq.examples",
            "--endpoint-url", self.env["BATCHQ_SQS_ENDPOINT"], "--min", "1", "--max", str(max_workers),
            "--backlog-per-worker", "40", "--poll-interval", "1", "--wait-seconds", "1", "--concurrency", "4",
            "--grace-period", "5", "--worker-id", name,
        ])

    def stop_all(self) -> None:
        for proc in reversed(list(self.processes.values())):
            proc.stop()

    def logs(self, lines: int = 60) -> str:
        return "\n".join(f"---- {p.name} ({p.log_path}) ----\n{p.tail(lines)}" for p in self.processes.values())

    def assert_alive(self) -> None:
        dead = [f"{p.name} (exit {p.popen.returncode})" for p in self.processes.values() if p.popen is not None and not p.down and not p.alive]
        assert not dead, f"deployment processes exited: {dead}\n{self.logs()}"

    # -- metadata database -----------------------------------------------------------------------
    def query(self, sql: str, *params: Any) -> list[tuple]:
        import psycopg

        with psycopg.connect(self.db_url, autocommit=True) as conn:
            return conn.execute(sql, params).fetchall()

    def running_job_ids(self, job_type: str) -> set[int]:
        rows = self.query("select id from job where job_type = %s and state = 'running'", job_type)
        return {r[0] for r in rows}

    # -- REST API ---------------------------------------------------------------------------------
    def token(self) -> str:
        """A JWT from ``POST /auth/token`` with the simple auth manager's generated admin password."""
        if self._token is None:
            passwords = json.loads((self.home / "simple_auth_manager_passwords.json.generated").read_text())
            body = self._http("POST", "/auth/token", {"username": "admin", "password": passwords["admin"]}, auth=False)
            self._token = body["access_token"]
        return self._token

    def api(self, method: str, path: str, body: dict | None = None) -> Any:
        return self._http(method, f"/api/v2{path}", body)

    def _http(self, method: str, path: str, body: dict | None, auth: bool = True) -> Any:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if auth:
            headers["Authorization"] = f"Bearer {self.token()}"
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.api_url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=60) as resp:
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            raise AssertionError(f"{method} {path} -> HTTP {exc.code}: {exc.read().decode(errors='replace')[:2000]}") from None

    def api_ready(self) -> bool:
        try:
            with urllib.request.urlopen(self.api_url + "/api/v2/monitor/health", timeout=5) as resp:
                return resp.status == 200
        except OSError:
            return False

    # -- runs -------------------------------------------------------------------------------------
    def trigger(self, dag_id: str, run_id: str, conf: dict | None = None) -> dict:
        """Unpause ``dag_id`` and trigger a run through the REST API, as a user would (``conf``: the
        trigger form's parameters, e.g. ``{"repair_run_id": ...}``)."""
        self.api("PATCH", f"/dags/{dag_id}", {"is_paused": False})
        body = {"dag_run_id": run_id, "logical_date": None, **({"conf": conf} if conf else {})}
        return self.api("POST", f"/dags/{dag_id}/dagRuns", body)

    def run_state(self, dag_id: str, run_id: str) -> str:
        return self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}")["state"]

    def task_states(self, dag_id: str, run_id: str) -> dict[tuple[str, int], str]:
        rows = self.query("select task_id, map_index, state from task_instance where dag_id = %s and run_id = %s", dag_id, run_id)
        return {(t, m): s for t, m, s in rows}

    def wait_run_finished(self, dag_id: str, run_id: str, timeout: float = 300) -> str:
        def finished() -> str | None:
            self.assert_alive()
            state = self.run_state(dag_id, run_id)
            return state if state in ("success", "failed") else None

        return wait_until(finished, timeout=timeout, interval=1, what=f"run {run_id} of {dag_id} to finish",
                          on_timeout=lambda: f"tasks: {self.task_states(dag_id, run_id)}\n{self.logs()}")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed and _LIVE:
        for dep in _LIVE:
            report.sections.append((f"deployment logs ({dep.executor})", dep.logs(80)))


@pytest.fixture(scope="session")
def deploy_db(pg_url) -> Iterator[str]:
    """A fresh database for this session's deployments (metadata + sink), dropped at the end."""
    import psycopg

    name = f"batchq_deploy_{os.getpid()}"
    admin = f"postgresql://{PG_SERVER}/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'drop database if exists "{name}" with (force)')
        conn.execute(f'create database "{name}"')
    try:
        yield f"postgresql://{PG_SERVER}/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'drop database if exists "{name}" with (force)')


@pytest.fixture(scope="session")
def airflow_base(tmp_path_factory, deploy_db) -> dict[str, str]:
    """The environment every deployment process shares; ``airflow db migrate`` has run on ``deploy_db``."""
    home = tmp_path_factory.mktemp("airflow-deploy-home")
    (home / "logs").mkdir()
    sql_alchemy_conn = deploy_db.replace("postgresql://", "postgresql+psycopg://")
    env = {
        **os.environ,
        # Airflow spawns `airflow` subcommands (task runners, log servers): the venv's bin comes first.
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        # This tree's batchq (not the shared editable install), and deploy_hostname for hostname_callable.
        "PYTHONPATH": os.pathsep.join([str(REPO / "include"), str(HERE), os.environ.get("PYTHONPATH", "")]),
        "PYTHONUNBUFFERED": "1",
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": sql_alchemy_conn,
        # psycopg 3 is async too; Airflow would otherwise derive an asyncpg URL (not installed).
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC": sql_alchemy_conn,
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE": "True",
        "AIRFLOW__CORE__HOSTNAME_CALLABLE": "deploy_hostname.from_env",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
        "AIRFLOW__API__SECRET_KEY": secrets.token_hex(16),
        # Runs only when a user triggers them: no scheduled run of the example DAG gets in the way.
        "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
        # A task whose process died (kill -9 of its worker) is failed and retried in seconds, not minutes.
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "20",
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
        # A task a killed Celery worker had taken but not started stays `queued` until this timeout
        # requeues it (defaults: 600 s, checked every 120 s).
        "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "60",
        "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT_CHECK_INTERVAL": "10",
        "AIRFLOW__CORE__DEFAULT_TASK_RETRIES": "2",
        "AIRFLOW__CORE__DEFAULT_TASK_RETRY_DELAY": "2",
        # A killed triggerer's triggers go to a live one after 10 s without heartbeat (default 30).
        "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "2",
        "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "10",
        # Log servers on free ports: the defaults (8793/8794) may be taken by someone else's Airflow.
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
        # Exact emulator counters: a short stability window is enough (AWS: keep the 60 s default).
        "AIRFLOW__BATCHQ__WAIT_STABLE_FOR_S": "2",
        "AIRFLOW__BATCHQ__WAIT_POLL_INTERVAL_S": "1",
        "AIRFLOW_CONN_BATCHQ_SINK": sql_alchemy_conn,
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    for name in ("BATCHQ_CUSTOMER_BATCH_SPEC", "AIRFLOW_CONFIG", "AIRFLOW__CORE__EXECUTOR", "BATCHQ_SQS_ENDPOINT",
                 "AIRFLOW__BATCHQ__TRIGGER_MIN_EVENT_AGE_S"):  # the real scheduler: the default hold applies
        env.pop(name, None)
    proc = subprocess.run([str(AIRFLOW_BIN), "db", "migrate"], env=env, cwd=home, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL, check=False)
    assert proc.returncode == 0, f"airflow db migrate exited {proc.returncode}:\n{(proc.stdout + proc.stderr)[-4000:]}"
    return env


@pytest.fixture(scope="module")
def start_deployment(airflow_base, tmp_path_factory) -> Iterator[Callable[..., Deployment]]:
    """Factory: ``start_deployment(executor=..., spec=..., sqs_endpoint=..., extra_env=...)`` starts
    api-server, scheduler, dag-processor and triggerer (and ``celery_workers`` Celery workers named
    ``deploy-a``, ``deploy-b``...) and waits until the DAG is parsed and every process is up."""
    started: list[Deployment] = []

    def factory(*, executor: str, spec: Path, sqs_endpoint: str, celery_workers: int = 0, extra_env: dict[str, str] | None = None) -> Deployment:
        home = Path(airflow_base["AIRFLOW_HOME"])
        port = free_port()
        region = airflow_base.get("AWS_DEFAULT_REGION", "us-east-1")
        connection = {
            "conn_type": "aws",
            "login": airflow_base.get("AWS_ACCESS_KEY_ID", "testing"),
            "password": airflow_base.get("AWS_SECRET_ACCESS_KEY", "testing"),
            "extra": {"endpoint_url": sqs_endpoint, "region_name": region},
        }
        env = {
            **airflow_base,
            "AIRFLOW__CORE__EXECUTOR": executor,
            "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
            "AIRFLOW_CONN_AWS_DEFAULT": json.dumps(connection),
            "BATCHQ_SQS_ENDPOINT": sqs_endpoint,
            "BATCHQ_CUSTOMER_BATCH_SPEC": str(spec),
            **(extra_env or {}),
        }
        dep = Deployment(home=home, env=env, db_url=airflow_base["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].replace("postgresql+psycopg://", "postgresql://"),
                         api_url=f"http://127.0.0.1:{port}", executor=executor)
        started.append(dep)
        _LIVE.append(dep)
        dep.airflow("api-server", "api-server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1")
        dep.airflow("dag-processor", "dag-processor")
        dep.airflow("scheduler", "scheduler")
        start_triggerer(dep)
        celery = [start_celery_worker(dep, f"deploy-{chr(ord('a') + i)}") for i in range(celery_workers)]
        wait_until(lambda: dep.assert_alive() or dep.api_ready(), timeout=240, interval=1, what="the API server", on_timeout=dep.logs)
        # Parsed by *this* deployment: the serialized DAG carries this spec's path (an earlier deployment
        # on the same database left its own version behind).
        wait_until(lambda: dep.assert_alive() or dep.query(
            "select 1 from serialized_dag s join dag d on d.dag_id = s.dag_id where s.dag_id = 'customer_batch' and not d.is_stale "
            "and s.data::text like %s", f"%{spec}%"), timeout=240, interval=1, what="the DAG processor to parse customer_batch", on_timeout=dep.logs)
        for worker in celery:  # both consuming before anything is queued, so the shards spread over them
            wait_until(lambda worker=worker: dep.assert_alive() or " ready." in worker.tail(200), timeout=240, interval=1,
                       what=f"{worker.name} to be ready", on_timeout=worker.tail)
        return dep

    yield factory
    for dep in started:
        dep.stop_all()
        _LIVE.remove(dep)


def start_triggerer(dep: Deployment) -> int:
    """(Re)start the triggerer and return the id of its ``TriggererJob`` once it heartbeats."""
    before = dep.query("select coalesce(max(id), 0) from job where job_type = 'TriggererJob'")[0][0]
    if "triggerer" in dep.processes:
        dep.restart("triggerer")
    else:
        dep.airflow("triggerer", "triggerer", "--capacity", "50")

    def new_job() -> int | None:
        dep.assert_alive()
        rows = dep.query("select id from job where job_type = 'TriggererJob' and state = 'running' and id > %s order by id desc", before)
        return rows[0][0] if rows else None

    job_id = wait_until(new_job, timeout=240, interval=1, what="the triggerer's job", on_timeout=dep.logs)
    dep.triggerer_job_id = job_id
    return job_id


def start_celery_worker(dep: Deployment, hostname: str) -> Process:
    """``airflow celery worker -H <hostname>`` on this session's queue; its tasks report ``hostname``."""
    return dep.airflow(
        f"celery-{hostname}", "celery", "worker", "-H", hostname, "-q", dep.env["AIRFLOW__OPERATORS__DEFAULT_QUEUE"],
        "--concurrency", "2", "--skip-serve-logs", "--pid", str(dep.home / f"celery-{hostname}.pid"), "--without-mingle",
        env={"BATCHQ_DEPLOY_HOSTNAME": hostname},
    )


def celery_env(db_url: str) -> dict[str, str]:
    """Celery on the local Redis (a queue of our own) with results in the deployment's PostgreSQL."""
    return {
        "AIRFLOW__CELERY__BROKER_URL": REDIS_URL,
        "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + db_url.replace("postgresql://", "postgresql+psycopg://"),
        "AIRFLOW__OPERATORS__DEFAULT_QUEUE": f"batchq-deploy-{os.getpid()}",
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": "2",
    }


@pytest.fixture
def stop_workers(deployment):
    """Stops every ``batchq workers`` a test started (the deployment's Airflow processes stay up)."""
    yield
    for name, proc in deployment.processes.items():
        if name.startswith("workers-"):
            proc.stop()
