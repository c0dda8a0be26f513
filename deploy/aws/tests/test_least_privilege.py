"""Least privilege, proven from the code: each component's role in the synthesised template grants exactly
the SQS actions batchq's source can call for that component — one more fails, one fewer fails — and only
on the stack's own queues. No IAM statement anywhere in the template allows ``sqs:*`` or ``Resource: "*"``.

The actions come from the AST call graph of ``include/batchq`` (:mod:`sqs_actions`); which queue each
action is granted on is the table in ``batchq_stack/access.py``, checked against what every component
really calls on which queue by the LocalStack run (``tests/aws/test_deployed_stack.py``).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import pytest
import sqs_actions
from batchq_stack.access import GRANTS, PLATFORM_ACTIONS
from sqs_actions import Package, iam_actions
from template_reading import allow_statements, component_roles, resources, sqs_grants


@dataclass(frozen=True)
class Component:
    """Where a component's code starts, and what it never runs when deployed by this stack (with why)."""

    entries: tuple[str, ...]
    excluded: dict[str, str] = field(default_factory=dict)


COMPONENTS: dict[str, Component] = {
    # plan_shards + FanOutOperator, QueueDrainedSensor + its trigger, ResultsDrainOperator, and the plugin
    # (the Batch view's queue gauges read with [batchq] api_aws_conn_id: the same role serves).
    "airflow": Component(
        ("batchq.airflow.operators.fanout", "batchq.airflow.sensors", "batchq.airflow.triggers",
         "batchq.airflow.operators.drain", "batchq.airflow.plugin", "batchq.airflow.views.gauges"),
        {"batchq.airflow.hook:BatchqSqsHook.ensure_queues":
         "provisioning (plan_shards(provision=True), EnsureQueuesOperator): the stack owns the queues, the DAG "
         "uses BatchTaskGroup(provision=False); giving Airflow CreateQueue/SetQueueAttributes would let it "
         "change what the stack declares"},
    ),
    # `batchq worker` and `batchq workers` (the supervisor reads the input queue's depth).
    "worker": Component(("batchq.cli.worker", "batchq.worker.runner", "batchq.worker.supervisor")),
    # `batchq drain`; `batchq redrive` lives in the same module and is an operator's action on the DLQs.
    "drainer": Component(
        ("batchq.cli.drain",),
        {"batchq.cli.drain:cmd_redrive": "DLQ redrive (StartMessageMoveTask, send to the source queue) is an "
                                         "operator's repair, run with an operator's credentials (docs/runbook.md)"},
    ),
    "lambda": Component(("batchq.worker.lambda_adapter",)),
}


def derived_actions(component: str, package: Package | None = None) -> frozenset[str]:
    """IAM actions the component's code can call, plus those its platform needs (:data:`PLATFORM_ACTIONS`)."""
    spec = COMPONENTS[component]
    ops = (package or sqs_actions.package()).operations(spec.entries, spec.excluded)
    return iam_actions(ops) | PLATFORM_ACTIONS.get(component, frozenset())


def problems(granted: set[str], derived: set[str]) -> list[str]:
    """What is wrong with ``granted`` against ``derived``: missing and extra actions, named."""
    out = [f"missing {a} (the code calls it)" for a in sorted(derived - granted)]
    out += [f"extra {a} (no code path calls it)" for a in sorted(granted - derived)]
    return out


def role_problems(template: dict, component: str, spec, derived: set[str]) -> list[str]:
    grants = sqs_grants(template, component, spec.queues)
    granted = set().union(*grants.values()) if grants else set()
    return problems(granted, derived)


# -- the real code against the real template ---------------------------------------------------------------


@pytest.mark.parametrize("component", sorted(COMPONENTS))
def test_each_role_grants_exactly_what_its_code_calls(template, spec, component):
    derived = derived_actions(component)
    assert derived, f"no SQS call found for {component}: the call graph lost its way"
    assert role_problems(template, component, spec, derived) == []


@pytest.mark.parametrize("component", sorted(COMPONENTS))
def test_the_template_grants_the_access_table_per_queue(template, spec, component):
    granted = sqs_grants(template, component, spec.queues)
    assert granted == {queue: set(actions) for queue, actions in GRANTS[component].items()}


