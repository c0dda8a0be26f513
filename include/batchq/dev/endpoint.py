"""The SQS endpoint of a local run (``batchq dev run``, ``make demo``): one already running, LocalStack,
or moto's server, started on a free loopback port and stopped afterwards.

LocalStack (fast, faithful) is used when this is a checkout with ``make localstack-install`` done: its
launcher, ``scripts/localstack.sh``, holds the settings it needs (shared/SQS-ENDPOINTS.md). Otherwise
moto's server (``pip install 'batchq[dev]'``), slower on deep queues but enough for a first batch.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from batchq.errors import BatchqError

log = logging.getLogger(__name__)

#: The checkout's root when batchq runs from ``include/`` (None for an installed package).
_CHECKOUT = Path(__file__).resolve().parents[3]
LOCALSTACK_SCRIPT = _CHECKOUT / "scripts" / "localstack.sh"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Endpoint:
    """A running SQS endpoint. :meth:`stop` ends what this process started (nothing for ``external``).

    :param url: the endpoint URL (``http://127.0.0.1:PORT``).
    :param kind: ``external``, ``localstack`` or ``moto``.
    """

    url: str
    kind: str
    _stop_argv: list[str] | None = None
    _env: dict[str, str] = field(default_factory=dict)
    _proc: subprocess.Popen | None = None

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if self._stop_argv:
            subprocess.run(self._stop_argv, env=self._env, capture_output=True, check=False)


def localstack_installed() -> bool:
    venv = Path(os.environ.get("LOCALSTACK_VENV", _CHECKOUT / ".venv-localstack"))
    return LOCALSTACK_SCRIPT.is_file() and (venv / ".batchq-installed").is_file()


def wait_for_sqs(url: str, timeout_s: float = 30.0) -> None:
    """Until the endpoint at ``url`` answers (raise :class:`BatchqError` after ``timeout_s``)."""
    from batchq.errors import QueueNotFound
    from batchq.sqs import get_queue_url
    from batchq.sqs.client import sqs_client

    client = sqs_client(endpoint_url=url)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            get_queue_url(client, "batchq-dev-probe")
            return
        except QueueNotFound:  # an answer: the endpoint is up
            return
        except Exception as exc:  # noqa: BLE001 - not up yet
            if time.monotonic() > deadline:
                raise BatchqError(f"SQS endpoint {url} did not come up in {timeout_s:.0f} s: {exc}") from None
            time.sleep(0.3)


def start_endpoint(choice: str, state_dir: Path) -> Endpoint:
    """An endpoint for ``choice``: a URL (used as is), ``localstack``, ``moto``, or ``auto`` (LocalStack
    when installed, else moto).

    :param state_dir: where logs and LocalStack's state go.
    """
    if choice.startswith(("http://", "https://")):
        wait_for_sqs(choice)
        return Endpoint(choice, "external")
    if choice == "auto":
        choice = "localstack" if localstack_installed() else "moto"
    state_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    if choice == "localstack":
        if not localstack_installed():
            raise BatchqError("LocalStack is not installed: run `make localstack-install` in the batchq checkout, "
                              "or use --endpoint moto")
        env = {**os.environ, "LOCALSTACK_PORT": str(port), "LOCALSTACK_STATE_DIR": str(state_dir / "localstack")}
        started = subprocess.run(["bash", str(LOCALSTACK_SCRIPT), "start"], env=env, capture_output=True, text=True, check=False)
        if started.returncode != 0:
            raise BatchqError(f"LocalStack did not start: {started.stderr.strip()[-2000:]}")
        url = f"http://127.0.0.1:{port}"
        return Endpoint(url, "localstack", _stop_argv=["bash", str(LOCALSTACK_SCRIPT), "stop"], _env=env)
    if choice != "moto":
        raise BatchqError(f"--endpoint {choice!r}: give auto, localstack, moto or an http(s):// URL")
    try:
        import moto.server  # noqa: F401 - only to say what to install
    except ImportError:
        raise BatchqError("no SQS endpoint: pip install 'batchq[dev]' (moto's server), run `make "
                          "localstack-install` in a checkout, or pass --endpoint URL") from None
    out = open(state_dir / "moto.log", "wb")  # noqa: SIM115 - the server writes to it for its lifetime
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    endpoint = Endpoint(f"http://127.0.0.1:{port}", "moto", _proc=proc)
    try:
        wait_for_sqs(endpoint.url)
    except BaseException:
        endpoint.stop()
        raise
    return endpoint
