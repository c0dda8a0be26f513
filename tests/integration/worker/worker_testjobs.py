"""Handlers used by the worker integration tests (imported by worker subprocesses via --handlers).

Their behaviour is steered by the payload's params, so one module serves every test:
``sleep_s`` blocks that long (a long-running job), ``fail`` raises a transient error, ``permanent``
raises PermanentError. Each call appends a line to ``params.trace_file`` when given, so tests can count
how many times a key really ran.
"""

from __future__ import annotations

import os
import time

from batchq import job
from batchq.worker import PermanentError


def _trace(payload, ctx) -> None:
    path = payload.params.get("trace_file")
    if path:
        with open(path, "a") as f:
            f.write(f"{payload.key} {ctx.attempt} {os.getpid()}\n")


@job("t-echo")
def echo(payload, ctx):
    _trace(payload, ctx)
    if payload.params.get("sleep_s"):
        time.sleep(float(payload.params["sleep_s"]))  # the job under test is a long-running one
    if payload.params.get("fail"):
        raise RuntimeError(f"transient failure of {payload.key}")
    if payload.params.get("permanent"):
        raise PermanentError(f"bad customer {payload.dims.get('customer')}")
    return {"customer": payload.dims.get("customer"), "attempt": ctx.attempt}
