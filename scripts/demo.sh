#!/usr/bin/env bash
# make demo: the example DAG end to end on this machine, with nothing but the project venv.
#
#   1. SQS endpoint   BATCHQ_SQS_ENDPOINT if set; else LocalStack (if .venv-localstack is installed) or
#                     moto's server, started on a free loopback port and stopped on exit
#   2. Airflow home   .airflow-demo (SQLite), this repo's dags/ and plugins/, aws_default → the endpoint
#   3. queues         batchq queues create (input/results + DLQs, idempotent)
#   4. workers        batchq workers (autoscaling supervisor, example handlers) in the background,
#                     reporting StatsD to the progress view on a loopback port
#   5. the DAG        airflow dags test customer_batch (BatchTaskGroup: ensure_queues → plan_shards →
#                     mapped fan_out → wait_input_drained (deferred) → drain_results (paced, into SQLite)),
#                     with a live view (scripts/demo_progress.py): input depth, in flight, workers, drained
#   6. summary        payloads, results, duplicates absorbed, failures, peak depth, time to drain, lag p95,
#                     the drain curve as a PNG; the run's ledger and queue depths
#
#   BIG=1             a burst of 8,000 payloads (1,000 customers) and up to 4 workers: watch them scale
#   DEMO_PNG=path     where the drain curve goes (default .airflow-demo/drain-curve.png)
#
# Every background process started here is registered with `track_pid` and ended by the EXIT trap.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="${VENV:-$ROOT/.venv}"
PY="$VENV/bin/python"
AIRFLOW="$VENV/bin/airflow"
BATCHQ="$VENV/bin/batchq"
SPEC="${BATCHQ_DEMO_SPEC:-$ROOT/include/specs/customer_batch.yaml}"
DEMO_HOME="$ROOT/.airflow-demo"
BIG="${BIG:-}"
DEMO_PNG="${DEMO_PNG:-$DEMO_HOME/drain-curve.png}"
export PYTHONPATH="$ROOT/include${PYTHONPATH:+:$PYTHONPATH}"
LOGICAL_DATE="${BATCHQ_DEMO_DATE:-$(date -u +%Y-%m-%d)}"

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

# ---------------------------------------------------------------------------------------------- cleanup
PIDS=()
STOP_LOCALSTACK=""
track_pid() { PIDS+=("$1"); }
cleanup() {
  local rc=$? pid
  for pid in "${PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  if [[ -n "$STOP_LOCALSTACK" ]]; then
    LOCALSTACK_PORT="$LS_PORT" LOCALSTACK_STATE_DIR="$LS_STATE" bash scripts/localstack.sh stop >/dev/null 2>&1 || true
  fi
  exit "$rc"
}
trap cleanup EXIT INT TERM

free_port() { "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

wait_for_sqs() {  # wait_for_sqs URL: until ListQueues answers
  local i
  for i in $(seq 1 60); do
    if "$PY" - "$1" <<'PY' >/dev/null 2>&1
import sys, boto3
boto3.client("sqs", endpoint_url=sys.argv[1], region_name="us-east-1",
             aws_access_key_id="testing", aws_secret_access_key="testing").list_queues()
PY
    then return 0; fi
    sleep 0.5
  done
  echo "SQS endpoint $1 did not come up" >&2
  return 1
}

# ---------------------------------------------------------------------------------------------- 1. SQS
say "1. SQS endpoint"
export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-testing}"
export AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-testing}"
export AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-us-east-1}"
export AWS_EC2_METADATA_DISABLED=true
if [[ -n "${BATCHQ_SQS_ENDPOINT:-}" ]]; then
  echo "using the configured endpoint $BATCHQ_SQS_ENDPOINT"
elif [[ -f "${LOCALSTACK_VENV:-$ROOT/.venv-localstack}/.batchq-installed" ]]; then
  LS_PORT="$(free_port)"
  LS_STATE="$DEMO_HOME/localstack"
  rm -rf "$LS_STATE"
  STOP_LOCALSTACK=1
  LOCALSTACK_PORT="$LS_PORT" LOCALSTACK_STATE_DIR="$LS_STATE" bash scripts/localstack.sh start
  export BATCHQ_SQS_ENDPOINT="http://127.0.0.1:$LS_PORT"
  echo "LocalStack (SQS) on $BATCHQ_SQS_ENDPOINT"
else
  MOTO_PORT="$(free_port)"
  mkdir -p "$DEMO_HOME"
  "$VENV/bin/moto_server" -H 127.0.0.1 -p "$MOTO_PORT" >"$DEMO_HOME/moto.log" 2>&1 &
  track_pid $!
  export BATCHQ_SQS_ENDPOINT="http://127.0.0.1:$MOTO_PORT"
  wait_for_sqs "$BATCHQ_SQS_ENDPOINT"
  echo "moto server on $BATCHQ_SQS_ENDPOINT (slow for deep queues; 'make localstack-install' for a faster one)"
fi

# ---------------------------------------------------------------------------------------------- 2. Airflow
say "2. Airflow home ($DEMO_HOME)"
mkdir -p "$DEMO_HOME"
export AIRFLOW_HOME="$DEMO_HOME"
export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN="sqlite:///$DEMO_HOME/airflow.db"
export AIRFLOW__CORE__DAGS_FOLDER="$ROOT/dags"
export AIRFLOW__CORE__PLUGINS_FOLDER="$ROOT/plugins"
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export BATCHQ_CUSTOMER_BATCH_SPEC="$SPEC"
AIRFLOW_CONN_AWS_DEFAULT="$("$PY" - <<'PY'
import json, os
print(json.dumps({"conn_type": "aws", "login": os.environ["AWS_ACCESS_KEY_ID"],
                  "password": os.environ["AWS_SECRET_ACCESS_KEY"],
                  "extra": {"endpoint_url": os.environ["BATCHQ_SQS_ENDPOINT"],
                            "region_name": os.environ["AWS_DEFAULT_REGION"]}}))
