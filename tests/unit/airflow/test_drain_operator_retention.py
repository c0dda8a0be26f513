"""``ResultsDrainOperator(prune_older_than=...)``: a bad age fails when the DAG is parsed, not after a drain."""

from __future__ import annotations

from pathlib import Path

import pytest

SPEC_YAML = Path(__file__).resolve().parents[3] / "include" / "specs" / "customer_batch.yaml"


def test_prune_older_than_is_checked_at_parse_time():
    from batchq.airflow.operators.drain import ResultsDrainOperator

    op = ResultsDrainOperator(task_id="drain", spec=str(SPEC_YAML), sink="sqlite://", prune_older_than="30d")
    assert op.prune_older_than == "30d" and op.spec_ref == str(SPEC_YAML)
    with pytest.raises(ValueError, match="30d"):
        ResultsDrainOperator(task_id="drain2", spec=str(SPEC_YAML), sink="sqlite://", prune_older_than="3 years")
