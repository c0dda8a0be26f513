"""The DAG tab reads only the XComs it draws: no task's ``return_value`` (a fan-out's shards return one
per map index, for each of the 25 runs listed), and the run page reads return values of unmapped tasks
only. Counted on the real metadata DB of the view home, through Airflow's own XCom model."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from tests.support.airflow_views import ALPHA

pytestmark = pytest.mark.ui

_COUNT = textwrap.dedent(
    """
    import json, sys
    from airflow.models.xcom import XComModel
    from batchq.airflow.views import data

    read = []
    original = XComModel.deserialize_value

    def counting(result):
        read.append(result.value if isinstance(result.value, str) else json.dumps(result.value))
        return original(result)

    XComModel.deserialize_value = staticmethod(counting)
    dag_id, run_id = sys.argv[1], sys.argv[2]
    out = {}
    read.clear(); dag = data.run_reports(dag_id); out["dag"] = {"values": list(read), "runs": len(dag)}
    read.clear(); run = data.run_reports(dag_id, run_id); out["run"] = {"values": list(read), "ledger": run[0].ledger.model_dump() if run and run[0].ledger else None}
    print("RESULT " + json.dumps(out))
    """
)


def test_the_dag_tab_reads_no_return_values_and_the_run_page_no_mapped_ones(view_home):
    dag, run_id = ALPHA["dag_id"], view_home.run_ids[ALPHA["dag_id"]]
    proc = subprocess.run([sys.executable, "-c", _COUNT, dag, run_id], env=view_home.env, capture_output=True, text=True, timeout=300, check=False)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = json.loads(lines[-1].removeprefix("RESULT "))
    # The demo's fan-out returns {"sent": ...} per map index, its planner a shard list, its wait a reason.
    for page in ("dag", "run"):
        values = " ".join(out[page]["values"])
        assert '"sent": 120' not in values and '"sent":120' not in values, (page, values[:500])
    dag_values = " ".join(out["dag"]["values"])
    assert '"waited_s"' not in dag_values and '"start"' not in dag_values  # no return_value at all
    assert out["dag"]["runs"] == 2  # the run and its repair run, both still drawn
    # The run page still finds the demo's ledger (a return_value of the unmapped drain task).
    assert out["run"]["ledger"]["expected"] == ALPHA["expected"]
