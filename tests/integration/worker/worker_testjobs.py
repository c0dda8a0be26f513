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


@job("t-raise")
def raise_base_exception(payload, ctx):
    """Raises a ``BaseException`` that is not an ``Exception``, as a misbehaving library might."""
    import asyncio
    import sys

    kind = payload.params.get("raise")
    if kind == "exit":
        sys.exit(3)
    if kind == "interrupt":
        raise KeyboardInterrupt("handler interrupted")
    if kind == "cancel":
        raise asyncio.CancelledError("handler cancelled")
    return {"customer": payload.dims.get("customer")}


@job("t-hang")
def hang(payload, ctx):
    """Blocks for ``params.sleep_s`` (a handler stuck on a dead backend); traces start and end lines."""
    path = payload.params.get("trace_file")

    def trace(what: str) -> None:
        if path:
            with open(path, "a") as f:
                f.write(f"{what} {payload.key} {ctx.attempt}\n")

    trace("start")
    time.sleep(float(payload.params.get("sleep_s", 3600)))
    trace("end")
    return {"customer": payload.dims.get("customer")}


@job("t-sized")
def sized(payload, ctx):
    """Returns an output of about ``params.out_bytes`` bytes."""
    return {"blob": "x" * int(payload.params.get("out_bytes", 10))}
