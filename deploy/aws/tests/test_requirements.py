"""The IaC venv imports batchq from include/ without installing it, so it needs batchq's core dependencies
listed here exactly as pyproject lists them (the worker-side install, no extras)."""

from __future__ import annotations

import tomllib
from conftest import HERE, REPO


def test_iac_requirements_carry_batchqs_core_dependencies():
    core = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    lines = {line.strip() for line in (HERE.parent / "requirements.txt").read_text().splitlines()}
    assert set(core) <= lines, f"add to deploy/aws/requirements.txt: {sorted(set(core) - lines)}"
