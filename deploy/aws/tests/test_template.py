"""What the synthesised template configures, checked where LocalStack cannot run it: the Lambda worker and
its event source mapping (LocalStack runs Lambda only with Docker), the ECS service and its target
tracking (ECS and Application Auto Scaling are not in LocalStack's free edition), the alarms' definitions
(LocalStack stores alarms but does not evaluate metric math), and the TLS-only queue and topic policies.
"""

from __future__ import annotations

import importlib

import pytest
from batchq.sqs.queues import RESULTS_VISIBILITY_TIMEOUT_S, planned_queues
from batchq.worker.lambda_adapter import LambdaSettings
from batchq_stack.stack import StackOptions, cfn_queue_properties, input_age_threshold_s
from conftest import REPO
from template_reading import queue_roles, resources


def one(template: dict, type_: str) -> dict:
    found = resources(template, type_)
    assert len(found) == 1, (type_, list(found))
    return next(iter(found.values()))["Properties"]


def ref_target(value) -> str:
    return value.get("Ref") or value.get("Fn::GetAtt", [None])[0]


# -- queues ------------------------------------------------------------------------------------------


def test_queues_are_planned_queues_property_for_property(template, spec):
    """No drift by construction: every queue's properties are ``planned_queues`` (what ``batchq queues
    create`` sets), and the redrive policy points at the DLQ of the same role."""
    roles = queue_roles(template, spec.queues)
    by_role = {role: (lid, template["Resources"][lid]["Properties"]) for lid, role in roles.items()}
    assert set(by_role) == {"input", "input_dlq", "results", "results_dlq"}
    for planned in planned_queues(spec.queues):
        lid, props = by_role[planned.role]
        expected = cfn_queue_properties(planned, {"Fn::GetAtt": [by_role[planned.dead_letter_role][0], "Arn"]}
                                        if planned.dead_letter_role else None)
        assert props == expected, planned.role
        assert template["Resources"][lid]["DeletionPolicy"] == "Retain"
    assert by_role["results"][1]["VisibilityTimeout"] == RESULTS_VISIBILITY_TIMEOUT_S
    assert by_role["input"][1]["RedrivePolicy"]["maxReceiveCount"] == spec.queues.max_receive_count


def test_an_attribute_without_a_cloudformation_mapping_fails_the_synth(spec):
    planned = planned_queues(spec.queues)[0]
    odd = type(planned)(planned.role, planned.name, {**planned.attributes, "KmsMasterKeyId": "alias/x"})
    with pytest.raises(ValueError, match="KmsMasterKeyId"):
        cfn_queue_properties(odd, None)


def test_every_queue_denies_requests_without_tls(template):
    policy = one(template, "AWS::SQS::QueuePolicy")
    queues = resources(template, "AWS::SQS::Queue")
    assert sorted(q["Ref"] for q in policy["Queues"]) == sorted(queues)
    (deny,) = policy["PolicyDocument"]["Statement"]
    assert deny["Effect"] == "Deny" and deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert sorted(r["Fn::GetAtt"][0] for r in deny["Resource"]) == sorted(queues)


# -- alarms ------------------------------------------------------------------------------------------


def alarms(template: dict) -> dict[str, dict]:
    return {lid: r["Properties"] for lid, r in resources(template, "AWS::CloudWatch::Alarm").items()}


def test_alarms_notify_the_topic_and_name_their_runbook_step(template):
    topic = next(iter(resources(template, "AWS::SNS::Topic")))
    found = alarms(template)
    assert set(found) == {"InputOldestMessageAgeAlarm", "ResultsOldestMessageAgeAlarm", "InputDlqDepthAlarm",
                          "ResultsDlqDepthAlarm", "InputBacklogStalledAlarm"}
    runbook = (REPO / "docs" / "runbook.md").read_text()
    for lid, alarm in found.items():
        assert alarm["AlarmActions"] == [{"Ref": topic}] and alarm["OKActions"] == [{"Ref": topic}], lid
        anchor = alarm["AlarmDescription"].split("docs/runbook.md#", 1)[1]
        assert f'<a id="{anchor}"></a>' in runbook, f"{lid}: runbook has no step {anchor}"


