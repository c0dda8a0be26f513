"""Handlers for bench/workers.py (imported by worker processes with --handlers _bench_handlers)."""

from __future__ import annotations

import os
import time

from batchq import job

#: the I/O wait of the "io" handler, in seconds (bench/workers.py --handler-ms)
IO_WAIT_S = float(os.environ.get("BATCHQ_BENCH_HANDLER_MS", "20")) / 1000.0


@job("bench-io")
def io_bound(payload, ctx):
    # Stands in for an I/O-bound handler (a call to a model server or a database): the thread waits.
    time.sleep(IO_WAIT_S)
    return {"customer": payload.dims.get("customer")}


@job("bench-noop")
def noop(payload, ctx):
    return {}
