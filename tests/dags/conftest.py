"""`astro dev pytest tests/dags` runs bare `pytest` in /usr/local/airflow, where (unlike `python -m pytest`
from the repo root) the project root is not on sys.path: put it there so `tests.support` imports."""

import sys
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[2])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

# The deployable image carries no test tools (the Dockerfile installs none): inside it, install them first,
#   astro dev bash -> pip install -r requirements-dev.txt && pytest tests/dags
import pytest

pytest.importorskip("moto", reason="the DAG tests need requirements-dev.txt (moto), which the deployable image does not install")
