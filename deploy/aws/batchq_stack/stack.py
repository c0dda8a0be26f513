"""One CloudFormation stack per batch: queues, queue policies, alarms, an SNS topic, one IAM role per
component, and the workers (Lambda with an SQS event source mapping, ECS Fargate with target tracking on
backlog per task, and/or the IRSA role KEDA's ``deploy/k8s-worker.yaml`` takes).

The queues are declared from :func:`batchq.sqs.queues.planned_queues` — the very function ``batchq queues
create`` / ``ensure_queues`` converges to — so the stack and the CLI cannot drift; L1 (``Cfn*``)
constructs keep the template exactly what is written here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import aws_cdk as cdk
from aws_cdk import aws_applicationautoscaling as appscaling
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from batchq.spec import BatchSpec
from batchq.sqs.queues import PlannedQueue, planned_queues
from constructs import Construct

from batchq_stack.access import GRANTS

#: Worker kinds the stack can deploy (``-c workers=lambda,ecs``; ``keda`` adds the IRSA trust).
WORKER_KINDS = frozenset({"lambda", "ecs", "keda"})
#: Attributes that are numbers in CloudFormation's AWS::SQS::Queue (SQS takes them all as strings).
_INT_ATTRIBUTES = frozenset({"VisibilityTimeout", "MessageRetentionPeriod", "MaximumMessageSize", "DelaySeconds", "ReceiveMessageWaitTimeSeconds"})
_BOOL_ATTRIBUTES = frozenset({"SqsManagedSseEnabled"})
#: Default age alarm thresholds when the spec sets no deadline (or no run start is given).
DEFAULT_INPUT_AGE_S = 3600
DEFAULT_RESULTS_AGE_S = 900


@dataclass(frozen=True)
class StackOptions:
    """Synth-time choices (CDK context), see docs/deploy.md "Deploy to AWS".

    :param workers: worker kinds to deploy (subset of :data:`WORKER_KINDS`).
    :param handlers: handler modules the workers import (``BATCHQ_HANDLERS``, ``--handlers``).
    :param lambda_package: directory with the Lambda package (``make aws-lambda-package``); None: the
        template takes the zip's S3 location as parameters.
    :param run_start: ``"HH:MM"`` the DAG's schedule starts a run; with the spec's deadline it sets the
        default input-age threshold.
    :param eks_oidc_provider: the EKS cluster's OIDC issuer (host/path, no scheme), for KEDA's IRSA role.
    :param k8s_service_account: ``namespace:name`` of the worker's service account (IRSA subject).
    """

    workers: frozenset[str] = frozenset({"lambda", "ecs"})
    handlers: str = "batchq.examples"
    lambda_package: str | None = None
    run_start: str | None = None
    eks_oidc_provider: str | None = None
    k8s_service_account: str = "default:batchq-worker"

    def __post_init__(self) -> None:
        unknown = set(self.workers) - WORKER_KINDS
        if unknown:
            raise ValueError(f"unknown worker kinds {sorted(unknown)}; choose from {sorted(WORKER_KINDS)}")
        if "keda" in self.workers and not self.eks_oidc_provider:
            raise ValueError("workers=keda needs -c eks_oidc_provider=oidc.eks.REGION.amazonaws.com/id/ID")


def cfn_queue_properties(planned: PlannedQueue, dead_letter_arn: str | None) -> dict[str, object]:
    """AWS::SQS::Queue properties for ``planned``: its SQS attributes under the same names (CloudFormation
    uses SQS's attribute names), numbers and booleans typed, the redrive policy as an object. An
    attribute this function does not know fails the synth instead of being dropped."""
    props: dict[str, object] = {"QueueName": planned.name}
    for name, value in planned.attributes.items():
        if name in _INT_ATTRIBUTES:
            props[name] = int(value)
        elif name in _BOOL_ATTRIBUTES:
            props[name] = value == "true"
        else:
            raise ValueError(f"queue attribute {name}={value!r} has no CloudFormation mapping in {__name__}")
    if planned.dead_letter_role is not None:
        props["RedrivePolicy"] = {"deadLetterTargetArn": dead_letter_arn, "maxReceiveCount": planned.max_receive_count}
    return props


def input_age_threshold_s(spec: BatchSpec, run_start: str | None) -> int:
    """Default alarm threshold for the input queue's oldest message: half the window from the run's
    start to the spec's deadline (so the alarm fires with half the window left), else 1 hour."""
    if not spec.deadline or not run_start:
        return DEFAULT_INPUT_AGE_S
    start = datetime.strptime(run_start, "%H:%M")
    end = datetime.strptime(spec.deadline, "%H:%M")
    window = (end - start).total_seconds() % 86_400 or 86_400
    return max(300, int(window // 2))


class BatchqStack(cdk.Stack):
    """The stack of one batch (:class:`batchq.spec.BatchSpec`).

    :param spec: the batch; queue names and attributes come from it.
    :param options: synth-time choices (:class:`StackOptions`).
    """

    def __init__(self, scope: Construct, construct_id: str, *, spec: BatchSpec, options: StackOptions, **kwargs) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.spec = spec
        self.options = options
        self.template_options.description = f"batchq: queues, alarms, roles and workers of batch {spec.name}"
        self._parameters()
        self.queues = self._queues()
        self.topic = self._topic()
        self._alarms()
        self.roles = {
            "airflow": self._role("airflow", self._account_principal(), "Airflow's fan-out, wait and drain tasks"),
            "drainer": self._role("drainer", self._account_principal(), "the standalone drainer (batchq drain)"),
        }
        self.roles["worker"] = self._role("worker", self._worker_principal(), "batchq worker(s): ECS task role, KEDA IRSA, or a host")
        if "lambda" in options.workers:
            self.roles["lambda"] = self._role("lambda", iam.ServicePrincipal("lambda.amazonaws.com"), "the Lambda worker")
            self._lambda_worker()
        if "ecs" in options.workers:
            self._ecs_worker()
        self._outputs()

    # -- parameters --------------------------------------------------------------------------------

    def _parameters(self) -> None:
        p = cdk.CfnParameter
        self.p_input_age = p(self, "InputAgeAlarmSeconds", type="Number", min_value=60,
                             default=input_age_threshold_s(self.spec, self.options.run_start),
                             description="Alarm when the input queue's oldest message is older (default from the spec's deadline)")
        self.p_results_age = p(self, "ResultsAgeAlarmSeconds", type="Number", min_value=60, default=DEFAULT_RESULTS_AGE_S,
                               description="Alarm when the results queue's oldest message is older")
        self.p_stall = p(self, "BacklogStallPeriods", type="Number", min_value=1, max_value=288, default=3,
                         description="5-minute periods the input backlog may stay flat or grow while workers hold messages")
        self.p_trusted = p(self, "TrustedPrincipalArn", type="String", default="",
                           description="Principal that may assume the Airflow and drainer roles (default: this account)")
        self.c_trusted_default = cdk.CfnCondition(self, "TrustAccount", expression=cdk.Fn.condition_equals(self.p_trusted.value_as_string, ""))

    def _account_principal(self) -> iam.IPrincipal:
        arn = cdk.Fn.condition_if(self.c_trusted_default.logical_id, f"arn:{self.partition}:iam::{self.account}:root",
                                  self.p_trusted.value_as_string)
        return iam.ArnPrincipal(cdk.Token.as_string(arn))

    def _worker_principal(self) -> iam.IPrincipal:
        principals: list[iam.IPrincipal] = []
        if "ecs" in self.options.workers:
            principals.append(iam.ServicePrincipal("ecs-tasks.amazonaws.com"))
        if "keda" in self.options.workers:
            issuer = self.options.eks_oidc_provider
            namespace, _, name = self.options.k8s_service_account.partition(":")
            principals.append(iam.WebIdentityPrincipal(
                f"arn:{self.partition}:iam::{self.account}:oidc-provider/{issuer}",
                conditions={"StringEquals": {f"{issuer}:sub": f"system:serviceaccount:{namespace}:{name}",
                                             f"{issuer}:aud": "sts.amazonaws.com"}},
            ))
        if not principals:  # workers on hosts of your own (`batchq workers`): assumed like the Airflow role
            principals.append(self._account_principal())
        return principals[0] if len(principals) == 1 else iam.CompositePrincipal(*principals)

    # -- queues ------------------------------------------------------------------------------------

    def _queues(self) -> dict[str, sqs.CfnQueue]:
        out: dict[str, sqs.CfnQueue] = {}
        for planned in planned_queues(self.spec.queues):
            dlq = out[planned.dead_letter_role].attr_arn if planned.dead_letter_role else None
            queue = sqs.CfnQueue(self, _camel(planned.role) + "Queue", **_snake(cfn_queue_properties(planned, dlq)))
            # A batch's queues hold in-flight work: keep them (and their messages) if the stack goes.
            queue.apply_removal_policy(cdk.RemovalPolicy.RETAIN)
            queue.add_metadata("checkov", {"skip": [{"id": "CKV_AWS_27", "comment":
                "encrypted at rest with SSE-SQS (SqsManagedSseEnabled: true); the check only recognises a KMS key"}]})
            out[planned.role] = queue
        sqs.CfnQueuePolicy(self, "DenyInsecureTransport", queues=[q.ref for q in out.values()], policy_document={
            "Version": "2012-10-17",
            "Statement": [{
                "Sid": "DenyInsecureTransport",
                "Effect": "Deny",
                "Principal": {"AWS": "*"},
                "Action": "sqs:*",
                "Resource": [q.attr_arn for q in out.values()],
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            }],
        })
        return out

    # -- alarms ------------------------------------------------------------------------------------

    def _topic(self) -> sns.CfnTopic:
        topic = sns.CfnTopic(self, "AlarmTopic", display_name=f"batchq {self.spec.name} alarms")
        topic.add_metadata("checkov", {"skip": [{"id": "CKV_AWS_26", "comment":
            "CloudWatch alarms cannot publish to a topic encrypted with the AWS-managed SNS key; alarm "
            "notifications carry queue names and counts, no payload data"}]})
        sns.CfnTopicPolicy(self, "AlarmTopicPolicy", topics=[topic.ref], policy_document={
            "Version": "2012-10-17",
            "Statement": [
                {"Sid": "CloudWatchAlarms", "Effect": "Allow", "Principal": {"Service": "cloudwatch.amazonaws.com"},
                 "Action": "sns:Publish", "Resource": topic.ref,
                 "Condition": {"StringEquals": {"aws:SourceAccount": self.account}}},
                {"Sid": "DenyInsecureTransport", "Effect": "Deny", "Principal": {"AWS": "*"}, "Action": "sns:Publish",
                 "Resource": topic.ref, "Condition": {"Bool": {"aws:SecureTransport": "false"}}},
            ],
        })
        return topic

    def _sqs_metric(self, role: str, metric: str, id_: str, period: int) -> dict[str, object]:
        return {"Id": id_, "ReturnData": False, "MetricStat": {
            "Metric": {"Namespace": "AWS/SQS", "MetricName": metric,
                       "Dimensions": [{"Name": "QueueName", "Value": self.queues[role].attr_queue_name}]},
            "Period": period, "Stat": "Average"}}

    def _alarm(self, logical_id: str, description: str, metrics: list | None = None, **props: object) -> cw.CfnAlarm:
        alarm = cw.CfnAlarm(self, logical_id, alarm_description=description, alarm_actions=[self.topic.ref],
                            ok_actions=[self.topic.ref], treat_missing_data="notBreaching", **props)
        if metrics:  # metric math, written as CloudFormation takes it
            alarm.add_property_override("Metrics", metrics)
        return alarm

    def _alarms(self) -> None:
        runbook = "docs/runbook.md#"
        for role, param, anchor in (("input", self.p_input_age, "alarm-input-oldest-message-age"),
                                    ("results", self.p_results_age, "alarm-results-oldest-message-age")):
            self._alarm(f"{_camel(role)}OldestMessageAgeAlarm",
                        f"batchq {self.spec.name}: oldest message on {role} queue too old. Runbook: {runbook}{anchor}",
                        namespace="AWS/SQS", metric_name="ApproximateAgeOfOldestMessage", statistic="Maximum",
                        dimensions=[cw.CfnAlarm.DimensionProperty(name="QueueName", value=self.queues[role].attr_queue_name)],
                        period=60, evaluation_periods=3, datapoints_to_alarm=3,
                        threshold=param.value_as_number, comparison_operator="GreaterThanThreshold")
        for role in ("input_dlq", "results_dlq"):
            self._alarm(f"{_camel(role)}DepthAlarm",
                        f"batchq {self.spec.name}: messages on the {role.replace('_', ' ')}. Runbook: {runbook}alarm-dlq-depth",
                        namespace="AWS/SQS", metric_name="ApproximateNumberOfMessagesVisible", statistic="Maximum",
                        dimensions=[cw.CfnAlarm.DimensionProperty(name="QueueName", value=self.queues[role].attr_queue_name)],
                        period=60, evaluation_periods=1, threshold=0, comparison_operator="GreaterThanThreshold")
        # Backlog (visible + in flight) not falling while workers hold messages: 1 for a 5-minute period
        # where in-flight > 0 and the backlog did not drop since the previous period.
        stall = "IF(inflight > 0 AND DIFF(visible + inflight) >= 0, 1, 0)"
        self._alarm("InputBacklogStalledAlarm",
                    f"batchq {self.spec.name}: input backlog not falling while workers run. Runbook: {runbook}alarm-backlog-stalled",
                    metrics=[self._sqs_metric("input", "ApproximateNumberOfMessagesVisible", "visible", 300),
                             self._sqs_metric("input", "ApproximateNumberOfMessagesNotVisible", "inflight", 300),
                             {"Id": "stalled", "Expression": stall, "Label": "backlog not falling", "ReturnData": True}],
                    evaluation_periods=self.p_stall.value_as_number, datapoints_to_alarm=self.p_stall.value_as_number,
                    threshold=1, comparison_operator="GreaterThanOrEqualToThreshold")

    # -- roles -------------------------------------------------------------------------------------

    def _role(self, component: str, principal: iam.IPrincipal, description: str) -> iam.CfnRole:
        """The component's role with one statement per queue, exactly :data:`GRANTS`."""
        statements = [
            {"Sid": _camel(role), "Effect": "Allow", "Action": sorted(actions), "Resource": self.queues[role].attr_arn}
            for role, actions in GRANTS[component].items()
        ]
        trust = iam.PolicyDocument(statements=[iam.PolicyStatement(
            actions=["sts:AssumeRoleWithWebIdentity" if isinstance(principal, iam.WebIdentityPrincipal) else "sts:AssumeRole"],
            principals=[principal])]) if not isinstance(principal, iam.CompositePrincipal) else None
        role = iam.CfnRole(
            self, f"{_camel(component)}Role", description=f"batchq {self.spec.name}: {description}",
            assume_role_policy_document=trust or _composite_trust(principal),
            policies=[iam.CfnRole.PolicyProperty(policy_name="batchq-sqs", policy_document={"Version": "2012-10-17", "Statement": statements})],
        )
        role.add_metadata("batchq:component", component)
        return role

    # -- workers -----------------------------------------------------------------------------------

    def _lambda_worker(self) -> None:
        q = self.spec.queues
        name = f"{self.spec.name.replace('_', '-')}-worker"[:64]
        p = cdk.CfnParameter
        max_conc = p(self, "LambdaMaximumConcurrency", type="Number", min_value=2, max_value=1000, default=10,
                     description="ESM ScalingConfig.MaximumConcurrency: the most concurrent worker invocations")
        batch_size = p(self, "LambdaBatchSize", type="Number", min_value=1, max_value=100, default=10,
                       description="Records per invocation")
        window = p(self, "LambdaBatchWindowSeconds", type="Number", min_value=0, max_value=300, default=1,
                   description="MaximumBatchingWindowInSeconds")
        enabled = p(self, "LambdaWorkerEnabled", type="String", allowed_values=["true", "false"], default="true",
                    description="Whether the event source mapping polls the input queue (false pauses the Lambda worker)")
        log_group = logs.CfnLogGroup(self, "LambdaWorkerLogs", log_group_name=f"/aws/lambda/{name}", retention_in_days=30)
        log_group.add_metadata("checkov", {"skip": [{"id": "CKV_AWS_158", "comment": "CloudWatch Logs' own encryption; no payload data is logged"}]})
        role = self.roles["lambda"]
        role.policies = [*role.policies, iam.CfnRole.PolicyProperty(policy_name="batchq-logs", policy_document={
            "Version": "2012-10-17",
            "Statement": [{"Sid": "Logs", "Effect": "Allow", "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                           "Resource": f"arn:{self.partition}:logs:{self.region}:{self.account}:log-group:/aws/lambda/{name}:log-stream:*"}],
        })]
        code = self._lambda_code()
        # AWS: the queue's visibility timeout should be at least 6 × the function timeout (ESM retries).
        timeout = max(3, min(900, q.visibility_timeout_s // 6))
        function = lambda_.CfnFunction(
            self, "LambdaWorker", function_name=name, role=role.attr_arn, runtime="python3.11", architectures=["x86_64"],
            handler="batchq.worker.lambda_handler", timeout=timeout, memory_size=512, code=code,
            environment=lambda_.CfnFunction.EnvironmentProperty(variables={
                "BATCHQ_RESULTS_QUEUE_URL": self.queues["results"].ref,
                "BATCHQ_DEAD_LETTER_QUEUE_URL": self.queues["input_dlq"].ref,
                "BATCHQ_MAX_ATTEMPTS": str(q.max_receive_count),
                "BATCHQ_HANDLERS": self.options.handlers,
            }),
        )
        function.add_resource_dependency(log_group)
        function.add_metadata("checkov", {"skip": [
            {"id": "CKV_AWS_116", "comment": "the SQS event source mapping retries; failures end on the input DLQ via its redrive policy"},
            {"id": "CKV_AWS_117", "comment": "talks only to SQS over TLS; a VPC is the deployer's choice"},
            {"id": "CKV_AWS_115", "comment": "concurrency is capped by the ESM's ScalingConfig.MaximumConcurrency"},
            {"id": "CKV_AWS_173", "comment": "environment holds queue URLs and module names only, no secrets"},
        ]})
        self.lambda_function = function
        lambda_.CfnEventSourceMapping(
            self, "LambdaWorkerQueueMapping", function_name=function.ref, event_source_arn=self.queues["input"].attr_arn,
            batch_size=batch_size.value_as_number, maximum_batching_window_in_seconds=window.value_as_number,
            function_response_types=["ReportBatchItemFailures"],
            scaling_config=lambda_.CfnEventSourceMapping.ScalingConfigProperty(maximum_concurrency=max_conc.value_as_number),
            enabled=enabled.value,
        )

    def _lambda_code(self) -> lambda_.CfnFunction.CodeProperty:
        if self.options.lambda_package:
            asset = cdk.aws_s3_assets.Asset(self, "LambdaWorkerPackage", path=self.options.lambda_package)
            return lambda_.CfnFunction.CodeProperty(s3_bucket=asset.s3_bucket_name, s3_key=asset.s3_object_key)
        bucket = cdk.CfnParameter(self, "LambdaCodeS3Bucket", type="String", description="S3 bucket of the Lambda package zip")
        key = cdk.CfnParameter(self, "LambdaCodeS3Key", type="String", description="S3 key of the Lambda package zip")
        return lambda_.CfnFunction.CodeProperty(s3_bucket=bucket.value_as_string, s3_key=key.value_as_string)

    def _ecs_worker(self) -> None:
        p = cdk.CfnParameter
        image = p(self, "WorkerImage", type="String", description="batchq worker image (deploy/worker.Dockerfile)")
        subnets = p(self, "WorkerSubnets", type="List<AWS::EC2::Subnet::Id>", description="Private subnets of the worker tasks")
        security_group = p(self, "WorkerSecurityGroup", type="AWS::EC2::SecurityGroup::Id", description="Security group of the worker tasks (egress to SQS only)")
        max_tasks = p(self, "WorkerMaxTasks", type="Number", min_value=1, default=20, description="Most worker tasks")
        min_tasks = p(self, "WorkerMinTasks", type="Number", min_value=1, default=1,
                      description="Fewest worker tasks (target tracking on a ratio cannot scale from zero)")
        backlog = p(self, "BacklogPerTask", type="Number", min_value=1, default=100,
                    description="Target messages (visible + in flight) per task: B of batchq's scaling rule")
        cluster = ecs.CfnCluster(self, "WorkerCluster", cluster_settings=[ecs.CfnCluster.ClusterSettingsProperty(name="containerInsights", value="enabled")])
        log_group = logs.CfnLogGroup(self, "WorkerLogs", retention_in_days=30)
        log_group.add_metadata("checkov", {"skip": [{"id": "CKV_AWS_158", "comment": "CloudWatch Logs' own encryption; no payload data is logged"}]})
        execution = iam.CfnRole(self, "WorkerExecutionRole", description=f"batchq {self.spec.name}: ECS agent (logs)",
            assume_role_policy_document={"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "ecs-tasks.amazonaws.com"}, "Action": "sts:AssumeRole"}]},
            policies=[iam.CfnRole.PolicyProperty(policy_name="batchq-logs", policy_document={"Version": "2012-10-17", "Statement": [
                {"Sid": "Logs", "Effect": "Allow", "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                 "Resource": cdk.Fn.sub("arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:${G}:log-stream:*", {"G": log_group.ref})}]})])
        task = ecs.CfnTaskDefinition(
            self, "WorkerTask", requires_compatibilities=["FARGATE"], network_mode="awsvpc", cpu="512", memory="1024",
            task_role_arn=self.roles["worker"].attr_arn, execution_role_arn=execution.attr_arn,
            container_definitions=[ecs.CfnTaskDefinition.ContainerDefinitionProperty(
                name="worker", image=image.value_as_string, essential=True, readonly_root_filesystem=True,
                # ECS's SIGTERM → SIGKILL window: > --grace-period 30 + one long poll (20 s), as in k8s-worker.yaml.
                stop_timeout=60,
                # Queue names from the stack itself: the image needs no spec file. The DLQ comes from the
                # input queue's redrive policy, as always.
                command=["--queue", self.queues["input"].attr_queue_name, "--results-queue", self.queues["results"].attr_queue_name,
                         "--handlers", self.options.handlers, "--grace-period", "30"],
                environment=[ecs.CfnTaskDefinition.KeyValuePairProperty(name="AWS_REGION", value=self.region)],
                log_configuration=ecs.CfnTaskDefinition.LogConfigurationProperty(log_driver="awslogs", options={
                    "awslogs-group": log_group.ref, "awslogs-region": self.region, "awslogs-stream-prefix": "worker"}),
            )],
        )
        service = ecs.CfnService(
            self, "WorkerService", cluster=cluster.ref, task_definition=task.ref, launch_type="FARGATE",
            desired_count=min_tasks.value_as_number,
            network_configuration=ecs.CfnService.NetworkConfigurationProperty(awsvpc_configuration=ecs.CfnService.AwsVpcConfigurationProperty(
                subnets=subnets.value_as_list, security_groups=[security_group.value_as_string], assign_public_ip="DISABLED")),
        )
        target = appscaling.CfnScalableTarget(
            self, "WorkerScalableTarget", service_namespace="ecs", scalable_dimension="ecs:service:DesiredCount",
            resource_id=cdk.Fn.join("/", ["service", cluster.ref, service.attr_name]),
            min_capacity=min_tasks.value_as_number, max_capacity=max_tasks.value_as_number,
        )
        # Backlog per task by metric math (AWS's recommended custom metric for SQS workers): (visible +
        # in flight) / running tasks — the inputs of batchq's own desired_workers rule.
        def sqs_metric(id_: str, metric: str) -> dict[str, object]:
            return {"Id": id_, "ReturnData": False, "MetricStat": {"Stat": "Average", "Metric": {
                "Namespace": "AWS/SQS", "MetricName": metric,
                "Dimensions": [{"Name": "QueueName", "Value": self.queues["input"].attr_queue_name}]}}}
        appscaling.CfnScalingPolicy(
            self, "WorkerBacklogPerTask", policy_name=f"{self.spec.name}-backlog-per-task", policy_type="TargetTrackingScaling",
            scaling_target_id=target.ref,
            target_tracking_scaling_policy_configuration=appscaling.CfnScalingPolicy.TargetTrackingScalingPolicyConfigurationProperty(
                target_value=backlog.value_as_number, scale_out_cooldown=60, scale_in_cooldown=300,
            ),
        ).add_property_override("TargetTrackingScalingPolicyConfiguration.CustomizedMetricSpecification", {"Metrics": [
                    sqs_metric("visible", "ApproximateNumberOfMessagesVisible"),
                    sqs_metric("inflight", "ApproximateNumberOfMessagesNotVisible"),
                    {"Id": "tasks", "ReturnData": False, "MetricStat": {"Stat": "Average", "Metric": {
                        "Namespace": "ECS/ContainerInsights", "MetricName": "RunningTaskCount",
                        "Dimensions": [{"Name": "ClusterName", "Value": cluster.ref},
                                       {"Name": "ServiceName", "Value": service.attr_name}]}}},
                    {"Id": "backlog_per_task", "Expression": "(visible + inflight) / tasks",
                     "Label": "backlog per task", "ReturnData": True},
                ]})

    # -- outputs -----------------------------------------------------------------------------------

    def _outputs(self) -> None:
        def out(name: str, value: str, description: str) -> None:
            cdk.CfnOutput(self, name, value=value, description=description)

        for role, queue in self.queues.items():
            out(f"{_camel(role)}QueueUrl", queue.ref, f"{role} queue URL")
            out(f"{_camel(role)}QueueName", queue.attr_queue_name, f"{role} queue name")
        for component, role in self.roles.items():
            out(f"{_camel(component)}RoleArn", role.attr_arn, f"IAM role of the {component} component")
        out("AlarmTopicArn", self.topic.ref, "SNS topic of the alarms: subscribe the on-call channel")
        out("AirflowConnectionExtra", cdk.Fn.join("", ['{"role_arn": "', self.roles["airflow"].attr_arn,
                                                         '", "region_name": "', self.region, '"}']),
            "extra of the Airflow AWS connection (aws_default) the batchq tasks use")
        out("QueueUrlsJson", cdk.Fn.join("", ['{"input": "', self.queues["input"].ref, '", "input_dlq": "',
                                               self.queues["input_dlq"].ref, '", "results": "', self.queues["results"].ref,
                                               '", "results_dlq": "', self.queues["results_dlq"].ref, '"}']),
            "plan_shards(queues=...) / BatchTaskGroup queue URLs")


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


def _snake(props: dict[str, object]) -> dict[str, object]:
    """CloudFormation property names → the CDK L1 keyword names (``VisibilityTimeout`` → ``visibility_timeout``)."""
    import re

    return {re.sub(r"(?<!^)(?=[A-Z])", "_", k).lower(): v for k, v in props.items()}


def _composite_trust(principal: iam.CompositePrincipal) -> dict[str, object]:
    doc = iam.PolicyDocument()
    principal.add_to_assume_role_policy(doc)
    return doc