def test_age_and_dlq_alarms(template, spec):
    found = alarms(template)
    for lid, queue_role in (("InputOldestMessageAgeAlarm", "input"), ("ResultsOldestMessageAgeAlarm", "results")):
        a = found[lid]
        assert (a["MetricName"], a["Statistic"], a["ComparisonOperator"]) == ("ApproximateAgeOfOldestMessage", "Maximum", "GreaterThanThreshold")
        assert queue_roles(template, spec.queues)[a["Dimensions"][0]["Value"]["Fn::GetAtt"][0]] == queue_role
        assert "Ref" in a["Threshold"]  # a stack parameter
    for lid in ("InputDlqDepthAlarm", "ResultsDlqDepthAlarm"):
        a = found[lid]
        assert (a["MetricName"], a["Threshold"], a["ComparisonOperator"], a["EvaluationPeriods"]) == (
            "ApproximateNumberOfMessagesVisible", 0, "GreaterThanThreshold", 1)


def test_backlog_stalled_alarm_is_metric_math_on_visible_plus_in_flight(template):
    a = alarms(template)["InputBacklogStalledAlarm"]
    ids = {m["Id"]: m for m in a["Metrics"]}
    assert ids["visible"]["MetricStat"]["Metric"]["MetricName"] == "ApproximateNumberOfMessagesVisible"
    assert ids["inflight"]["MetricStat"]["Metric"]["MetricName"] == "ApproximateNumberOfMessagesNotVisible"
    assert ids["stalled"]["Expression"] == "IF(inflight > 0 AND DIFF(visible + inflight) >= 0, 1, 0)"
    assert [m["Id"] for m in a["Metrics"] if m["ReturnData"]] == ["stalled"]


@pytest.mark.parametrize("deadline,start,expected", [(None, "02:00", 3600), ("06:00", None, 3600),
                                                      ("06:00", "02:00", 7200), ("01:00", "23:00", 3600)])
def test_input_age_threshold_from_the_deadline(spec, deadline, start, expected):
    assert input_age_threshold_s(spec.model_copy(update={"deadline": deadline}), start) == expected


def test_topic_denies_publish_without_tls(template):
    statements = one(template, "AWS::SNS::TopicPolicy")["PolicyDocument"]["Statement"]
    assert any(s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}} for s in statements)


# -- Lambda worker -----------------------------------------------------------------------------------


def test_lambda_worker_is_wired_to_the_adapter(template, spec):
    fn = one(template, "AWS::Lambda::Function")
    module, _, attr = fn["Handler"].rpartition(".")
    assert callable(getattr(importlib.import_module(module), attr))  # batchq.worker.lambda_handler
    env = fn["Environment"]["Variables"]
    # Every variable is one the adapter reads, and the required one is there.
    aliases = {f.alias for f in LambdaSettings.model_fields.values()}
    assert set(env) <= aliases and "BATCHQ_RESULTS_QUEUE_URL" in env
    roles = queue_roles(template, spec.queues)
    assert roles[env["BATCHQ_RESULTS_QUEUE_URL"]["Ref"]] == "results"
    assert roles[env["BATCHQ_DEAD_LETTER_QUEUE_URL"]["Ref"]] == "input_dlq"
    assert env["BATCHQ_MAX_ATTEMPTS"] == str(spec.queues.max_receive_count)
    # AWS: visibility timeout >= 6 x function timeout, or the ESM's retries overlap.
    assert spec.queues.visibility_timeout_s >= 6 * fn["Timeout"]
    assert fn["Role"]["Fn::GetAtt"][0] == "LambdaRole"
    assert fn["Runtime"] == "python3.11"


