"""Every Airflow configuration read batchq makes, in one place, each with a fallback.

Set them in ``airflow.cfg`` under ``[batchq]`` or as ``AIRFLOW__BATCHQ__<KEY>`` environment variables:

- ``default_aws_conn_id`` (``aws_default``): connection the hook uses unless an operator names another.
- ``api_aws_conn_id`` (``default_aws_conn_id``): the connection the API server's plugin (queue API, Batch
  views) reads queue depths with; a server-side choice, never a request parameter.
- ``fanout_max_in_flight`` (``8``): SendMessageBatch calls in flight per fan-out task.
- ``spec_dir`` (``<include>/specs``): where named specs (``customer_batch`` → ``customer_batch.yaml``) live.

Values are read when called, not at import, so tests and deployments can change them at any time.
"""

from __future__ import annotations

import os
from pathlib import Path

SECTION = "batchq"
DEFAULT_AWS_CONN_ID = "aws_default"
DEFAULT_FANOUT_MAX_IN_FLIGHT = 8
#: ``include/specs`` beside the package (the Astro project layout: include/batchq, include/specs).
DEFAULT_SPEC_DIR = Path(__file__).resolve().parents[2] / "specs"


def _conf():
    try:
        from airflow.sdk import conf
    except ImportError:  # pragma: no cover - Airflow < 3.1
        from airflow.configuration import conf
    return conf


def _get(key: str, fallback: str) -> str:
    return str(_conf().get(SECTION, key, fallback=fallback))


def default_aws_conn_id() -> str:
    return _get("default_aws_conn_id", DEFAULT_AWS_CONN_ID)


def api_aws_conn_id() -> str:
    return _get("api_aws_conn_id", default_aws_conn_id())


def fanout_max_in_flight() -> int:
    raw = _get("fanout_max_in_flight", str(DEFAULT_FANOUT_MAX_IN_FLIGHT))
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"[{SECTION}] fanout_max_in_flight must be an integer, got {raw!r}") from None
    if value < 1:
        raise ValueError(f"[{SECTION}] fanout_max_in_flight must be >= 1, got {value}")
    return value


def spec_dir() -> Path:
    return Path(_get("spec_dir", str(DEFAULT_SPEC_DIR)))


def spec_path(name_or_path: str | os.PathLike[str]) -> Path:
    """A spec file: an existing path as given, else ``<spec_dir>/<name>.yaml``."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.is_absolute() or path.exists():
        return path
    return spec_dir() / f"{path}.yaml"
