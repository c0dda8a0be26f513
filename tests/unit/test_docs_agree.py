"""The docs state the versions the code requires (issue 20: LocalStack's Python was 3.12 in some docs and
3.13 in the launcher; Airflow was >=3.1 in requirements.txt and the Dockerfile, >=3.2 in pyproject)."""

from __future__ import annotations

import re
from pathlib import Path

import tomllib

REPO = Path(__file__).resolve().parents[2]
#: Every file a user reads for versions (not the changelog-like issue notes).
DOCS = [REPO / "README.md", REPO / "requirements.txt", REPO / "Dockerfile", *sorted((REPO / "docs").glob("*.md")),
        *sorted((REPO / "deploy").glob("*Dockerfile*"))]


def test_every_stated_airflow_minimum_is_pyprojects():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    airflow = next(d for d in project["optional-dependencies"]["airflow"] if d.startswith("apache-airflow>="))
    minimum = re.match(r"apache-airflow>=([\d.]+)", airflow).group(1)
    stated = {(p.name, m) for p in DOCS if p.exists() for m in re.findall(r"apache-airflow\s*>=\s*([\d.]+)", p.read_text())}
    assert stated, "no document states the Airflow requirement"
    assert {m for _, m in stated} == {minimum}, sorted(stated)


def test_every_stated_localstack_python_is_the_launchers():
    launcher = (REPO / "scripts" / "localstack.sh").read_text()
    first = re.search(r"for v in (3\.\d+)", launcher).group(1)  # the interpreter it tries first
    stated = set()
    for path in DOCS:
        if not path.exists():
            continue
        for line in path.read_text().splitlines():
            if "localstack" in line.lower():
                stated |= {(path.name, v) for v in re.findall(r"Python\s*(?:>=|≥)\s*(3\.\d+)", line)}
    assert stated, "no document states LocalStack's Python"
    assert {v for _, v in stated} == {first}, sorted(stated)
