"""docs/first-batch.md, followed to the letter from an empty directory (issue 20): the files the page
shows are written where it says, the command it gives is run, and the run succeeds. A variant without
the handler module sees the workers refuse to start, naming the job type, before anything is sent."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
PAGE = REPO / "docs" / "first-batch.md"


def page_files() -> dict[str, str]:
    """``<!-- file: PATH -->`` followed by a fenced block: the file the page tells you to write."""
    return dict(re.findall(r"<!-- file: (\S+) -->\n```\w*\n(.*?)```", PAGE.read_text(), flags=re.DOTALL))


def page_command() -> list[str]:
    """The command under ``<!-- run -->``."""
    (block,) = re.findall(r"<!-- run -->\n```\w*\n(.*?)```", PAGE.read_text(), flags=re.DOTALL)
    (line,) = [ln for ln in block.splitlines() if ln.strip() and not ln.startswith("#")]
    return shlex.split(line)


def run_page(tmp_path: Path, *, without_handlers: bool = False) -> subprocess.CompletedProcess:
    project = tmp_path / "my-project"
    project.mkdir()
    assert not any(project.iterdir())  # an empty directory
    for path, body in page_files().items():
        target = project / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(body)
    argv = page_command()
    assert argv[:3] == ["batchq", "dev", "run"]
    if without_handlers:  # the page's "forget --handlers my_jobs"
        i = argv.index("--handlers")
        del argv[i:i + 2]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "BATCHQ_"))}
    # This checkout's batchq and this venv's tools (`airflow`), as an installed package would provide.
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "include"), env.get("PYTHONPATH", "")])
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    # moto's server, started by the command itself (LocalStack would be used if installed).
    return subprocess.run([sys.executable, "-m", "batchq.cli", *argv[1:], "--plain", "--endpoint", "moto"],
                          cwd=project, env=env, capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL,
                          check=False)


def test_first_batch_page_runs_end_to_end_from_an_empty_directory(tmp_path):
    files = page_files()
    assert {"specs/my_batch.yaml", "my_jobs.py", "dags/my_batch.py"} <= set(files)
    proc = run_page(tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-5000:]
    figures = [ln for ln in proc.stdout.splitlines() if ln.startswith('{"payloads"')]
    assert figures and '"outcome": "succeeded"' in figures[-1], out[-3000:]
    assert '"payloads": 42' in figures[-1] and '"results": 42' in figures[-1] and '"failed": 0' in figures[-1]
    assert (tmp_path / "my-project" / ".batchq-dev" / "drain-curve.png").stat().st_size > 1000


def test_without_the_handler_the_workers_refuse_naming_the_job_type(tmp_path):
    proc = run_page(tmp_path, without_handlers=True)
    assert proc.returncode == 2, (proc.stdout + proc.stderr)[-4000:]
    assert "no handler for job type(s) 'forecast' of spec 'my_batch'" in proc.stderr
    assert "airflow dags test" not in proc.stdout  # stopped before the DAG ran
