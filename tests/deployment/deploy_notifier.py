"""A backlog-alert notifier for the live deployment (``BATCHQ_CUSTOMER_BATCH_NOTIFIERS=deploy_notifier:record``):
appends one JSON line per call to ``$BATCHQ_DEPLOY_NOTIFY_FILE`` (run id, kind, state), so the test reads
what the task delivered."""

from __future__ import annotations

import json
import os


def record(context) -> None:
    alert = context["batchq_alert"]
    line = {"run_id": context["run_id"], "kind": alert["kind"], "state": alert["state"], "queue": context.get("batchq_queue")}
    with open(os.environ["BATCHQ_DEPLOY_NOTIFY_FILE"], "a") as out:
        out.write(json.dumps(line) + "\n")
