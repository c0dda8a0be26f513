"""``batchq dev run``: any DAG, spec and handlers end to end on this machine, with a live view.

What it sets up (what ``make demo`` needs, and a user's own batch alike):

1. an SQS endpoint (:mod:`batchq.dev.endpoint`: given, LocalStack, or moto's server);
2. an Airflow home (SQLite) in ``--home``: the project's ``dags/``, ``AIRFLOW_CONN_AWS_DEFAULT`` with
   the endpoint as ``endpoint_url``, ``AIRFLOW_CONN_BATCHQ_SINK`` (SQLite in the home unless set),
   ``[batchq] spec_dir``, a short ``wait_stable_for_s`` (the emulators' counters are exact), and the
   project directory on ``PYTHONPATH`` so the DAG and the workers import its modules;
3. the spec's queues (idempotent, as the DAG's ``ensure_queues`` does);
4. ``batchq workers`` with ``--handlers`` in the background (it refuses to start when a job type of the
   spec has no handler: the run stops there, naming it);
5. ``airflow dags test DAG`` with the live view (:mod:`batchq.dev.progress`);
6. the summary: payloads, results, failures, peak depth, time to drain, lag p95, the drain curve.

Every process started here is stopped on the way out. Nothing here imports Airflow: Airflow runs as
the ``airflow`` command.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from batchq.errors import BatchqError

#: The sink connection ``batchq dev run`` provides (``sink_conn_id="batchq_sink"`` in the DAG).
SINK_CONN_ID = "batchq_sink"


@dataclass
class DevRunOptions:
    """What ``batchq dev run`` was asked to run (see :func:`register` in :mod:`batchq.cli.dev`).

    :param dag: the DAG id.
    :param handlers: modules whose ``@batchq.job`` handlers the workers load.
    :param project: the project directory (put on ``PYTHONPATH``).
    :param dags_folder: where the DAG files are (default ``<project>/dags``).
    :param spec: the spec YAML the workers consume (default: ``<spec_dir>/<dag>.yaml``, or the only one).
    :param spec_dir: ``[batchq] spec_dir`` (default ``<project>/specs``, else ``<project>/include/specs``).
    :param home: the Airflow home and every log (default ``<project>/.batchq-dev``).
    """

    dag: str
    handlers: list[str] = field(default_factory=list)
    project: Path = field(default_factory=Path.cwd)
    dags_folder: Path | None = None
    plugins_folder: Path | None = None
    spec: Path | None = None
    spec_dir: Path | None = None
    home: Path | None = None
    endpoint: str = "auto"
    logical_date: str | None = None
    min_workers: int = 1
    max_workers: int = 2
    backlog_per_worker: int = 200
    concurrency: int = 4
    stable_for_s: float = 5.0
    allow_missing_handlers: bool = False
    png: Path | None = None
    plain: bool = False

    def resolved(self) -> DevRunOptions:
        project = self.project.resolve()
        spec_dir = self.spec_dir or next((d for d in (project / "specs", project / "include" / "specs") if d.is_dir()),
                                         project / "specs")
        home = (self.home or project / ".batchq-dev").resolve()
        return DevRunOptions(**{
            **self.__dict__, "project": project, "dags_folder": (self.dags_folder or project / "dags").resolve(),
            "spec_dir": spec_dir.resolve(), "home": home, "spec": find_spec(self.spec, spec_dir.resolve(), self.dag),
            "png": self.png or home / "drain-curve.png",
            "logical_date": self.logical_date or datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S+00:00"),
        })


def find_spec(given: Path | None, spec_dir: Path, dag: str) -> Path:
    """The workers' spec: as given; else ``<spec_dir>/<dag>.yaml``; else the only YAML in ``spec_dir``."""
    if given is not None:
        if not Path(given).is_file():
            raise BatchqError(f"--spec {str(given)!r} does not exist")
        return Path(given).resolve()
    named = spec_dir / f"{dag}.yaml"
    if named.is_file():
        return named
    found = sorted(spec_dir.glob("*.yaml")) + sorted(spec_dir.glob("*.yml"))
    if len(found) == 1:
        return found[0]
    listed = ", ".join(p.name for p in found) or "none"
    raise BatchqError(f"which spec do the workers consume? Give --spec FILE (no {named.name} in {spec_dir}; "
                      f"YAML files there: {listed})")


def _tool(name: str) -> str:
    """A console script of this Python's environment (``airflow``), else the one on PATH."""
    beside = Path(sys.executable).with_name(name)
    found = str(beside) if beside.exists() else shutil.which(name)
    if not found:
        raise BatchqError(f"`{name}` not found: pip install 'batchq[airflow,dev]'")
    return found


def _say(text: str) -> None:
    print(f"\n\033[1m== {text}\033[0m" if sys.stdout.isatty() else f"\n== {text}", flush=True)


