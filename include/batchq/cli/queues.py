"""``batchq queues create|status --spec FILE``: provision a spec's queues, or show their depth.

Airflow-free (boto3 via :func:`batchq.sqs.client.sqs_client`): the endpoint comes from ``--endpoint-url``,
``BATCHQ_SQS_ENDPOINT`` or the standard AWS environment.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from batchq.cli.plan import spec_file
from batchq.spec import BatchSpec
from batchq.sqs import get_snapshot
from batchq.sqs.client import sqs_client
from batchq.sqs.queues import ensure_queues, resolve_queue_urls


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("queues", help="create a spec's queues, or show their depth")
    sub = parser.add_subparsers(dest="queues_command", required=True, metavar="ACTION")
    for name, func, help_text in (
        ("create", _create, "create or converge the input/results queues and their DLQs (idempotent); print URLs"),
        ("status", _status, "print a snapshot of each queue (visible, in flight, delayed, DLQ depth)"),
    ):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--spec", required=True, type=spec_file, help="BatchSpec YAML file")
        p.add_argument("--endpoint-url", default=None, help="SQS endpoint (default: BATCHQ_SQS_ENDPOINT or AWS)")
        p.add_argument("--region", default=None, help="AWS region (default: AWS_REGION / AWS_DEFAULT_REGION)")
        p.set_defaults(func=func)


def _client(args: argparse.Namespace) -> Any:
    return sqs_client(endpoint_url=args.endpoint_url, region_name=args.region)


def _create(args: argparse.Namespace) -> int:
    spec = BatchSpec.from_yaml(args.spec)
    urls = ensure_queues(_client(args), spec.queues)
    print(json.dumps(urls.to_dict(), indent=2))
    return 0


def _status(args: argparse.Namespace) -> int:
    spec = BatchSpec.from_yaml(args.spec)
    client = _client(args)
    urls = resolve_queue_urls(client, spec.queues)
    out = {}
    for role, url, dlq in (("input", urls.input, urls.input_dlq), ("results", urls.results, urls.results_dlq)):
        snap = get_snapshot(client, url, dlq)
        out[role] = {"url": url, **snap.to_dict(), "backlog": snap.backlog}
    print(json.dumps(out, indent=2))
    return 0