PY
)"
export AIRFLOW_CONN_AWS_DEFAULT
"$AIRFLOW" db migrate >"$DEMO_HOME/db-migrate.log" 2>&1 || { tail -30 "$DEMO_HOME/db-migrate.log"; exit 1; }
echo "metadata DB ready; aws_default → $BATCHQ_SQS_ENDPOINT"

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
  export BATCHQ_CUSTOMER_BATCH_SPEC="$SPEC"
  WORKERS_MAX=4; BACKLOG_PER_WORKER=500
else
  WORKERS_MAX=2; BACKLOG_PER_WORKER=200
fi

# ---------------------------------------------------------------------------------------------- 3. queues
say "3. queues (batchq queues create)"
"$BATCHQ" --log-level WARNING queues create --spec "$SPEC"
PLAN_JSON="$("$BATCHQ" --log-level WARNING plan --spec "$SPEC" --run-id preview)"
"$PY" -c 'import json, sys; print("plan: {product:,} combinations, {excluded:,} excluded, {expected:,} payloads in {shards} shards".format(**json.loads(sys.argv[1])))' "$PLAN_JSON"
EXPECTED="$("$PY" -c 'import json, sys; print(json.loads(sys.argv[1])["expected"])' "$PLAN_JSON")"

# ---------------------------------------------------------------------------------------------- 4. workers
say "4. workers (batchq workers, in the background)"
# Workers and their supervisor report StatsD to the progress view (step 5) on this loopback port.
STATSD_PORT="$(free_port)"
BATCHQ_STATSD_HOST=127.0.0.1 BATCHQ_STATSD_PORT="$STATSD_PORT" \
"$BATCHQ" --log-level WARNING workers --spec "$SPEC" --handlers batchq.examples --min 1 --max "$WORKERS_MAX" \
  --backlog-per-worker "$BACKLOG_PER_WORKER" --poll-interval 2 --cooldown 10 --wait-seconds 2 >"$DEMO_HOME/workers.log" 2>&1 &
track_pid $!
echo "supervisor pid $! scales 1..$WORKERS_MAX workers, one per $BACKLOG_PER_WORKER queued (log: $DEMO_HOME/workers.log)"
# The drain step's sink: SQLite here (PostgreSQL or the real-time system's HTTP endpoint in production).
RESULTS_DB="$DEMO_HOME/results.db"
rm -f "$RESULTS_DB"
export AIRFLOW_CONN_BATCHQ_SINK="sqlite:///$RESULTS_DB"
# Emulator counters are exact: a short stability window keeps the demo quick (AWS: keep 60 s).
export AIRFLOW__BATCHQ__WAIT_STABLE_FOR_S="${BATCHQ_DEMO_STABLE_FOR_S:-5}"
export AIRFLOW__BATCHQ__WAIT_POLL_INTERVAL_S=1

# ---------------------------------------------------------------------------------------------- 5. the DAG
say "5. airflow dags test customer_batch $LOGICAL_DATE (live view; full log: $DEMO_HOME/dags-test.log)"
started=$(date +%s)
"$AIRFLOW" dags test customer_batch "$LOGICAL_DATE" >"$DEMO_HOME/dags-test.log" 2>&1 &
DAG_PID=$!
track_pid "$DAG_PID"
"$PY" scripts/demo_progress.py watch --spec "$SPEC" --sink-db "$RESULTS_DB" --statsd-port "$STATSD_PORT" \
  --pid "$DAG_PID" --log "$DEMO_HOME/dags-test.log" --series "$DEMO_HOME/series.json" --expected "$EXPECTED" \
  || echo "(the progress view stopped; the DAG goes on)" >&2
dag_rc=0
wait "$DAG_PID" || dag_rc=$?
if (( dag_rc != 0 )); then
  tail -40 "$DEMO_HOME/dags-test.log"
  echo "dags test failed (full log: $DEMO_HOME/dags-test.log)" >&2
  exit 1
fi
grep -Eo 'shard [0-9]+: \[[0-9,]+, [0-9,]+\): sent [0-9]+/[0-9]+ in [0-9.]+s \([0-9]+ msg/s' "$DEMO_HOME/dags-test.log" | sort -V | sed 's/^/  /; s/$/)/' || true
grep -Eo '(.* drained after [0-9.]+s|drained [0-9]+ result\(s\) at [0-9.]+/s)' "$DEMO_HOME/dags-test.log" \
  | sed -E 's/^[0-9T:.-]+Z \[[a-z ]+\] +//; s/^/  /' || true
echo "DAG run finished in $(( $(date +%s) - started ))s"

# ---------------------------------------------------------------------------------------------- 6. summary
say "6. summary"
RUN_ID="$("$PY" -c 'import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute("select run_id from dag_run where dag_id = ? order by id desc limit 1", ("customer_batch",)).fetchone()[0])' "$DEMO_HOME/airflow.db")"
"$PY" scripts/demo_progress.py summary --spec "$SPEC" --sink-db "$RESULTS_DB" --series "$DEMO_HOME/series.json" \
  --run-id "$RUN_ID" --png "$DEMO_PNG" | tee "$DEMO_HOME/summary.txt"
echo "queue depths now (batchq queues status):"
"$BATCHQ" --log-level WARNING queues status --spec "$SPEC" | "$PY" -c '
import json, sys
for role, s in json.load(sys.stdin).items():
    print("  {role:8} visible={visible:>7,}  in_flight={in_flight:>5,}  delayed={delayed:>3}  dlq={dlq_visible}  {url}".format(role=role, **s))'