def test_what_the_code_calls_is_what_we_expect_it_to_call():
    """A readable statement of the derivation's result (the test above is the one that binds)."""
    assert derived_actions("worker") == {
        "sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueAttributes",
        "sqs:GetQueueUrl", "sqs:SendMessage"}
    assert derived_actions("drainer") >= {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility"}
    assert "sqs:SendMessage" not in derived_actions("drainer")
    assert "sqs:CreateQueue" not in derived_actions("airflow")
    assert iam_actions(sqs_actions.package().operations(["batchq.worker.lambda_adapter"])) == {"sqs:SendMessage"}


@pytest.mark.parametrize("component,node", [(c, n) for c, s in COMPONENTS.items() for n in s.excluded])
def test_every_exclusion_cuts_a_real_path(component, node):
    """An exclusion that no longer hides anything is stale: the code changed, look again."""
    spec = COMPONENTS[component]
    with_it = sqs_actions.package().operations(spec.entries, set(spec.excluded) - {node})
    without = sqs_actions.package().operations(spec.entries, spec.excluded)
    assert set(with_it) > set(without), f"excluding {node} removes no SQS operation from {component}"


def test_no_wildcards_anywhere(templates):
    for name, template in templates.items():
        for lid, role in {**resources(template, "AWS::IAM::Role")}.items():
            for statement in allow_statements(role):
                actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
                res = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
                assert not [a for a in actions if a.endswith("*")], (name, lid, statement)
                assert "*" not in res, (name, lid, statement)
                assert not any(isinstance(r, str) and r.endswith(":*") and ":log-stream:" not in r for r in res), (name, lid)
        assert not resources(template, "AWS::IAM::Policy") and not resources(template, "AWS::IAM::ManagedPolicy")
        for role in resources(template, "AWS::IAM::Role").values():
            assert "ManagedPolicyArns" not in role["Properties"], "managed policies grant what this test cannot see"


def test_one_role_per_component(templates):
    assert set(component_roles(templates["all"])) == {"airflow", "worker", "drainer", "lambda"}
    assert set(component_roles(templates["hosts"])) == {"airflow", "worker", "drainer"}


# -- the test can fail ----------------------------------------------------------------------------------


def _edit_role(template: dict, component: str, edit) -> dict:
    mutated = copy.deepcopy(template)
    role = mutated["Resources"][component_roles(mutated)[component]]
    edit(allow_statements(role))
    return mutated


def test_an_extra_action_in_a_role_fails(template, spec):
    def add_purge(statements):
        statements[0]["Action"] = [*statements[0]["Action"], "sqs:PurgeQueue"]

    mutated = _edit_role(template, "worker", add_purge)
    assert role_problems(mutated, "worker", spec, derived_actions("worker")) == ["extra sqs:PurgeQueue (no code path calls it)"]


def test_a_missing_action_in_a_role_fails(template, spec):
    def drop_receive(statements):
        for s in statements:
            s["Action"] = [a for a in s["Action"] if a != "sqs:ReceiveMessage"]

    mutated = _edit_role(template, "worker", drop_receive)
    assert role_problems(mutated, "worker", spec, derived_actions("worker")) == ["missing sqs:ReceiveMessage (the code calls it)"]


def test_a_grant_on_a_foreign_queue_or_wildcard_fails(template, spec):
    def widen(statements):
        statements[0]["Resource"] = "*"

    with pytest.raises(AssertionError, match="not one of the stack's queues"):
        sqs_grants(_edit_role(template, "drainer", widen), "drainer", spec.queues)


def test_a_new_call_in_the_code_is_a_missing_grant(template, spec):
    """Synthetic source: a worker that starts purging its queue needs sqs:PurgeQueue, which the role lacks."""
    sources = {
        "batchq.sqs": "def purge(client, url):\n    client.purge_queue(QueueUrl=url)\n\n"
                      "def receive(client, url):\n    return client.receive_message(QueueUrl=url)\n",
        "batchq.worker.runner": "from batchq.sqs import receive, purge\n\nclass Worker:\n"
                                "    def run(self, c):\n        receive(c, 'u')\n        self._reset(c)\n\n"
                                "    def _reset(self, c):\n        purge(c, 'u')\n",
    }
    package = Package.from_sources(sources)
    ops = package.operations(["batchq.worker.runner:Worker.run"])
    assert set(ops) == {"PurgeQueue", "ReceiveMessage"}
    assert ops["PurgeQueue"] == ["batchq.worker.runner:Worker.run", "batchq.worker.runner:Worker._reset", "batchq.sqs:purge"]
    assert "missing sqs:PurgeQueue (the code calls it)" in problems(set(GRANTS["worker"]["input"]), iam_actions(ops))


def test_a_call_the_code_no_longer_makes_is_an_extra_grant():
    """Synthetic source: a worker that never changes visibility leaves ChangeMessageVisibility extra."""
    package = Package.from_sources({
        "batchq.sqs": "def receive(client, url):\n    return client.receive_message(QueueUrl=url)\n\n"
                      "def delete(client, url, m):\n    return _run(client.delete_message_batch, url, m)\n\n"
                      "def _run(call, url, m):\n    return call(QueueUrl=url, Entries=m)\n",
        "batchq.worker.runner": "from batchq import sqs\n\ndef run(c):\n    sqs.delete(c, 'u', sqs.receive(c, 'u'))\n",
    })
    derived = iam_actions(package.operations(["batchq.worker.runner"]))
    assert derived == {"sqs:ReceiveMessage", "sqs:DeleteMessage"}  # a bound method passed on counts too
    assert problems({"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility"}, derived) == [
        "extra sqs:ChangeMessageVisibility (no code path calls it)"]


def test_a_method_on_an_unknown_object_is_followed_by_name():
    """``self.hook.send(...)``: the AST cannot know the hook's type, so every method of that name counts."""
    package = Package.from_sources({
        "batchq.hook": "class Hook:\n    def send(self, c):\n        c.send_message_batch(QueueUrl='u', Entries=[])\n",
        "batchq.op": "from batchq.hook import Hook\n\nclass Op:\n    def execute(self):\n        self.hook.send(None)\n",
    })
    assert set(package.operations(["batchq.op:Op.execute"])) == {"SendMessageBatch"}
