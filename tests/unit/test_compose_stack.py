"""docker-compose.yaml and the Astro project cannot start here (no Docker engine), so they are checked the
way a reviewer would: parsed, and every reference followed — build contexts and Dockerfiles (every COPY
source), mounted paths, Airflow settings (each a real option of the installed Airflow), connections
(parsed by Airflow, resolved to the services they name), host:port references (to a service listening
there), the worker command lines (through the real ``batchq`` parser), the emulator's queues (against the
spec), and the Grafana dashboard (valid JSON, every metric it queries one the code emits, through the
StatsD exporter's mapping)."""

from __future__ import annotations

import ast
import fnmatch
import json
import re
import shlex
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml
from batchq.cli import build_parser
from batchq.spec import BatchSpec

REPO = Path(__file__).resolve().parents[2]
SPEC = BatchSpec.from_yaml(REPO / "include" / "specs" / "customer_batch.yaml")
AIRFLOW_SERVICES = {"airflow-init", "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer"}


def load_yaml(name: str):
    return yaml.safe_load((REPO / name).read_text())


COMPOSE = load_yaml("docker-compose.yaml")
OVERRIDE = load_yaml("docker-compose.override.yml")


def services(compose=COMPOSE) -> dict:
    return compose["services"]


def env_of(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    return {k: str(v) for k, v in env.items()}


def elasticmq_conf() -> str:
    return (REPO / "deploy" / "elasticmq" / "elasticmq.conf").read_text()


def listening_ports(compose=COMPOSE) -> dict[str, set[int]]:
    """Container ports each service listens on, from its own configuration (not from the compose file's
    intent): published container ports, flags in its command, the emulator's config."""
    ports: dict[str, set[int]] = {}
    for name, svc in services(compose).items():
        found = ports.setdefault(name, set())
        for mapping in svc.get("ports", []):
            found.add(int(str(mapping).split(":")[-1].split("/")[0]))
        for arg in svc.get("command", []) if isinstance(svc.get("command"), list) else []:
            m = re.match(r"--[\w.-]+=(?:[\w.-]*):(\d+)$", str(arg))
            if m:
                found.add(int(m.group(1)))
        if "elasticmq" in str(svc.get("image", "")):
            found |= {int(p) for p in re.findall(r"bind-port\s*=\s*(\d+)", elasticmq_conf())}
        if name == "postgres" or "postgres:" in str(svc.get("image", "")):
            found.add(5432)
    return ports


def parse_batchq(argv: list[str]):
    """argv through the real ``batchq`` parser; image paths (/app/...) map to this repo so that the
    parser's own checks (the spec file exists) run against the files the image copies."""
    assert argv[0] == "batchq", argv
    argv = [str(container_path_to_repo(a)) if a.startswith("/app/") else a for a in argv]
    try:
        return build_parser().parse_args(argv[1:])
    except SystemExit as exc:  # argparse exits on a bad command line
        pytest.fail(f"batchq rejects {shlex.join(argv)} (exit {exc.code})")


def container_path_to_repo(path: str) -> Path:
    # The worker image copies include/specs/ to /app/include/specs/.
    assert path.startswith("/app/"), path
    return REPO / path.removeprefix("/app/")


# -- services and images ---------------------------------------------------------------------------------


def test_compose_has_the_official_airflow_services_and_the_batchq_stack():
    assert AIRFLOW_SERVICES | {"postgres", "elasticmq", "sqs-init", "worker", "realtime-db", "statsd-exporter",
                               "prometheus", "grafana"} <= set(services())


def test_airflow_service_commands_are_real_airflow_commands():
    from airflow.cli.cli_parser import get_parser

    parser = get_parser()
    for name in AIRFLOW_SERVICES:
        command = services()[name]["command"]
        if command[:2] == ["bash", "-c"]:
            argvs = [shlex.split(part) for part in command[2].split("&&")]
        else:
            argvs = [["airflow", *command]]  # the official image's entrypoint prefixes `airflow`
        for argv in argvs:
            assert argv[0] == "airflow", (name, argv)
            try:
                parser.parse_args(argv[1:])
            except SystemExit as exc:
                pytest.fail(f"{name}: airflow rejects {shlex.join(argv)} (exit {exc.code})")
    # One migration before everything else starts.
    for name in AIRFLOW_SERVICES - {"airflow-init"}:
        assert services()[name]["depends_on"]["airflow-init"]["condition"] == "service_completed_successfully"
    assert "db migrate" in services()["airflow-init"]["command"][2]


def dockerfile_copy_sources(dockerfile: Path) -> list[str]:
    sources = []
    for line in dockerfile.read_text().splitlines():
        if line.startswith("COPY") and "--from=" not in line:
            parts = [p for p in shlex.split(line)[1:] if not p.startswith("--")]
            sources += parts[:-1]
    return sources


@pytest.mark.parametrize("compose_file", ["docker-compose.yaml", "docker-compose.override.yml"])
def test_every_build_context_dockerfile_and_copy_source_exists(compose_file):
    compose = load_yaml(compose_file)
    built = [svc for svc in services(compose).values() if "build" in svc]
    assert built
    for svc in built:
        context = REPO / svc["build"]["context"]
        dockerfile = context / svc["build"]["dockerfile"]
        assert dockerfile.is_file(), dockerfile
        for source in dockerfile_copy_sources(dockerfile):
            assert (context / source).exists(), f"{dockerfile.name}: COPY {source} does not exist"
    # The root Dockerfile (Astro) copies nothing itself (the runtime's ONBUILD steps copy the project).
    assert (REPO / "requirements-dev.txt").is_file()


@pytest.mark.parametrize("compose_file", ["docker-compose.yaml", "docker-compose.override.yml"])
def test_every_mounted_host_path_exists(compose_file):
    compose = load_yaml(compose_file)
    named = set(compose.get("volumes") or {})
    mounts = 0
    for name, svc in services(compose).items():
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith((".", "/")):
                assert (REPO / source).exists(), f"{name}: mounted {source} does not exist"
                mounts += 1
            else:
                assert source in named, f"{name}: volume {source!r} is not declared"
    assert mounts >= 1


def test_depends_on_names_services_and_published_ports_are_loopback_and_unique():
    seen: dict[str, str] = {}
    for name, svc in services().items():
        for dep in svc.get("depends_on", {}):
            assert dep in services(), f"{name} depends on unknown {dep}"
        for mapping in svc.get("ports", []):
            host = str(mapping).rsplit(":", 1)[0]
            assert host.startswith("127.0.0.1:"), f"{name}: publish on loopback only, not {mapping}"
            assert host not in seen, f"{name} and {seen.get(host)} both publish {host}"
            seen[host] = name


# -- environment, connections, host:port references --------------------------------------------------------


def batchq_config_keys() -> set[str]:
    """[batchq] keys the code reads: the literal keys settings.py passes to its readers (every Airflow
    config read goes through it)."""
    text = (REPO / "include" / "batchq" / "airflow" / "settings.py").read_text()
    return set(re.findall(r"""\b_\w+\(\s*["']([a-z_]+)["']""", text))


def test_every_airflow_setting_is_a_real_option():
    from airflow.configuration import conf

    described = conf.configuration_description
    env = env_of(services()["airflow-scheduler"])
    settings = [k for k in env if k.startswith("AIRFLOW__")]
    assert len(settings) > 10
    for key in settings:
        _, section, option = key.lower().split("__", 2)
        if section == "batchq":
            assert option in batchq_config_keys(), f"{key}: batchq reads no [batchq] {option}"
        else:
            assert option in described.get(section, {}).get("options", {}), f"{key}: not an Airflow {section} option"
    # Class paths name classes that exist in the installed Airflow.
    import importlib

    module, _, name = env["AIRFLOW__CORE__AUTH_MANAGER"].rpartition(".")
    assert getattr(importlib.import_module(module), name)


def connection(env: dict[str, str], conn_id: str):
    from airflow.models.connection import Connection

    return Connection.from_json(env[f"AIRFLOW_CONN_{conn_id.upper()}"], conn_id=conn_id)


def test_aws_default_points_at_the_emulator():
    env = env_of(services()["airflow-triggerer"])
    conn = connection(env, "aws_default")
    url = urlsplit(conn.extra_dejson["endpoint_url"])
    assert url.port in listening_ports()[url.hostname] and "elasticmq" in services()[url.hostname]["image"]
    assert env["BATCHQ_SQS_ENDPOINT"] == conn.extra_dejson["endpoint_url"]
    # The emulator hands out queue URLs on the same host:port the containers use.
    conf = elasticmq_conf()
    assert re.search(rf"host\s*=\s*{url.hostname}\b", conf) and re.search(rf"port\s*=\s*{url.port}\b", conf)


def test_batchq_sink_resolves_to_the_real_time_systems_database(monkeypatch):
    from batchq.airflow.operators.drain import sink_target_from_connection
    from batchq.airflow.sinks import get_connection
    from sqlalchemy.engine import make_url

    # As the scheduler's Airflow reads it (the connection's own hook looks it up by id).
    env = env_of(services()["airflow-scheduler"])
    monkeypatch.setenv("AIRFLOW_CONN_BATCHQ_SINK", env["AIRFLOW_CONN_BATCHQ_SINK"])
    url = make_url(sink_target_from_connection(get_connection("batchq_sink")))
    db = env_of(services()[url.host])
    assert url.port in listening_ports()[url.host]
    assert (url.username, url.password, url.database) == (db["POSTGRES_USER"], db["POSTGRES_PASSWORD"], db["POSTGRES_DB"])
    # The example DAG drains into exactly this connection.
    assert 'sink_conn_id="batchq_sink"' in (REPO / "dags" / "customer_batch.py").read_text()


def test_metadata_db_and_every_host_port_reference_reach_a_listening_service():
    from sqlalchemy.engine import make_url

    ports = listening_ports()
    env = env_of(services()["airflow-scheduler"])
    db = make_url(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
    pg = env_of(services()[db.host])
    assert (db.username, db.password, db.database) == (pg["POSTGRES_USER"], pg["POSTGRES_PASSWORD"], pg["POSTGRES_DB"])
    checked = 0
    for name, svc in services().items():
        e = env_of(svc)
        refs = [urlsplit(v) for v in e.values() if re.match(r"https?://", v)]
        refs += [urlsplit(f"udp://{e[h]}:{e[p]}") for h, p in (("AIRFLOW__METRICS__STATSD_HOST", "AIRFLOW__METRICS__STATSD_PORT"),
                                                              ("BATCHQ_STATSD_HOST", "BATCHQ_STATSD_PORT")) if h in e]
        for ref in refs:
            assert ref.hostname in ports, f"{name}: {ref.geturl()} names no service"
            assert ref.port in ports[ref.hostname], f"{name}: {ref.hostname} does not listen on {ref.port}"
            checked += 1
    assert checked >= 10


def test_workers_run_the_autoscaler_on_the_spec_and_sqs_init_creates_its_queues():
    for compose in (COMPOSE, OVERRIDE):
        worker = services(compose)["worker"]
        args = parse_batchq(worker["entrypoint"] + worker["command"])
        assert args.command == "workers" and args.max_workers >= args.min_workers >= 1
        assert BatchSpec.from_yaml(args.spec).queues == SPEC.queues
        assert env_of(worker)["BATCHQ_SQS_ENDPOINT"] == "http://elasticmq:9324"
        # --scale worker=N needs no fixed replica count, container name or published port.
        assert "replicas" not in worker.get("deploy", {}) and "container_name" not in worker and "ports" not in worker
        # SIGKILL only after the worker's grace period and one long poll.
        assert int(worker["stop_grace_period"].rstrip("s")) > args.grace_period + args.wait_seconds
    init = services()["sqs-init"]
    args = parse_batchq(init["entrypoint"] + init["command"])
    assert (args.command, args.queues_command) == ("queues", "create")
    assert BatchSpec.from_yaml(args.spec).queues == SPEC.queues
    assert services()["worker"]["depends_on"]["sqs-init"]["condition"] == "service_completed_successfully"


def test_emulator_config_creates_the_specs_queues_and_dlqs_with_redrive():
    conf = elasticmq_conf()
    blocks = dict(re.findall(r'"([\w-]+)"\s*\{((?:[^{}]|\{[^{}]*\})*)\}', conf))
    q = SPEC.queues
    assert set(blocks) == {q.input, q.input_dlq, q.results, q.results_dlq}
    for queue, dlq, receives, visibility in ((q.input, q.input_dlq, q.max_receive_count, q.visibility_timeout_s),
                                             (q.results, q.results_dlq, q.results_max_receive_count, 60)):
        body = blocks[queue]
        assert re.search(rf'name\s*=\s*"{dlq}"', body)
        assert int(re.search(r"maxReceiveCount\s*=\s*(\d+)", body).group(1)) == receives
        assert int(re.search(r"defaultVisibilityTimeout\s*=\s*(\d+)\s*seconds", body).group(1)) == visibility


# -- metrics: StatsD exporter → Prometheus → Grafana ---------------------------------------------------------


def worker_side_metrics() -> dict[str, str]:
    """``batchq.<component>.<name>`` → kind, from the Airflow-free code: in each module, the component of
    its ``Metrics("<component>")`` and the literal names of its ``.incr/.gauge/.timing`` calls."""
    kinds = {"incr": "counter", "gauge": "gauge", "timing": "timer"}
    found: dict[str, str] = {}
    for path in (REPO / "include" / "batchq").rglob("*.py"):
        if "airflow" in path.parts:
            continue
        tree = ast.parse(path.read_text())
        components, calls = set(), []
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                if isinstance(node.func, ast.Name) and node.func.id == "Metrics":
                    components.add(node.args[0].value)
                elif isinstance(node.func, ast.Attribute) and node.func.attr in kinds and "metrics" in ast.unparse(node.func.value):
                    calls.append((node.args[0].value, kinds[node.func.attr]))
        for component in components:
            for name, kind in calls:
                found[f"batchq.{component}.{name}"] = kind
    return found


def airflow_side_metrics(monkeypatch) -> dict[str, str]:
    """What batchq.airflow.metrics really sends, captured from Airflow's stats client."""
    from batchq.airflow import metrics
    from batchq.monitor.trend import queue_gauges
    from batchq.sqs.snapshot import QueueSnapshot

    sent: dict[str, str] = {}

    class Recorder:
        def gauge(self, name, value, tags=None):
            sent[name] = "gauge"

        def incr(self, name, count=1, tags=None):
            sent[name] = "counter"

        def timing(self, name, value, tags=None):
            sent[name] = "timer"

    monkeypatch.setattr(metrics, "_stats", lambda: Recorder())
    # What the input wait (sensor and trigger) emits for a snapshot with a DLQ and an ETA.
    snapshot = QueueSnapshot(taken_at=0.0, visible=1, in_flight=2, delayed=3, dlq_visible=4)
    metrics.emit_queue_gauges("q", queue_gauges(snapshot, eta_s=5.0))
    metrics.emit_drain_report("b", {"applied": 1, "quarantined": 1, "sink_retries": 1, "rate_per_s": 1.0})
    metrics.emit_ledger("b", {"succeeded": 1, "failed": 1, "pending": 1, "expected": 3})
    return sent


def exporter_name(statsd_name: str) -> str | None:
    """The Prometheus name the StatsD exporter gives a StatsD name, by deploy/statsd/mapping.yml."""
    mapping = load_yaml("deploy/statsd/mapping.yml")
    for rule in mapping["mappings"]:
        pattern = rule["match"]
        if fnmatch.fnmatchcase(statsd_name, pattern) and statsd_name.count(".") == pattern.count("."):
            parts = [p for p, m in zip(statsd_name.split("."), pattern.split(".")) if m == "*"]
            return re.sub(r"\$\{(\d+)\}", lambda m, parts=parts: parts[int(m.group(1)) - 1], rule["name"])
    return None


def prometheus_series(monkeypatch) -> set[str]:
    emitted = {name: kind for name, kind in worker_side_metrics().items()}
    # Airflow prefixes everything it sends with [metrics] statsd_prefix.
    prefix = env_of(services()["airflow-scheduler"])["AIRFLOW__METRICS__STATSD_PREFIX"]
    emitted.update({f"{prefix}.{n}": k for n, k in airflow_side_metrics(monkeypatch).items()})
    series = set()
    for name, kind in emitted.items():
        prom = exporter_name(name)
        assert prom, f"{name}: no statsd-exporter mapping"
        # Timers are histograms (mapping defaults.observer_type): queried through _bucket/_sum/_count.
        series |= {prom + s for s in ("_bucket", "_sum", "_count")} if kind == "timer" else {prom}
    return series


def dashboard() -> dict:
    return json.loads((REPO / "deploy" / "grafana" / "dashboards" / "batchq.json").read_text())


def test_grafana_dashboard_is_valid_and_wired_to_the_provisioned_datasource():
    board = dashboard()
    datasources = load_yaml("deploy/grafana/provisioning/datasources/prometheus.yaml")["datasources"]
    (prom,) = datasources
    assert urlsplit(prom["url"]).port in listening_ports()[urlsplit(prom["url"]).hostname]
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids)) and board["uid"]
    for panel in board["panels"]:
        assert panel["datasource"]["uid"] == prom["uid"]
        assert 0 <= panel["gridPos"]["x"] and panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        assert panel["targets"] and all(t["expr"] and t["datasource"]["uid"] == prom["uid"] for t in panel["targets"])
    # The dashboard provider reads the directory compose mounts the dashboard into.
    provider = load_yaml("deploy/grafana/provisioning/dashboards/batchq.yaml")["providers"][0]
    mounts = dict(v.split(":")[:2][::-1] for v in services()["grafana"]["volumes"])
    assert mounts[provider["options"]["path"]] == "./deploy/grafana/dashboards"
    home = env_of(services()["grafana"])["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert Path(home).name == "batchq.json" and str(Path(home).parent) == provider["options"]["path"]


def test_prometheus_scrapes_the_statsd_exporter():
    config = load_yaml("deploy/prometheus/prometheus.yml")
    targets = [t for job in config["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]]
    assert targets
    for target in targets:
        host, port = target.split(":")
        assert int(port) in listening_ports()[host]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in services()["prometheus"]["volumes"]}
    assert mounts["/etc/prometheus/prometheus.yml"] == "./deploy/prometheus/prometheus.yml"


def test_every_metric_the_dashboard_queries_is_one_the_code_emits(monkeypatch):
    series = prometheus_series(monkeypatch)
    queried = set()
    for panel in dashboard()["panels"]:
        for target in panel["targets"]:
            queried |= set(re.findall(r"\bbatchq_[a-z_]+\b", target["expr"]))
    assert queried
    unknown = queried - series
    assert not unknown, f"the dashboard queries metrics nothing emits: {sorted(unknown)}"
    # Each component of the system has a panel: queue lag, workers, the supervisor, drain, the ledger.
    for component in ("queue", "worker", "supervisor", "drain", "run"):
        assert any(q.startswith(f"batchq_{component}_") for q in queried), component


def test_the_metric_check_would_catch_a_misspelt_metric(monkeypatch):
    series = prometheus_series(monkeypatch)
    assert "batchq_worker_processed" in series and "batchq_worker_handler_duration_ms_bucket" in series
    assert "batchq_worker_proccessed" not in series and "batchq_queue_depth" not in series


# -- Astro CLI project ---------------------------------------------------------------------------------------


def test_astro_dockerfile_uses_a_runtime_inside_the_supported_airflow_range():
    import tomllib
    from packaging.requirements import Requirement

    (line,) = [l for l in (REPO / "Dockerfile").read_text().splitlines() if l.startswith("FROM ")]
    m = re.fullmatch(r"FROM astrocrpublic\.azurecr\.io/runtime:(\d+)\.(\d+)-(\d+)", line.strip())
    assert m, f"not an Astro Runtime 3.x image: {line}"
    # Astro Runtime 3.x tags are <Airflow major.minor>-<runtime patch>.
    airflow_minor = f"{m.group(1)}.{m.group(2)}.0"
    extra = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]["airflow"]
    (airflow,) = [Requirement(r) for r in extra if Requirement(r).name == "apache-airflow"]
    assert airflow.specifier.contains(airflow_minor), f"{line} ships Airflow {airflow_minor}, outside {airflow.specifier}"
    assert "PYTHONPATH=/usr/local/airflow/include" in (REPO / "Dockerfile").read_text()
    assert (REPO / "packages.txt").is_file()
    assert yaml.safe_load((REPO / ".astro" / "config.yaml").read_text())["project"]["name"]


def requirement_names(path: Path) -> set[str]:
    from packaging.requirements import Requirement

    lines = [l.split("#")[0].strip() for l in path.read_text().splitlines()]
    return {Requirement(l).name.lower() for l in lines if l}


def test_requirements_files_follow_the_pyproject_extras():
    import tomllib
    from packaging.requirements import Requirement

    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    core = {Requirement(r).name.lower() for r in extras["dependencies"]}
    airflow = {Requirement(r).name.lower() for r in extras["optional-dependencies"]["airflow"]} - {"apache-airflow"}
    test = {Requirement(r).name.lower() for r in extras["optional-dependencies"]["test"]}
    runtime = requirement_names(REPO / "requirements.txt")
    assert core | airflow <= runtime, f"requirements.txt misses {sorted((core | airflow) - runtime)}"
    assert "apache-airflow" not in runtime  # the base image's Airflow is kept
    assert requirement_names(REPO / "requirements-dev.txt") <= test


def test_astro_settings_point_connections_at_the_override_services(monkeypatch):
    from airflow.models.connection import Connection
    from batchq.airflow.operators.drain import sink_target_from_connection
    from sqlalchemy.engine import make_url

    settings = load_yaml("airflow_settings.yaml")["airflow"]
    conns = {c["conn_id"]: c for c in settings["connections"]}
    assert {"aws_default", "batchq_sink"} <= set(conns)
    added = services(OVERRIDE)
    for name, svc in added.items():
        assert "airflow" in svc["networks"], f"{name} is not on the Astro CLI's airflow network"
    ports = listening_ports(OVERRIDE)
    endpoint = urlsplit(conns["aws_default"]["conn_extra"]["endpoint_url"])
    assert endpoint.port in ports[endpoint.hostname]
    assert env_of(added["worker"])["BATCHQ_SQS_ENDPOINT"] == endpoint.geturl()

    sink = conns["batchq_sink"]
    conn = Connection(conn_id="batchq_sink", conn_type=sink["conn_type"], host=sink["conn_host"], port=sink["conn_port"],
                      login=sink["conn_login"], password=sink["conn_password"], schema=sink["conn_schema"])
    # As `astro dev start` loads it into Airflow (the connection's own hook looks it up by id).
    monkeypatch.setenv("AIRFLOW_CONN_BATCHQ_SINK", conn.as_json())
    from batchq.airflow.sinks import get_connection

    url = make_url(sink_target_from_connection(get_connection("batchq_sink")))
    db = env_of(added[url.host])
    assert url.port in ports[url.host]
    assert (url.username, url.password, url.database) == (db["POSTGRES_USER"], db["POSTGRES_PASSWORD"], db["POSTGRES_DB"])
