"""Handlers for the repair end-to-end test (imported by a worker subprocess via --handlers).

The example's three job types. While the file named by ``BATCHQ_TEST_BROKEN_FLAG`` exists, payloads of
customer ``BATCHQ_TEST_BROKEN_CUSTOMER`` fail permanently (a failed result, the payload dead-lettered):
deleting the file is "fixing the handler". Every call appends its key to ``BATCHQ_TEST_TRACE``.
"""

from __future__ import annotations

import os

from batchq import job
from batchq.worker import PermanentError


def _run(payload, ctx):
    trace = os.environ.get("BATCHQ_TEST_TRACE")
    if trace:
        with open(trace, "a") as f:
            f.write(f"{payload.key}\n")
    flag = os.environ.get("BATCHQ_TEST_BROKEN_FLAG")
    if flag and os.path.exists(flag) and payload.dims.get("customer") == os.environ.get("BATCHQ_TEST_BROKEN_CUSTOMER"):
        raise PermanentError(f"handler bug for {payload.dims['customer']}")
    return {"customer": payload.dims.get("customer"), "period": payload.dims.get("period")}


for _job_type in ("classification", "segmentation", "use_case_analysis"):
    job(_job_type)(_run)
