#!/usr/bin/env bash
# LocalStack (SQS only) in host mode: no Docker engine, no account, loopback only.
#
#   scripts/localstack.sh install   create .venv-localstack (Python 3.13) with localstack-core
#   scripts/localstack.sh start     start in the background, wait until SQS is up (pid + log in state dir)
#   scripts/localstack.sh stop      SIGTERM and wait
#   scripts/localstack.sh status    exit 0 and print health JSON if running and SQS is up
#   scripts/localstack.sh run       run in the foreground (Ctrl-C stops it)
#   scripts/localstack.sh logs      print the background log
#   scripts/localstack.sh check     exit 0 if the venv is installed and up to date (installs nothing)
#
# Environment:
#   LOCALSTACK_PORT        gateway port on 127.0.0.1 (default 4566)
#   LOCALSTACK_STATE_DIR   pid file, log and LOCALSTACK_VOLUME_DIR (default <repo>/.localstack)
#   LOCALSTACK_VENV        venv location (default <repo>/.venv-localstack)
#   LOCALSTACK_PYTHON      interpreter used to create the venv (default: pyenv 3.13, python3.13, ... 3.12)
#   LOCALSTACK_START_TIMEOUT  seconds to wait for SQS to come up (default 60)
#   LOCALSTACK_STOP_GRACE  seconds from SIGTERM to SIGKILL (default 8)
#
# Facts behind the settings are in shared/SQS-ENDPOINTS.md: localstack-core needs its own venv and the
# pins below (without them it fails at start with "No component plugins found"); GATEWAY_SERVER=hypercorn
# is the one that honours a loopback-only GATEWAY_LISTEN.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PORT="${LOCALSTACK_PORT:-4566}"
STATE_DIR="${LOCALSTACK_STATE_DIR:-$ROOT/.localstack}"
VENV="${LOCALSTACK_VENV:-$ROOT/.venv-localstack}"
TIMEOUT="${LOCALSTACK_START_TIMEOUT:-60}"
STOP_GRACE="${LOCALSTACK_STOP_GRACE:-8}"  # seconds between SIGTERM and SIGKILL (a clean exit takes ~2-3 s)
PIDFILE="$STATE_DIR/localstack.pid"
LOGFILE="$STATE_DIR/localstack.log"
LS_PY="$VENV/bin/python"

LOCALSTACK_PACKAGES=(
  "localstack-core[runtime]==2026.3.0"
  "cbor2<6"
  "pyopenssl<26"
  "cryptography<47"
  "service_identity"
)

log() { echo "localstack.sh: $*" >&2; }

# Interpreters to try, best first. localstack-core 2026.3.0 does `from warnings import deprecated`
# (Python 3.13+), so a 3.12 venv installs fine but fails at start with the misleading "No component
# plugins found"; 3.12 stays on the list, last, in case a future pin supports it again.
python_candidates() {
  [[ -n "${LOCALSTACK_PYTHON:-}" ]] && echo "$LOCALSTACK_PYTHON"
  local pyenv_root="${PYENV_ROOT:-$HOME/.pyenv}" v p
  for v in 3.13 3.14 3.12; do
    # pyenv installs first (a pyenv shim only runs when that version is selected), then PATH.
    for p in $(ls -d "$pyenv_root"/versions/"$v".*/bin/python"$v" 2>/dev/null | sort -rV); do
      echo "$p"
    done
    echo "python$v"
  done
  echo python3
}

usable_python() {
  "$1" -c 'import sys, venv, ensurepip; sys.exit(0 if sys.version_info >= (3, 12) else 1)' >/dev/null 2>&1
}

# The stamp lists the packages it was made with: a change of pins (or of this marker) reinstalls.
STAMP_MARKER="# batchq localstack venv v2 (import-checked)"
installed() {
  [[ -x "$LS_PY" ]] && [[ -f "$VENV/.batchq-installed" ]] &&
    [[ "$(cat "$VENV/.batchq-installed")" == "$(stamp_text)" ]]
}
stamp_text() {
  echo "$STAMP_MARKER"
  printf '%s\n' "${LOCALSTACK_PACKAGES[@]}"
}

# The check that matters: the runtime's component plugins import (plux hides import errors).
runtime_imports() {
  "$LS_PY" -c 'import localstack.runtime.main, localstack.aws.components' 2>&1
}

cmd_install() {
  if installed; then
    log "already installed in $VENV"
    return 0
  fi
  local t0 py tried=() seen=" " err
  t0=$(date +%s)
  while read -r py; do
    [[ "$seen" == *" $py "* ]] && continue
    seen+="$py "
    usable_python "$py" || continue
    py="$(command -v "$py" 2>/dev/null || echo "$py")"
    tried+=("$py")
    log "creating $VENV with $py ($("$py" -V 2>&1))"
    rm -rf "$VENV"
    "$py" -m venv "$VENV"
    # This machine's pip config names local index folders that may not exist: drop that noise only.
    "$LS_PY" -m pip install -q --upgrade pip 2>&1 | { grep -v '^WARNING: Location .* is ignored' || true; }
    "$LS_PY" -m pip install -q "${LOCALSTACK_PACKAGES[@]}" 2>&1 | { grep -v '^WARNING: Location .* is ignored' || true; }
    if err="$(runtime_imports)"; then
      stamp_text > "$VENV/.batchq-installed"
      log "installed with $("$LS_PY" -V 2>&1) in $(( $(date +%s) - t0 ))s"
      return 0
    fi
    log "LocalStack does not import on $("$LS_PY" -V 2>&1): ${err##*$'\n'}"
  done < <(python_candidates)
  rm -rf "$VENV"
  log "no usable Python for LocalStack (tried: ${tried[*]:-none}); set LOCALSTACK_PYTHON to a Python >= 3.13"
  return 1
}

