"""DAG integrity test for the Astro project: `astro dev parse` and `astro dev pytest` run this file.

Every DAG file must import without errors, except the files listed (one path per line, relative to
AIRFLOW_HOME, `#` starts a comment) in .astro/dag_integrity_exceptions.txt. batchq's DAGs need nothing at
parse time (no connection, no Variable, no network: tests/unit/airflow/test_dag_integrity.py holds them to
it), so nothing is patched here: an import that reaches for one fails, as it would in the dag-processor.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from airflow.models import DagBag

EXCEPTIONS_FILE = Path(__file__).with_name("dag_integrity_exceptions.txt")


def _exceptions() -> set[str]:
    if not EXCEPTIONS_FILE.exists():
        return set()
    lines = (line.split("#", 1)[0].strip() for line in EXCEPTIONS_FILE.read_text(encoding="utf-8").splitlines())
    return {line for line in lines if line}


def _relative(path: str) -> str:
    home = os.environ.get("AIRFLOW_HOME")
    return os.path.relpath(path, home) if home else path


def _import_results() -> list[tuple[str, str]]:
    bag = DagBag()  # the DAGs folder; examples follow [core] load_examples (off in this project)
    results = [(_relative(path), error.strip()) for path, error in bag.import_errors.items()]
    seen = {path for path, _ in results}
    for dag in bag.dags.values():
        rel = _relative(dag.fileloc)
        if rel not in seen:
            seen.add(rel)
            results.append((rel, ""))
    return sorted(results)


RESULTS = _import_results()


@pytest.mark.parametrize(("rel_path", "error"), RESULTS, ids=[path for path, _ in RESULTS])
def test_file_imports(rel_path: str, error: str) -> None:
    if error and rel_path not in _exceptions():
        raise AssertionError(f"{rel_path} failed to import:\n{error}")
