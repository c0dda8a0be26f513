"""Synthesise the stack to a plain CloudFormation template (no CDK CLI needed), and optionally deploy it.

    python deploy/aws/synth.py --spec include/specs/customer_batch.yaml --workers lambda,ecs --out T.json
    python deploy/aws/synth.py ... --deploy --endpoint-url http://127.0.0.1:4566 --stack-name S \\
        --parameter LambdaCodeS3Bucket=b --outputs outputs.json

``--deploy`` creates (or updates) the stack with boto3's CloudFormation client, waits for it, and writes
the stack's outputs as JSON (``{"InputQueueUrl": ..., ...}``): what CI does against LocalStack, and
what ``cdk deploy --outputs-file`` gives on AWS.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
# jsii warns at every start on Node 20 (end of life for it since 2026-10): say it once, in the docs.
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
sys.path[:0] = [str(HERE.parents[1] / "include"), str(HERE)]


def synth(context: dict[str, str], outdir: str | None = None) -> tuple[str, dict]:
    """``(stack name, template)`` of the app with ``context`` (the ``-c`` values of ``cdk synth``)."""
    import app as stack_app
    import aws_cdk as cdk

    cdk_app = cdk.App(outdir=outdir, context=context)
    stack = stack_app.build(cdk_app)
    assembly = cdk_app.synth()
    return stack.stack_name, assembly.get_stack_by_name(stack.stack_name).template


def deploy(template: dict, stack_name: str, parameters: dict[str, str], endpoint_url: str | None,
           region: str | None, timeout_s: float = 300) -> dict[str, str]:
    """Create or update ``stack_name`` from ``template``; its outputs once it is complete."""
    import boto3

    cfn = boto3.client("cloudformation", endpoint_url=endpoint_url, region_name=region or os.environ.get("AWS_REGION", "us-east-1"))
    kwargs = {"StackName": stack_name, "TemplateBody": json.dumps(template),
              "Capabilities": ["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"],
              "Parameters": [{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()]}
    try:
        cfn.describe_stacks(StackName=stack_name)
        exists = True
    except cfn.exceptions.ClientError:
        exists = False
    if exists:
        try:
            cfn.update_stack(**kwargs)
        except cfn.exceptions.ClientError as exc:
            if "No updates are to be performed" not in str(exc):
                raise
    else:
        cfn.create_stack(**kwargs)
    deadline = time.monotonic() + timeout_s
    while True:
        stack = cfn.describe_stacks(StackName=stack_name)["Stacks"][0]
        status = stack["StackStatus"]
        if status.endswith("_COMPLETE") and "ROLLBACK" not in status:
            return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
        if status.endswith(("_FAILED", "ROLLBACK_COMPLETE")) or time.monotonic() > deadline:
            events = cfn.describe_stack_events(StackName=stack_name)["StackEvents"]
            failed = [f"{e['LogicalResourceId']}: {e.get('ResourceStatusReason')}" for e in events if "FAILED" in e["ResourceStatus"]]
            raise RuntimeError(f"stack {stack_name} is {status}: " + "; ".join(failed[:10]))
        time.sleep(1)


def upload_package(directory: Path, bucket: str, endpoint_url: str | None, region: str | None) -> dict[str, str]:
    """Zip ``directory`` into S3 ``bucket`` (created if missing); the stack parameters naming it."""
    import hashlib
    import io
    import zipfile

    import boto3

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(directory.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                zf.write(path, path.relative_to(directory).as_posix())
    body = buf.getvalue()
    key = f"batchq-worker-{hashlib.sha256(body).hexdigest()[:16]}.zip"
    s3 = boto3.client("s3", endpoint_url=endpoint_url, region_name=region or os.environ.get("AWS_REGION", "us-east-1"))
    try:
        s3.head_bucket(Bucket=bucket)
    except s3.exceptions.ClientError:
        s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key=key, Body=body)
    return {"LambdaCodeS3Bucket": bucket, "LambdaCodeS3Key": key}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--spec", default=str(HERE.parents[1] / "include" / "specs" / "customer_batch.yaml"))
    p.add_argument("--workers", default="lambda,ecs", help="comma list of lambda, ecs, keda, or none")
    p.add_argument("-c", "--context", action="append", default=[], metavar="KEY=VALUE", help="more CDK context")
    p.add_argument("--out", help="write the template here (JSON)")
    p.add_argument("--deploy", action="store_true", help="create/update the stack (boto3 CloudFormation)")
    p.add_argument("--endpoint-url", default=None, help="CloudFormation endpoint (LocalStack); default AWS")
    p.add_argument("--region", default=None)
    p.add_argument("--stack-name", default=None)
    p.add_argument("--parameter", action="append", default=[], metavar="KEY=VALUE", help="stack parameter")
    p.add_argument("--outputs", help="write the stack outputs here (JSON)")
    p.add_argument("--lambda-package", metavar="DIR",
                   help="zip DIR (make aws-lambda-package), upload it to S3 and pass its location as LambdaCodeS3Bucket/Key")
    args = p.parse_args(argv)
    context = {"spec": str(Path(args.spec).resolve()), "workers": args.workers, **dict(kv.split("=", 1) for kv in args.context)}
    t0 = time.monotonic()
    name, template = synth(context)
    print(f"synth: {name}, {len(template['Resources'])} resources in {time.monotonic() - t0:.1f}s", file=sys.stderr)
    if args.out:
        Path(args.out).write_text(json.dumps(template, indent=1, sort_keys=True) + "\n")
    if args.deploy:
        t0 = time.monotonic()
        parameters = dict(kv.split("=", 1) for kv in args.parameter)
        if args.lambda_package:
            parameters.update(upload_package(Path(args.lambda_package), f"{args.stack_name or name}-lambda-packages",
                                             args.endpoint_url, args.region))
        outputs = deploy(template, args.stack_name or name, parameters,
                         args.endpoint_url, args.region)
        print(f"deploy: {args.stack_name or name} complete in {time.monotonic() - t0:.1f}s", file=sys.stderr)
        text = json.dumps(outputs, indent=1, sort_keys=True)
        if args.outputs:
            Path(args.outputs).write_text(text + "\n")
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
