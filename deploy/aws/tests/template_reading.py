"""Reading a synthesised template: resources by type, a role's SQS grants per queue role."""

from __future__ import annotations

from typing import Any

from batchq.spec import QueueSpec

QUEUE_ROLES = ("input", "input_dlq", "results", "results_dlq")


def resources(template: dict, type_: str) -> dict[str, dict]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == type_}


def queue_roles(template: dict, queues: QueueSpec) -> dict[str, str]:
    """Logical id of each queue → its role (by the QueueName the spec gives it)."""
    by_name = {getattr(queues, role): role for role in QUEUE_ROLES}
    return {lid: by_name[q["Properties"]["QueueName"]] for lid, q in resources(template, "AWS::SQS::Queue").items()}


def component_roles(template: dict) -> dict[str, str]:
    """batchq component → logical id of its IAM role (the ``batchq:component`` metadata)."""
    return {r["Metadata"]["batchq:component"]: lid for lid, r in resources(template, "AWS::IAM::Role").items()
            if "batchq:component" in r.get("Metadata", {})}


def allow_statements(role: dict) -> list[dict]:
    return [s for p in role["Properties"].get("Policies", []) for s in p["PolicyDocument"]["Statement"] if s["Effect"] == "Allow"]


def _as_list(value: Any) -> list:
    return value if isinstance(value, list) else [value]


def sqs_grants(template: dict, component: str, queues: QueueSpec) -> dict[str, set[str]]:
    """Queue role → SQS actions the component's role allows on it. A statement on anything but one of the
    stack's queues raises (it would be a grant this reading cannot place)."""
    roles = queue_roles(template, queues)
    role = template["Resources"][component_roles(template)[component]]
    grants: dict[str, set[str]] = {}
    for statement in allow_statements(role):
        actions = {a for a in _as_list(statement["Action"]) if a.startswith("sqs:")}
        if not actions:
            continue
        for resource in _as_list(statement["Resource"]):
            target = resource.get("Fn::GetAtt", [None])[0] if isinstance(resource, dict) else None
            if target not in roles:
                raise AssertionError(f"{component}: {sorted(actions)} granted on {resource!r}, not one of the stack's queues")
            grants.setdefault(roles[target], set()).update(actions)
    return grants