ls_env() {
  # Exactly the settings from shared/SQS-ENDPOINTS.md.
  export SERVICES="${LOCALSTACK_SERVICES:-sqs,cloudwatch}"  # CloudWatch: the queue-age probe (ApproximateAgeOfOldestMessage)
  export EAGER_SERVICE_LOADING=1
  export GATEWAY_LISTEN="127.0.0.1:$PORT"
  export GATEWAY_SERVER=hypercorn
  export LOCALSTACK_HOST="127.0.0.1:$PORT"
  export SQS_ENDPOINT_STRATEGY=off
  export DNS_ADDRESS=0
  export DISABLE_EVENTS=1
  export SKIP_SSL_CERT_DOWNLOAD=1
  export LS_LOG="${LS_LOG:-warn}"
  export LOCALSTACK_VOLUME_DIR="$STATE_DIR/volume"
  mkdir -p "$LOCALSTACK_VOLUME_DIR"
}

# Prints the health JSON and returns 0 when SQS is running/available on PORT.
health() {
  local py="$LS_PY"
  [[ -x "$py" ]] || py=python3
  "$py" - "$PORT" <<'PY'
import json, sys, urllib.request
port = sys.argv[1]
try:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/_localstack/health", timeout=2) as r:
        body = r.read().decode()
except Exception as e:  # not up (yet)
    print(f"no answer: {e}", file=sys.stderr)
    sys.exit(1)
data = json.loads(body)
state = data.get("services", {}).get("sqs")
print(body)
sys.exit(0 if state in ("running", "available") else 1)
PY
}

pid_alive() {
  [[ -f "$PIDFILE" ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null
}

port_busy() {
  "${LS_PY:-python3}" - "$PORT" <<'PY' 2>/dev/null
import socket, sys
s = socket.socket()
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(0)
finally:
    s.close()
sys.exit(1)
PY
}

cmd_start() {
  installed || cmd_install
  mkdir -p "$STATE_DIR"
  if pid_alive; then
    if health >/dev/null 2>&1; then
      log "already running (pid $(cat "$PIDFILE")) on 127.0.0.1:$PORT"
      return 0
    fi
    log "stale process $(cat "$PIDFILE") is not healthy: stopping it first"
    cmd_stop
  fi
  if port_busy; then
    log "port 127.0.0.1:$PORT is already in use by another process; set LOCALSTACK_PORT"
    return 1
  fi
  ls_env
  local t0
  t0=$(date +%s)
  : > "$LOGFILE"
  # setsid: own session/process group, so a Ctrl-C in the calling terminal does not reach it and
  # stop can clean up any children it spawned.
  setsid "$LS_PY" -m localstack.runtime.main >>"$LOGFILE" 2>&1 < /dev/null &
  local pid=$!
  echo "$pid" > "$PIDFILE"
  while true; do
    if ! kill -0 "$pid" 2>/dev/null; then
      log "LocalStack (pid $pid) exited during start; log $LOGFILE:"
      cat "$LOGFILE" >&2
      rm -f "$PIDFILE"
      return 1
    fi
    if health >/dev/null 2>&1; then
      log "SQS up on http://127.0.0.1:$PORT (pid $pid, $(( $(date +%s) - t0 ))s, log $LOGFILE)"
      return 0
    fi
    if (( $(date +%s) - t0 >= TIMEOUT )); then
      log "SQS not up after ${TIMEOUT}s; log $LOGFILE:"
      cat "$LOGFILE" >&2
      cmd_stop || true
      return 1
    fi
    sleep 0.5
  done
}

cmd_stop() {
  if [[ ! -f "$PIDFILE" ]]; then
    log "not running (no $PIDFILE)"
    return 0
  fi
  local pid
  pid="$(cat "$PIDFILE")"
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    local i
    for i in $(seq 1 "$(( STOP_GRACE * 5 ))"); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.2
    done
    if kill -0 "$pid" 2>/dev/null; then
      # LocalStack 2026.3.0's hypercorn shutdown calls loop.stop() from another thread without waking
      # the event loop: once its sockets are closed nothing wakes select() again, and the process
      # sleeps forever (seen in ~1 stop in 8 on a loaded machine; faulthandler shows the main thread
      # in selectors.select under run_forever). State is in memory only, so SIGKILL loses nothing.
      log "pid $pid did not exit ${STOP_GRACE}s after SIGTERM (known LocalStack shutdown race): SIGKILL"
      kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
      for i in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    fi
    # Anything it left in its own process group (setsid made pid the group leader).
    kill -TERM -- "-$pid" 2>/dev/null || true
    log "stopped (pid $pid)"
  else
    log "pid $pid was not running"
  fi
  rm -f "$PIDFILE"
}

cmd_status() {
  if pid_alive && health; then
    log "running (pid $(cat "$PIDFILE")) on http://127.0.0.1:$PORT"
    return 0
  fi
  if pid_alive; then
    log "process $(cat "$PIDFILE") alive but SQS is not up on port $PORT"
  else
    log "not running"
  fi
  return 1
}

cmd_run() {
  installed || cmd_install
  if port_busy; then
    log "port 127.0.0.1:$PORT is already in use; set LOCALSTACK_PORT"
    return 1
  fi
  ls_env
  log "SQS will listen on http://127.0.0.1:$PORT (Ctrl-C stops)"
  exec "$LS_PY" -m localstack.runtime.main
}

case "${1:-}" in
  install) cmd_install ;;
  check)   installed ;;
  start)   cmd_start ;;
  stop)    cmd_stop ;;
  status)  cmd_status ;;
  run)     cmd_run ;;
  logs)    cat "$LOGFILE" ;;
  *) echo "usage: $0 install|start|stop|status|run|logs|check" >&2; exit 2 ;;
esac
