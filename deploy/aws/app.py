"""CDK app: one batchq stack per batch spec.

    cd deploy/aws && cdk deploy -c spec=../../include/specs/customer_batch.yaml -c workers=lambda,ecs

Context (``-c key=value``): ``spec`` (YAML path), ``workers`` (comma list of lambda, ecs, keda, or
``none``), ``handlers``, ``lambda_package``, ``run_start`` (HH:MM), ``eks_oidc_provider``,
``k8s_service_account`` (namespace:name), ``stack_name``. See docs/deploy.md "Deploy to AWS".
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# The repository's batchq (its queue plan is the stack's), then this directory's batchq_stack.
sys.path[:0] = [str(HERE.parents[1] / "include"), str(HERE)]

import aws_cdk as cdk
from batchq.spec import BatchSpec
from batchq_stack.stack import BatchqStack, StackOptions


def options_from_context(app: cdk.App) -> StackOptions:
    def ctx(key: str, default: str | None = None) -> str | None:
        value = app.node.try_get_context(key)
        return default if value in (None, "") else str(value)

    workers = ctx("workers", "lambda,ecs")
    return StackOptions(
        workers=frozenset(w.strip() for w in workers.split(",") if w.strip() and w.strip() != "none"),
        handlers=ctx("handlers", StackOptions.handlers),
        lambda_package=ctx("lambda_package"),
        run_start=ctx("run_start"),
        eks_oidc_provider=ctx("eks_oidc_provider"),
        k8s_service_account=ctx("k8s_service_account", StackOptions.k8s_service_account),
    )


def build(app: cdk.App) -> BatchqStack:
    spec_path = Path(app.node.try_get_context("spec") or HERE.parents[1] / "include" / "specs" / "customer_batch.yaml")
    if not spec_path.is_absolute():
        spec_path = (HERE / spec_path).resolve()
    spec = BatchSpec.from_yaml(spec_path)
    name = app.node.try_get_context("stack_name") or f"batchq-{spec.name.replace('_', '-')}"
    return BatchqStack(app, name, spec=spec, options=options_from_context(app),
                       # No bootstrap-version rule: the template also deploys with plain CloudFormation.
                       synthesizer=cdk.DefaultStackSynthesizer(generate_bootstrap_version_rule=False))


if __name__ == "__main__":
    app = cdk.App()
    build(app)
    app.synth()
