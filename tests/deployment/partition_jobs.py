"""Handlers for the partitions deployment test (a worker imports them with ``--handlers partition_jobs``;
tests/deployment is on the deployment's PYTHONPATH).

Customer ``BATCHQ_TEST_FAILING_CUSTOMER``'s payloads fail permanently (a failed result); customer
``BATCHQ_TEST_SLOW_CUSTOMER``'s take ``BATCHQ_TEST_SLOW_S`` seconds each, so the run's drain is still
going when the other customers are done.
"""

from __future__ import annotations

import os
import time

from batchq import job
from batchq.worker import PermanentError


def _run(payload, ctx):
    customer = payload.dims.get("customer")
    if customer == os.environ.get("BATCHQ_TEST_FAILING_CUSTOMER"):
        raise PermanentError(f"no data for {customer}")
    if customer == os.environ.get("BATCHQ_TEST_SLOW_CUSTOMER"):
        time.sleep(float(os.environ.get("BATCHQ_TEST_SLOW_S", "20")))
    return {"customer": customer, "period": payload.dims.get("period")}


for _job_type in ("classification", "segmentation"):
    job(_job_type)(_run)