def test_event_source_mapping(template, spec):
    esm = one(template, "AWS::Lambda::EventSourceMapping")
    assert queue_roles(template, spec.queues)[esm["EventSourceArn"]["Fn::GetAtt"][0]] == "input"
    assert esm["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    params = template["Parameters"]
    assert ref_target(esm["ScalingConfig"]["MaximumConcurrency"]) == "LambdaMaximumConcurrency"
    assert params["LambdaMaximumConcurrency"]["MinValue"] == 2  # SQS ESM's floor
    assert ref_target(esm["BatchSize"]) == "LambdaBatchSize"
    assert ref_target(esm["MaximumBatchingWindowInSeconds"]) == "LambdaBatchWindowSeconds"
    assert ref_target(esm["Enabled"]) == "LambdaWorkerEnabled"


# -- ECS worker --------------------------------------------------------------------------------------


def test_ecs_service_tracks_backlog_per_task(template, spec):
    task = one(template, "AWS::ECS::TaskDefinition")
    assert task["TaskRoleArn"]["Fn::GetAtt"][0] == "WorkerRole"
    (container,) = task["ContainerDefinitions"]
    # The image's ENTRYPOINT is `batchq worker`; these are its arguments, and the real parser takes them.
    from batchq.cli import build_parser

    roles = queue_roles(template, spec.queues)
    command = [c if isinstance(c, str) else f"<{roles[c['Fn::GetAtt'][0]]}>" for c in container["Command"]]
    args = build_parser().parse_args(["worker", *command])
    assert (args.queue, args.results_queue) == ("<input>", "<results>")
    assert container["StopTimeout"] > args.grace_period + args.wait_seconds
    target = one(template, "AWS::ApplicationAutoScaling::ScalableTarget")
    assert target["ScalableDimension"] == "ecs:service:DesiredCount"
    policy = one(template, "AWS::ApplicationAutoScaling::ScalingPolicy")
    config = policy["TargetTrackingScalingPolicyConfiguration"]
    assert ref_target(config["TargetValue"]) == "BacklogPerTask"
    metrics = {m["Id"]: m for m in config["CustomizedMetricSpecification"]["Metrics"]}
    assert metrics["backlog_per_task"]["Expression"] == "(visible + inflight) / tasks"
    assert metrics["tasks"]["MetricStat"]["Metric"]["MetricName"] == "RunningTaskCount"
    cluster = one(template, "AWS::ECS::Cluster")
    assert {"Name": "containerInsights", "Value": "enabled"} in cluster["ClusterSettings"]  # RunningTaskCount


def test_keda_role_trusts_the_service_account_only(template):
    trust = template["Resources"]["WorkerRole"]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    web = [s for s in trust if s["Action"] == "sts:AssumeRoleWithWebIdentity"]
    (stmt,) = web
    cond = stmt["Condition"]["StringEquals"]
    issuer = "oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLE"
    assert cond == {f"{issuer}:sub": "system:serviceaccount:default:batchq-worker", f"{issuer}:aud": "sts.amazonaws.com"}
    assert any(s.get("Principal", {}).get("Service") == "ecs-tasks.amazonaws.com" for s in trust)


def test_options_refuse_an_unknown_worker_kind():
    with pytest.raises(ValueError, match="unknown worker kinds"):
        StackOptions(workers=frozenset({"fargate"}))
    with pytest.raises(ValueError, match="eks_oidc_provider"):
        StackOptions(workers=frozenset({"keda"}))


def test_k8s_worker_yaml_names_outputs_the_stack_has(template):
    import re

    named = re.findall(r"stack output (\w+)", (REPO / "deploy" / "k8s-worker.yaml").read_text())
    assert set(named) == {"WorkerRoleArn", "InputQueueUrl"}
    assert set(named) <= set(template["Outputs"])


def test_outputs_hand_off(template):
    outputs = template["Outputs"]
    for name in ("InputQueueUrl", "ResultsQueueUrl", "InputDlqQueueUrl", "ResultsDlqQueueUrl", "AirflowRoleArn",
                 "WorkerRoleArn", "DrainerRoleArn", "LambdaRoleArn", "AlarmTopicArn", "AirflowConnectionExtra", "QueueUrlsJson"):
        assert name in outputs, name
