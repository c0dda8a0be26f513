"""The deployment files cannot run here (no Docker engine, no cluster), so they are checked by parsing:
valid YAML/JSON, the pieces wired to each other, and every worker command line accepted by the real
``batchq`` argument parser (entrypoint + args, as the container runtime would join them)."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
import yaml
from batchq.cli import build_parser

REPO = Path(__file__).resolve().parents[2]


def dockerfile_entrypoint(path: Path) -> list[str]:
    lines = [line for line in path.read_text().splitlines() if line.startswith("ENTRYPOINT")]
    assert len(lines) == 1, f"{path} needs exactly one ENTRYPOINT"
    return json.loads(lines[0].removeprefix("ENTRYPOINT").strip())


def parse_batchq(argv: list[str]):
    assert argv[0] == "batchq", argv
    try:
        return build_parser().parse_args(argv[1:])
    except SystemExit as exc:  # argparse exits on a bad command line
        pytest.fail(f"batchq rejects {shlex.join(argv)} (exit {exc.code})")


def test_worker_image_never_installs_airflow_and_runs_the_worker():
    dockerfile = REPO / "deploy" / "worker.Dockerfile"
    text = dockerfile.read_text()
    assert ".[worker]" in text
    assert not re.search(r"pip install[^\n]*(airflow|requirements\.txt)", text)
    assert dockerfile_entrypoint(dockerfile)[:2] == ["batchq", "worker"]


def test_worker_extra_has_no_airflow():
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    worker_deps = project["dependencies"] + project["optional-dependencies"]["worker"]
    assert not [d for d in worker_deps if "airflow" in d.lower()]


def test_k8s_deployment_and_keda_scaler_agree():
    docs = [d for d in yaml.safe_load_all((REPO / "deploy" / "k8s-worker.yaml").read_text()) if d]
    by_kind = {d["kind"]: d for d in docs}
    deployment, scaled = by_kind["Deployment"], by_kind["ScaledObject"]
    assert scaled["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert scaled["spec"]["minReplicaCount"] == 0  # scale to zero
    trigger = scaled["spec"]["triggers"][0]
    assert trigger["type"] == "aws-sqs-queue"
    assert int(trigger["metadata"]["queueLength"]) >= 1
    assert trigger["metadata"]["scaleOnInFlight"] == "true"

    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    args = parse_batchq(dockerfile_entrypoint(REPO / "deploy" / "worker.Dockerfile") + container["args"])
    # The kubelet's SIGKILL must come after the worker's own grace period plus one long poll.
    assert pod["terminationGracePeriodSeconds"] > args.grace_period + args.wait_seconds


def test_k8s_worker_takes_its_role_and_queue_from_the_aws_stack():
    """The worker's IAM policy is no longer a hand-written file: the AWS stack (deploy/aws) makes the role,
    and its least privilege is proven from the code there (deploy/aws/tests/test_least_privilege.py)."""
    assert not (REPO / "deploy" / "iam-worker-policy.json").exists()
    text = (REPO / "deploy" / "k8s-worker.yaml").read_text()
    assert "eks.amazonaws.com/role-arn" in text and "stack output WorkerRoleArn" in text
    assert "stack output InputQueueUrl" in text
    # That the stack has these outputs is checked on the synthesised template (deploy/aws/tests/test_template.py).


# -- conventions of an Airflow project (issue 20) -----------------------------------------------------------


def test_astro_project_has_the_cli_dag_integrity_files():
    """What `astro dev init` writes and `astro dev parse` runs: .astro/test_dag_integrity_default.py and
    its exceptions list."""
    test = REPO / ".astro" / "test_dag_integrity_default.py"
    assert "def test_file_imports" in test.read_text() and "dag_integrity_exceptions.txt" in test.read_text()
    compile(test.read_text(), str(test), "exec")
    assert (REPO / ".astro" / "dag_integrity_exceptions.txt").is_file()


def test_images_never_bake_local_connections_or_test_tools():
    ignored = {line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()}
    assert "airflow_settings.yaml" in ignored  # the local connections' secrets stay out of every image
    for dockerfile in [REPO / "Dockerfile", *sorted((REPO / "deploy").glob("*.Dockerfile"))]:
        text = dockerfile.read_text()
        runs = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
        assert "requirements-dev" not in runs, f"{dockerfile.name} installs the test tools"
        assert not re.search(r"pip install[^\n]*(\[[^\]]*test|pytest|moto)", runs), f"{dockerfile.name} installs test tools"


def test_the_airflow_images_and_stacks_defer_by_airflows_own_switch():
    """batchq's deferrable= follows [operators] default_deferrable; every stack the project ships sets it."""
    assert "AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE=True" in (REPO / "Dockerfile").read_text()
    assert 'AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE: "True"' in (REPO / "docker-compose.yaml").read_text()
    # `make demo` / `batchq dev run`
    assert '"AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE", "True"' in (REPO / "include" / "batchq" / "dev" / "run.py").read_text()