def airflow_env(opts: DevRunOptions, endpoint_url: str, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of every process of the run: what a user would otherwise have to learn from
    ``scripts/demo.sh``. Settings the caller already exported win, except the endpoint's own."""
    env = dict(os.environ if base is None else base)
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1"}.items():
        env.setdefault(key, value)
    assert opts.home is not None and opts.dags_folder is not None and opts.spec_dir is not None
    connection = {"conn_type": "aws", "login": env["AWS_ACCESS_KEY_ID"], "password": env["AWS_SECRET_ACCESS_KEY"],
                  "extra": {"endpoint_url": endpoint_url, "region_name": env["AWS_DEFAULT_REGION"]}}
    env.update({
        "AWS_EC2_METADATA_DISABLED": "true",
        "BATCHQ_SQS_ENDPOINT": endpoint_url,
        "AIRFLOW_HOME": str(opts.home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{opts.home / 'airflow.db'}",
        "AIRFLOW__CORE__DAGS_FOLDER": str(opts.dags_folder),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW_CONN_AWS_DEFAULT": json.dumps(connection),
        "PYTHONPATH": os.pathsep.join([str(opts.project), *filter(None, [env.get("PYTHONPATH")])]),
        "PYTHONUNBUFFERED": "1",
    })
    if opts.plugins_folder is not None:
        env["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(Path(opts.plugins_folder).resolve())
    env.setdefault("AIRFLOW__BATCHQ__SPEC_DIR", str(opts.spec_dir))
    env.setdefault(f"AIRFLOW_CONN_{SINK_CONN_ID.upper()}", f"sqlite:///{opts.home / 'results.db'}")
    # Emulator counters are exact: a short stability window keeps a local run quick (AWS: keep 60 s).
    env.setdefault("AIRFLOW__BATCHQ__WAIT_STABLE_FOR_S", f"{opts.stable_for_s:g}")
    env.setdefault("AIRFLOW__BATCHQ__WAIT_POLL_INTERVAL_S", "1")
    # batchq's sensor and drain operator follow Airflow's [operators] default_deferrable: wait in the
    # triggerer (which `airflow dags test` runs in-process), as every stack of this project does.
    env.setdefault("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE", "True")
    return env


def sqlite_sink_path(env: dict[str, str]) -> Path | None:
    """The SQLite file of the sink connection (``None`` for another database: the view shows no drained count)."""
    url = env.get(f"AIRFLOW_CONN_{SINK_CONN_ID.upper()}", "")
    return Path(url.removeprefix("sqlite:///")) if url.startswith("sqlite:///") else None


class _Processes:
    """Background processes of the run, each stopped (SIGTERM, then SIGKILL) on the way out."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []

    def start(self, argv: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen:
        out = open(log, "wb")  # noqa: SIM115 - the child writes to it for its lifetime
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                cwd=env.get("AIRFLOW_HOME"))
        self.procs.append(proc)
        return proc

    def stop_all(self, timeout_s: float = 60.0) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in reversed(self.procs):
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _refusal(log: Path) -> str | None:
    """The supervisor's one-line error (``batchq: error: ...``), if it wrote one."""
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return None
    found = re.findall(r"^batchq: error: .*$", text, flags=re.MULTILINE)
    return found[-1] if found else None


def expected_payloads(spec_path: Path) -> int | None:
    """The plan's payload count, when the spec resolves outside Airflow (no ``variable:`` source)."""
    from batchq.plan import Plan
    from batchq.spec import BatchSpec

    try:
        return int(Plan(BatchSpec.from_yaml(spec_path).resolve(), "preview").summary()["expected"])
    except Exception:  # noqa: BLE001 - e.g. a variable: source, resolved by Airflow only
        return None


def dev_run(opts: DevRunOptions) -> int:
    """Run ``opts.dag`` end to end (see the module docstring). Returns the exit code: 0 when the DAG run
    succeeded and its ledger closed as succeeded."""
    from batchq.dev import progress
    from batchq.dev.endpoint import free_port, start_endpoint
    from batchq.spec import BatchSpec
    from batchq.sqs.client import sqs_client
    from batchq.sqs.queues import ensure_queues

    opts = opts.resolved()
    logging.getLogger("botocore").setLevel(logging.WARNING)  # "Found credentials in environment variables"
    # Emulators take any credentials; real ones in the environment are kept (and never needed here).
    for key, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                       ("AWS_DEFAULT_REGION", "us-east-1"), ("AWS_EC2_METADATA_DISABLED", "true")):
        os.environ.setdefault(key, value)
    assert opts.home is not None and opts.spec is not None
    if not opts.dags_folder or not opts.dags_folder.is_dir():
        raise BatchqError(f"no DAGs folder at {opts.dags_folder} (give --dags-folder)")
    spec = BatchSpec.from_yaml(opts.spec)
    opts.home.mkdir(parents=True, exist_ok=True)
    airflow = _tool("airflow")
    procs = _Processes()
    endpoint = None
    try:
        _say("1. SQS endpoint")
        endpoint = start_endpoint(opts.endpoint, opts.home)
        print(f"{endpoint.kind} on {endpoint.url}" + (" (slow for deep queues; LocalStack is faster: make "
              "localstack-install in a checkout)" if endpoint.kind == "moto" else ""))
        env = airflow_env(opts, endpoint.url)
        if sqlite_sink_path(env) == opts.home / "results.db":
            (opts.home / "results.db").unlink(missing_ok=True)  # each run's sink starts empty

        _say(f"2. queues of {spec.name} and workers (batchq workers --handlers {' '.join(opts.handlers) or '-'})")
        urls = ensure_queues(sqs_client(endpoint_url=endpoint.url), spec.queues)
        print(f"input {urls.input}\nresults {urls.results}")
        statsd_port = free_port()
        workers_log = opts.home / "workers.log"
        argv = [sys.executable, "-m", "batchq.cli", "workers", "--spec", str(opts.spec),
                *[a for h in opts.handlers for a in ("--handlers", h)],
                "--min", str(opts.min_workers), "--max", str(opts.max_workers),
                "--backlog-per-worker", str(opts.backlog_per_worker), "--concurrency", str(opts.concurrency),
                "--poll-interval", "2", "--cooldown", "10", "--wait-seconds", "2"]
        if opts.allow_missing_handlers:
            argv.append("--allow-missing-handlers")
        supervisor = procs.start(argv, workers_log, {**env, "BATCHQ_STATSD_HOST": "127.0.0.1",
                                                     "BATCHQ_STATSD_PORT": str(statsd_port)})
        print(f"supervisor pid {supervisor.pid}: {opts.min_workers}..{opts.max_workers} workers (log: {workers_log})")

        def refused() -> bool:
            return supervisor.poll() is not None

        _say(f"3. Airflow home {opts.home} (SQLite; DAGs from {opts.dags_folder})")
        migrate = subprocess.run([airflow, "db", "migrate"], env=env, capture_output=True, text=True,
                                 cwd=opts.home, stdin=subprocess.DEVNULL, check=False)
        if migrate.returncode != 0:
            raise BatchqError(f"airflow db migrate failed:\n{(migrate.stdout + migrate.stderr)[-3000:]}")
        if refused():
            return _workers_refused(workers_log)

        expected = expected_payloads(opts.spec)
        dag_log = opts.home / "dags-test.log"
        _say(f"4. airflow dags test {opts.dag} {opts.logical_date} (live view; full log: {dag_log})")
        started = time.monotonic()
        dag = procs.start([airflow, "dags", "test", opts.dag, opts.logical_date], dag_log, env)
        sink = sqlite_sink_path(env) or opts.home / "no-sqlite-sink.db"
        series = opts.home / "series.json"
        progress.watch(str(opts.spec), sink, statsd_port, dag_log, series, expected=expected,
                       running=lambda: dag.poll() is None and not refused(), plain=opts.plain,
                       endpoint_url=endpoint.url)
        if refused() and dag.poll() is None:
            return _workers_refused(workers_log)
        dag_rc = dag.wait()
        if dag_rc != 0:
            print(_tail(dag_log, 40), file=sys.stderr)
            print(f"airflow dags test failed (exit {dag_rc}; full log: {dag_log})", file=sys.stderr)
            return 1
        for found in re.findall(r"shard \d+: \[[\d,]+, [\d,]+\): sent \d+/\d+ in [\d.]+s \(\d+ msg/s"
                                r"|drained \d+ result\(s\) at [\d.]+/s", dag_log.read_text(errors="replace")):
            print(f"  {found}{')' if found.startswith('shard') else ''}")
        print(f"DAG run finished in {time.monotonic() - started:.0f}s")

        _say("5. summary")
        run_id = _last_run_id(opts.home / "airflow.db", opts.dag)
        figures = progress.summary(str(opts.spec), sink, series, run_id=run_id, png=opts.png)
        if sqlite_sink_path(env) is None:
            print(f"(the sink is {SINK_CONN_ID} from your environment: read its ledger with `batchq ledger`)")
            return 0
        return 0 if figures.get("outcome") == "succeeded" else 1
    finally:
        procs.stop_all()
        if endpoint is not None:
            endpoint.stop()


def _workers_refused(log: Path) -> int:
    message = _refusal(log)
    print(message or _tail(log), file=sys.stderr)
    print(f"batchq dev run: the workers did not start (log: {log}); nothing was run", file=sys.stderr)
    return 2


def _last_run_id(db: Path, dag_id: str) -> str | None:
    try:
        with sqlite3.connect(db) as conn:
            row = conn.execute("select run_id from dag_run where dag_id = ? order by id desc limit 1", (dag_id,)).fetchone()
    except sqlite3.Error:
        return None
    return row[0] if row else None
