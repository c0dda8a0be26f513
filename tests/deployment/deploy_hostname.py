"""``[core] hostname_callable`` for the deployment tests: the name a process reports as its host.

Two ``airflow celery worker`` processes on one machine share its FQDN, so the task instances they run
would not say which worker ran them. Each worker gets ``BATCHQ_DEPLOY_HOSTNAME`` (the same name as its
Celery ``-H``), and the task processes it forks report that name, as two machines would.
"""

from __future__ import annotations

import os
import socket


def from_env() -> str:
    return os.environ.get("BATCHQ_DEPLOY_HOSTNAME") or socket.getfqdn()
