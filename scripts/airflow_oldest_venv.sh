#!/usr/bin/env bash
# Build a venv with the OLDEST supported Airflow (pyproject: apache-airflow>=3.2,<4) for make test-airflow-oldest.
#
#   scripts/airflow_oldest_venv.sh VENV AIRFLOW_VERSION PROJECT_PYTHON BASE_PYTHON
#
# Airflow's own constraints files live on GitHub, which CI cannot reach (package registries only). An
# unconstrained install of an old Airflow picks up today's releases of its dependencies, and some of those
# break it (on 3.2.0: fastapi 0.163/cadwyn 9 make the execution API fail to build). So the project venv's
# resolved versions (the newest end, known good) are the constraints; any pin the old Airflow refuses is
# dropped (pip names it in its conflict report) and the install retried. batchq itself is not installed:
# the tests put include/ first on the path.
set -euo pipefail
VENV="$1" VERSION="$2" PROJECT_PY="$3" BASE_PY="$4"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

[[ -x "$VENV/bin/python" ]] || "$BASE_PY" -m venv "$VENV"
PY="$VENV/bin/python"
constraints="$VENV/constraints.txt"
"$PROJECT_PY" -m pip freeze 2>/dev/null | grep '==' | grep -viE '^(apache-airflow|batchq)([-=]|$)' > "$constraints"

# Every dependency batchq declares (core, airflow, drain, test extras), except Airflow itself.
mapfile -t deps < <("$PY" - "$ROOT/pyproject.toml" <<'PY'
import re, sys, tomllib
project = tomllib.load(open(sys.argv[1], "rb"))["project"]
extras = project["optional-dependencies"]
for dep in project["dependencies"] + extras["airflow"] + extras["drain"] + extras["test"]:
    if re.split(r"[\s<>=!~\[;]", dep, maxsplit=1)[0].lower() != "apache-airflow":
        print(dep)
PY
)

for attempt in $(seq 1 20); do
  if out="$("$PY" -m pip install --disable-pip-version-check "apache-airflow==$VERSION" "${deps[@]}" -c "$constraints" 2>&1)"; then
    "$PY" -c 'import importlib.metadata as m; print("oldest venv ok: apache-airflow", m.version("apache-airflow"))'
    exit 0
  fi
  refused="$(sed -n '/conflict is caused/,/To fix/p' <<<"$out" | grep -oE 'constraint\) [A-Za-z0-9_.-]+' | awk '{print $2}' | sort -u)"
  if [[ -z "$refused" ]]; then
    grep -v '^WARNING: Location' <<<"$out" | tail -30 >&2
    exit 1
  fi
  echo "apache-airflow==$VERSION refuses the project venv's pin of: $(echo $refused) (attempt $attempt; dropped)"
  for name in $refused; do
    grep -viE "^${name}==" "$constraints" > "$constraints.tmp" || true
    mv "$constraints.tmp" "$constraints"
  done
done
echo "gave up after 20 attempts" >&2
exit 1
