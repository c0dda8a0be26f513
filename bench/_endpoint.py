"""SQS endpoint for benchmark scripts.

Usage from a bench script::

    sys.path.insert(0, str(Path(__file__).parent))
    from _endpoint import sqs_endpoint, boto3_client

    with sqs_endpoint() as ep:          # ep.url, ep.kind ("env" | "localstack" | "moto")
        sqs = boto3_client(ep.url)
        ...

Choice of endpoint, in order:
  1. ``BATCHQ_BENCH_SQS_ENDPOINT`` if set (kind "env"; nothing is started or stopped).
  2. ``prefer="localstack"`` (the default): LocalStack in host mode from ``.venv-localstack``, installed
     on demand with ``scripts/localstack.sh install`` (a PyPI install, ~1 min the first time), started
     on a free loopback port with its own state dir and stopped at exit.
     ``BATCHQ_BENCH_NO_INSTALL=1`` skips the on-demand install (then moto is used if it is missing).
  3. moto's ``ThreadedMotoServer`` on a free port on 127.0.0.1 (kind "moto").

moto is O(queue depth) per call and ~20x slower than LocalStack (shared/SQS-ENDPOINTS.md): a number
measured on moto says little about the code under test, so reports should print ``ep.kind``.

``python bench/_endpoint.py [localstack|moto|both]`` is a smoke test: one queue, one message, each kind.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

REPO = Path(__file__).resolve().parent.parent
LOCALSTACK_SH = REPO / "scripts" / "localstack.sh"
LOCALSTACK_VENV = Path(os.environ.get("LOCALSTACK_VENV", REPO / ".venv-localstack"))

DUMMY_REGION = "us-east-1"
DUMMY_KEY = "testing"
DUMMY_SECRET = "testing"

#: kind of the endpoint most recently yielded by sqs_endpoint() (None outside one)
endpoint_kind: str | None = None


@dataclass(frozen=True)
class SqsEndpoint:
    url: str
    kind: str  # "env" | "localstack" | "moto"
    pid: int | None = None  # the emulator's process, when this helper started one out of process

    def __str__(self) -> str:
        return self.url


def _log(msg: str) -> None:
    print(f"[bench endpoint] {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _localstack_installed() -> bool:
    env = dict(os.environ, LOCALSTACK_VENV=str(LOCALSTACK_VENV))
    return subprocess.run(["bash", str(LOCALSTACK_SH), "check"], env=env).returncode == 0


def _ensure_localstack() -> bool:
    if _localstack_installed():
        return True
    if os.environ.get("BATCHQ_BENCH_NO_INSTALL"):
        return False
    _log(f"LocalStack venv missing: installing into {LOCALSTACK_VENV} (one-off, ~1 min)")
    env = dict(os.environ, LOCALSTACK_VENV=str(LOCALSTACK_VENV))
    r = subprocess.run(["bash", str(LOCALSTACK_SH), "install"], env=env)
    if r.returncode != 0:
        _log(f"LocalStack install failed (rc={r.returncode})")
        return False
    return _localstack_installed()


@contextlib.contextmanager
def _localstack() -> Iterator[SqsEndpoint]:
    port = free_port()
    state = tempfile.mkdtemp(prefix="batchq-bench-localstack-")
    env = dict(
        os.environ,
        LOCALSTACK_PORT=str(port),
        LOCALSTACK_STATE_DIR=state,
        LOCALSTACK_VENV=str(LOCALSTACK_VENV),
    )
    sh = ["bash", str(LOCALSTACK_SH)]
    # stdout of the script goes to stderr: a bench's stdout is its report.
    r = subprocess.run([*sh, "start"], env=env, stdout=sys.stderr)
    try:
        if r.returncode != 0:
            raise RuntimeError(f"LocalStack failed to start (rc={r.returncode})")
        pidfile = Path(state) / "localstack.pid"
        pid = int(pidfile.read_text().strip()) if pidfile.exists() else None
        yield SqsEndpoint(f"http://127.0.0.1:{port}", "localstack", pid)
    finally:
        subprocess.run([*sh, "stop"], env=env, stdout=sys.stderr)
        shutil.rmtree(state, ignore_errors=True)


@contextlib.contextmanager
def _moto() -> Iterator[SqsEndpoint]:
    import logging

    from moto.server import ThreadedMotoServer

    # werkzeug logs every request to stderr: noise, and a cost on the request path being measured.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield SqsEndpoint(f"http://{host}:{port}", "moto")
    finally:
        server.stop()


@contextlib.contextmanager
def sqs_endpoint(prefer: str = "localstack") -> Iterator[SqsEndpoint]:
    """Yield an :class:`SqsEndpoint` (``.url``, ``.kind``); stop whatever was started at exit."""
    global endpoint_kind
    if prefer not in ("localstack", "moto"):
        raise ValueError(f"prefer must be 'localstack' or 'moto', not {prefer!r}")

    env_url = os.environ.get("BATCHQ_BENCH_SQS_ENDPOINT")
    if env_url:
        cm: contextlib.AbstractContextManager[SqsEndpoint] = contextlib.nullcontext(
            SqsEndpoint(env_url, "env")
        )
    elif prefer == "localstack" and _ensure_localstack():
        cm = _localstack()
    else:
        if prefer == "localstack":
            _log("LocalStack unavailable: falling back to moto (slow, O(depth) per call)")
        cm = _moto()

    with cm as ep:
        endpoint_kind = ep.kind
        _log(f"using {ep.kind} SQS endpoint at {ep.url}")
        try:
            yield ep
        finally:
            endpoint_kind = None


def boto3_client(url: str | SqsEndpoint, service: str = "sqs", **config_kwargs):
    """A boto3 client for ``url`` with dummy credentials and batchq's own botocore policy
    (:func:`batchq.sqs.client.botocore_config`: what production runs with), ``config_kwargs`` overriding it."""
    import boto3
    from batchq.sqs.client import botocore_config

    cfg = botocore_config(**config_kwargs)
    return boto3.client(
        service,
        endpoint_url=str(url),
        region_name=DUMMY_REGION,
        aws_access_key_id=DUMMY_KEY,
        aws_secret_access_key=DUMMY_SECRET,
        config=cfg,
    )


def _smoke(prefer: str) -> str:
    import time
    import uuid

    with sqs_endpoint(prefer=prefer) as ep:
        assert endpoint_kind == ep.kind
        sqs = boto3_client(ep)
        name = f"bench-smoke-{uuid.uuid4().hex[:8]}"
        url = sqs.create_queue(QueueName=name)["QueueUrl"]
        body = f"hello from {ep.kind}"
        t0 = time.perf_counter()
        sqs.send_message(QueueUrl=url, MessageBody=body)
        msgs = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1, WaitTimeSeconds=5).get(
            "Messages", []
        )
        assert len(msgs) == 1 and msgs[0]["Body"] == body, msgs
        sqs.delete_message(QueueUrl=url, ReceiptHandle=msgs[0]["ReceiptHandle"])
        dt = (time.perf_counter() - t0) * 1000
        sqs.delete_queue(QueueUrl=url)
        print(f"{ep.kind}: {ep.url} send/receive/delete ok ({dt:.0f} ms) queue={url}")
        return ep.kind


if __name__ == "__main__":
    which = sys.argv[1] if len(sys.argv) > 1 else "both"
    kinds = ["localstack", "moto"] if which == "both" else [which]
    got = [_smoke(k) for k in kinds]
    if os.environ.get("BATCHQ_BENCH_SQS_ENDPOINT") is None and got != kinds:
        print(f"asked for {kinds}, got {got}", file=sys.stderr)
        sys.exit(1)
