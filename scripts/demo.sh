#!/usr/bin/env bash
# make demo: the example DAG end to end on this machine, with nothing but the project venv.
#
# A thin caller of `batchq dev run` (include/batchq/dev/run.py, docs/first-batch.md), which does it all:
#   1. SQS endpoint   BATCHQ_SQS_ENDPOINT if set; else LocalStack (if .venv-localstack is installed) or
#                     moto's server, started on a free loopback port and stopped on exit
#   2. queues + workers   the spec's queues; `batchq workers` (autoscaling supervisor, example handlers) in
#                     the background, reporting StatsD to the live view on a loopback port
#   3. Airflow home   .airflow-demo (SQLite), this repo's dags/ and plugins/, aws_default → the endpoint,
#                     batchq_sink → SQLite, a 5 s stability window (emulator counters are exact)
#   4. the DAG        airflow dags test customer_batch with the live view: input depth, in flight, workers, drained
#   5. summary        payloads, results, duplicates absorbed, failures, peak depth, time to drain, lag p95,
#                     the drain curve as a PNG
#
#   BIG=1             a burst of 8,000 payloads (1,000 customers) and up to 4 workers: watch them scale
#   DEMO_PNG=path     where the drain curve goes (default .airflow-demo/drain-curve.png)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="${VENV:-$ROOT/.venv}"
PY="$VENV/bin/python"
BATCHQ="$VENV/bin/batchq"
SPEC="${BATCHQ_DEMO_SPEC:-$ROOT/include/specs/customer_batch.yaml}"
DEMO_HOME="$ROOT/.airflow-demo"
BIG="${BIG:-}"
DEMO_PNG="${DEMO_PNG:-$DEMO_HOME/drain-curve.png}"
export PYTHONPATH="$ROOT/include${PYTHONPATH:+:$PYTHONPATH}"
LOGICAL_DATE="${BATCHQ_DEMO_DATE:-}"

mkdir -p "$DEMO_HOME"
if [[ -n "$BIG" ]]; then
  # The same batch with 1,000 customers: 8,000 payloads, enough backlog for the supervisor to scale up.
  BIG_SPEC="$DEMO_HOME/customer_batch_big.yaml"
  "$PY" - "$SPEC" "$BIG_SPEC" <<'PY'
import sys, yaml
spec = yaml.safe_load(open(sys.argv[1]))
spec["dimensions"]["customer"] = [f"cust-{i:04d}" for i in range(1, 1001)]
spec["target_payloads_per_shard"] = 1000
yaml.safe_dump(spec, open(sys.argv[2], "w"), sort_keys=False)
PY
  SPEC="$BIG_SPEC"
  WORKERS_MAX=4; BACKLOG_PER_WORKER=500
else
  WORKERS_MAX=2; BACKLOG_PER_WORKER=200
fi
export BATCHQ_CUSTOMER_BATCH_SPEC="$SPEC"  # dags/customer_batch.py reads its spec from here

exec "$BATCHQ" --log-level WARNING dev run --dag customer_batch --handlers batchq.examples --spec "$SPEC" \
  --project "$ROOT" --dags-folder "$ROOT/dags" --plugins-folder "$ROOT/plugins" --home "$DEMO_HOME" \
  --endpoint "${BATCHQ_SQS_ENDPOINT:-auto}" --max-workers "$WORKERS_MAX" --backlog-per-worker "$BACKLOG_PER_WORKER" \
  --stable-for "${BATCHQ_DEMO_STABLE_FOR_S:-5}" --png "$DEMO_PNG" ${LOGICAL_DATE:+--logical-date "$LOGICAL_DATE"}
