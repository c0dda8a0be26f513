"""Fixtures of the stack's own tests (run in the IaC venv: ``make test-aws``): the app synthesised once per
configuration, as plain CloudFormation templates."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
sys.path[:0] = [str(HERE.parent), str(HERE)]

import synth
from batchq.spec import BatchSpec

SPEC = REPO / "include" / "specs" / "customer_batch.yaml"
#: Every worker kind (KEDA's IRSA trust needs an OIDC issuer); and hosts only (what LocalStack runs).
CONFIGS = {
    "all": {"workers": "lambda,ecs,keda", "eks_oidc_provider": "oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLE"},
    "hosts": {"workers": "none"},
}


@pytest.fixture(scope="session")
def spec() -> BatchSpec:
    return BatchSpec.from_yaml(SPEC)


@pytest.fixture(scope="session")
def templates(tmp_path_factory) -> dict[str, dict]:
    out = {}
    for name, context in CONFIGS.items():
        _, template = synth.synth({"spec": str(SPEC), **context}, outdir=str(tmp_path_factory.mktemp(f"cdk-{name}")))
        out[name] = json.loads(json.dumps(template))  # plain JSON types, as CloudFormation reads it
    return out


@pytest.fixture(scope="session")
def template(templates) -> dict:
    """The template with every worker kind."""
    return templates["all"]
