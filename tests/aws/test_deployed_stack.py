"""The AWS stack (deploy/aws) deployed into LocalStack by CloudFormation, then run against.

``make test-aws`` synthesises the stack for ``tests/aws/aws_batch.yaml``, deploys it into LocalStack
(CloudFormation, SQS, SNS, IAM, CloudWatch) and runs this file with:

``BATCHQ_AWS_STACK_OUTPUTS``
    the stack's outputs (JSON): the queue URLs/names every component is given — the hand-off.
``BATCHQ_AWS_STACK_TEMPLATE``
    the template that was deployed, whose roles the recorded calls are checked against.
``BATCHQ_TEST_SQS_ENDPOINT``
    LocalStack.

Each component talks to LocalStack through its own recording proxy, so the test knows which component
called what on which queue, and fails on a call its role in the template does not allow (LocalStack's
free edition does not enforce IAM, so this is where a missing per-queue grant shows).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from batchq.plan import Plan
from batchq.spec import BatchSpec
from batchq.sqs import get_snapshot, send_bodies
from batchq.sqs.client import sqs_client
from batchq.sqs.queues import ensure_queues, get_queue_attributes, parse_redrive_policy

from tests.support.sqs_fault_proxy import SqsFaultProxy

REPO = Path(__file__).resolve().parents[2]
SPEC_PATH = Path(__file__).with_name("aws_batch.yaml")
sys.path.insert(0, str(REPO / "deploy" / "aws" / "tests"))
from template_reading import sqs_grants

pytestmark = pytest.mark.aws

#: Attributes that describe a queue's state or identity, not its configuration.
STATE_ATTRIBUTES = {"QueueArn", "CreatedTimestamp", "LastModifiedTimestamp", "ApproximateNumberOfMessages",
                    "ApproximateNumberOfMessagesNotVisible", "ApproximateNumberOfMessagesDelayed"}
#: IAM authorises a batch call with the single-message action.
BATCH_TO_SINGLE = {"SendMessageBatch": "SendMessage", "DeleteMessageBatch": "DeleteMessage",
                   "ChangeMessageVisibilityBatch": "ChangeMessageVisibility"}


def _env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} is not set: run these tests with `make test-aws`")
        pytest.skip(f"{name} not set (make test-aws deploys the stack and sets it)")
    return value


@pytest.fixture(scope="module")
def stack() -> dict:
    return {"outputs": json.loads(Path(_env("BATCHQ_AWS_STACK_OUTPUTS")).read_text()),
            "template": json.loads(Path(_env("BATCHQ_AWS_STACK_TEMPLATE")).read_text()),
            "endpoint": _env("BATCHQ_TEST_SQS_ENDPOINT")}


@pytest.fixture(scope="module")
def spec() -> BatchSpec:
    return BatchSpec.from_yaml(SPEC_PATH)


def urls(outputs: dict) -> dict[str, str]:
    return {role: outputs[f"{''.join(p.capitalize() for p in role.split('_'))}QueueUrl"]
            for role in ("input", "input_dlq", "results", "results_dlq")}


def configuration(client, url: str, names_by_arn: dict[str, str]) -> dict[str, object]:
    """A queue's configuration: its attributes less state and identity, the redrive target by role."""
    attrs = {k: v for k, v in get_queue_attributes(client, url, ["All"]).items() if k not in STATE_ATTRIBUTES}
    policy = parse_redrive_policy(attrs.pop("RedrivePolicy", None))
    if policy:
        attrs["RedrivePolicy"] = (names_by_arn[policy.dead_letter_arn], policy.max_receive_count)
    return attrs


def arn_roles(client, queue_urls: dict[str, str]) -> dict[str, str]:
    return {get_queue_attributes(client, u, ["QueueArn"])["QueueArn"]: role for role, u in queue_urls.items()}


# -- the hand-off -------------------------------------------------------------------------------------


def test_outputs_name_the_specs_queues(stack, spec):
    out = stack["outputs"]
    for role in ("input", "input_dlq", "results", "results_dlq"):
        assert urls(out)[role].rstrip("/").rsplit("/", 1)[1] == getattr(spec.queues, role)
    assert json.loads(out["QueueUrlsJson"]) == urls(out)
    extra = json.loads(out["AirflowConnectionExtra"])
    assert extra["role_arn"] == out["AirflowRoleArn"] and extra["role_arn"].startswith("arn:aws:iam::")
    for name in ("WorkerRoleArn", "DrainerRoleArn", "AlarmTopicArn"):
        assert out[name].startswith("arn:aws:"), name


# -- no drift -----------------------------------------------------------------------------------------


