"""A worker given a spec refuses to start without handlers for the spec's job types (issue 20, item 1):
the spec's job types, the one check, and ``batchq worker`` / ``batchq workers`` refusing before they
touch a queue (no endpoint is needed to see the refusal)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from batchq.spec import BatchSpec
from batchq.worker import Registry
from batchq.worker.registry import MissingHandlers, check_handlers_for

REPO = Path(__file__).resolve().parents[3]


def _spec(**extra) -> BatchSpec:
    return BatchSpec.from_dict({
        "name": "regions",
        "dimensions": {"region": ["eu", "ap-south"], "model": ["xgb", "lr"], "day": ["mon", "wed"]},
        "queues": {"input": "r-in", "results": "r-out"},
        **extra,
    })


def test_job_types_fixed_from_a_dimension_and_unknown_until_resolved():
    assert _spec(job_type="forecast").job_types() == ["forecast"]
    assert _spec(job_type_dimension="model").job_types() == ["lr", "xgb"]
    # A rule on the job type dimension alone removes that job type entirely; a narrower rule does not.
    assert _spec(job_type_dimension="model", exclude=[{"model": "lr"}]).job_types() == ["xgb"]
    assert _spec(job_type_dimension="model", exclude=[{"model": "lr", "day": "mon"}]).job_types() == ["lr", "xgb"]
    sourced = BatchSpec.from_dict({"name": "s", "dimensions": {"job_type": "variable:jobs"},
                                   "queues": {"input": "a", "results": "b"}})
    assert sourced.job_types() is None


def test_check_names_every_missing_job_type_and_how_to_fix_it():
    registry = Registry()
    registry.register("xgb", lambda payload, ctx: {})
    check_handlers_for(registry, ["xgb"], batch="regions")  # all handled: nothing raised
    with pytest.raises(MissingHandlers) as info:
        check_handlers_for(registry, ["xgb", "lr", "arima"], batch="regions", modules=["myteam.jobs"])
    assert info.value.missing == ["arima", "lr"]
    message = str(info.value)
    assert "'arima', 'lr'" in message and "'regions'" in message and "myteam.jobs" in message
    assert "--allow-missing-handlers" in message and "['xgb']" in message


def _cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    (tmp_path / "regions.yaml").write_text(textwrap.dedent("""
        name: regions
        dimensions: {region: [eu, ap-south], model: [xgb], day: [mon, wed]}
        job_type: forecast
        queues: {input: regions-in-never-created, results: regions-out-never-created}
    """))
    (tmp_path / "other_jobs.py").write_text("import batchq\n\n@batchq.job('classify')\ndef run(payload, ctx):\n    return {}\n")
    env = {"PYTHONPATH": f"{tmp_path}:{REPO / 'include'}", "PATH": "/usr/bin:/bin",
           # An endpoint nothing listens on: the refusal must come before any SQS call.
           "BATCHQ_SQS_ENDPOINT": "http://127.0.0.1:9", "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}
    return subprocess.run([sys.executable, "-m", "batchq.cli", *args, "--spec", str(tmp_path / "regions.yaml"),
                           "--handlers", "other_jobs", "--no-entry-points"],
                          env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.parametrize("command", ["worker", "workers"])
def test_worker_and_supervisor_refuse_to_start_naming_the_missing_job_type(tmp_path, command):
    proc = _cli(tmp_path, command)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "no handler for job type(s) 'forecast' of spec 'regions'" in proc.stderr
    assert "worker_process_started" not in proc.stderr  # the supervisor spawned nothing


def test_allow_missing_handlers_starts_anyway(tmp_path):
    # Past the handler check, the worker reaches for its queue (and fails there: nothing listens).
    proc = _cli(tmp_path, "worker", "--allow-missing-handlers")
    assert "no handler for job type" not in proc.stderr
    assert proc.returncode != 0 and ("Could not connect" in proc.stderr or "Connect" in proc.stderr), proc.stderr[-2000:]