def test_stack_queues_equal_what_batchq_queues_create_makes(stack, spec):
    """The same spec through ``ensure_queues`` (what ``batchq queues create`` runs), on queues of its own:
    every configuration attribute equal, redrive to the DLQ of the same role."""
    client = sqs_client(endpoint_url=stack["endpoint"], region_name="us-east-1")
    stack_urls = urls(stack["outputs"])
    cli_spec = spec.queues.model_copy(update={"input": f"cli-{spec.queues.input}", "results": f"cli-{spec.queues.results}"})
    cli_urls = ensure_queues(client, cli_spec).to_dict()
    stack_arns, cli_arns = arn_roles(client, stack_urls), arn_roles(client, cli_urls)
    for role in stack_urls:
        from_stack = configuration(client, stack_urls[role], stack_arns)
        from_cli = configuration(client, cli_urls[role], cli_arns)
        # The one difference: the stack's TLS-only queue policy. ensure_queues leaves a queue's Policy
        # alone on purpose (it would overwrite the account's own grants, e.g. an SNS subscription's).
        policy = json.loads(from_stack.pop("Policy"))
        assert "Policy" not in from_cli
        (deny,) = policy["Statement"]
        assert (deny["Effect"], deny["Condition"]) == ("Deny", {"Bool": {"aws:SecureTransport": "false"}})
        assert from_stack == from_cli, role
    assert configuration(client, stack_urls["input"], stack_arns)["MessageRetentionPeriod"] == str(spec.queues.message_retention_s)


def test_batchq_queues_create_on_the_stacks_queues_changes_nothing(stack):
    client = sqs_client(endpoint_url=stack["endpoint"], region_name="us-east-1")
    stack_urls = urls(stack["outputs"])
    arns = arn_roles(client, stack_urls)
    before = {r: configuration(client, u, arns) for r, u in stack_urls.items()}
    done = subprocess.run(check=False, args=[sys.executable, "-m", "batchq.cli", "queues", "create", "--spec", str(SPEC_PATH),
                           "--endpoint-url", stack["endpoint"], "--region", "us-east-1"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == stack_urls
    assert {r: configuration(client, u, arns) for r, u in stack_urls.items()} == before


# -- a batch, end to end, on the stack's queues --------------------------------------------------------


def test_batch_runs_end_to_end_within_each_roles_grants(stack, spec, tmp_path):
    out, endpoint = stack["outputs"], stack["endpoint"]
    queue_urls = urls(out)
    run_id = f"aws-stack-{time.time_ns()}"
    sink = f"sqlite:///{tmp_path}/results.db"
    env = {**os.environ, "AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}
    with SqsFaultProxy(endpoint) as airflow_px, SqsFaultProxy(endpoint) as worker_px, SqsFaultProxy(endpoint) as drainer_px:
        # Airflow's fan-out: the plan's payloads, sent as FanOutOperator sends them, to the input URL output.
        airflow = sqs_client(endpoint_url=airflow_px.url, region_name="us-east-1")
        plan = Plan(spec, run_id)
        sent = sum(send_bodies(airflow, queue_urls["input"], plan.iter_bodies(s)).sent for s in plan.shards())
        assert sent == plan.expected > 0

        # A worker, given the queue names from the outputs (as the ECS task / KEDA Deployment is).
        worker = subprocess.Popen(
            [sys.executable, "-m", "batchq.cli", "worker", "--endpoint-url", worker_px.url,
             "--queue", out["InputQueueName"], "--results-queue", out["ResultsQueueName"],
             "--handlers", "batchq.examples", "--no-entry-points", "--wait-seconds", "1", "--concurrency", "4",
             "--grace-period", "5"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            # Airflow's wait: the input queue (and its DLQ) through the sensor's snapshot, until empty.
            deadline = time.monotonic() + 120
            while True:
                snap = get_snapshot(airflow, queue_urls["input"], queue_urls["input_dlq"])
                if snap.backlog == 0 and snap.delayed == 0:
                    break
                assert time.monotonic() < deadline, f"input never drained: {snap}"
                assert worker.poll() is None, worker.stderr.read()[-3000:]
                time.sleep(0.5)
        finally:
            worker.send_signal(signal.SIGTERM)
            _, worker_err = worker.communicate(timeout=60)
        assert worker.returncode == 0, worker_err[-3000:]

        # The standalone drainer, results queue from the outputs; then the run's ledger.
        drain = subprocess.run(  # noqa: PLW1510 - the return code is asserted
            [sys.executable, "-m", "batchq.cli", "drain", "--endpoint-url", drainer_px.url, "--queue",
             out["ResultsQueueName"], "--sink", sink, "--until-empty", "--wait", "1"],
            env=env, capture_output=True, text=True, timeout=180)
        assert drain.returncode == 0, drain.stderr[-3000:]
    ledger = subprocess.run(  # noqa: PLW1510 - the return code is asserted
        [sys.executable, "-m", "batchq.cli", "ledger", "--store", sink, "--spec", str(SPEC_PATH), "--run-id", run_id,
         "--expected", str(plan.expected), "--close"], env=env, capture_output=True, text=True, timeout=60)
    assert ledger.returncode == 0, ledger.stderr[-3000:]
    closed = json.loads(ledger.stdout)
    assert closed["outcome"] == "succeeded" and closed["succeeded"] == plan.expected, closed

    # Every call each component made is allowed by its role, on that queue.
    names = {u.rstrip("/").rsplit("/", 1)[1]: role for role, u in queue_urls.items()}
    for component, proxy in (("airflow", airflow_px), ("worker", worker_px), ("drainer", drainer_px)):
        grants = sqs_grants(stack["template"], component, spec.queues)
        calls = {(op, names[q.rstrip("/").rsplit("/", 1)[-1]]) for op, q in proxy.log.calls}
        assert calls, component
        denied = sorted((op, role) for op, role in calls if f"sqs:{BATCH_TO_SINGLE.get(op, op)}" not in grants.get(role, set()))
        assert not denied, f"{component} called {denied}, which its role does not allow"
