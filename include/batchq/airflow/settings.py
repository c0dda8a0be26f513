"""Every Airflow configuration read batchq makes, in one place, each with a fallback.

Set them in ``airflow.cfg`` under ``[batchq]`` or as ``AIRFLOW__BATCHQ__<KEY>`` environment variables:

- ``default_aws_conn_id`` (``aws_default``): connection the hook uses unless an operator names another.
- ``api_aws_conn_id`` (``default_aws_conn_id``): the connection the API server's plugin (queue API, Batch
  views) reads queue depths with; a server-side choice, never a request parameter.
- ``fanout_max_in_flight`` (``8``): SendMessageBatch calls in flight per fan-out task.
- ``spec_dir``: where named specs (``customer_batch`` → ``customer_batch.yaml``) live. Default: the
  ``include/specs`` beside the package in the ``include/`` layout (Astro, this repository); for an
  installed package (``pip install .[airflow]``), ``include/specs`` beside the DAGs folder.
- ``wait_stable_for_s`` (``60``): seconds the input queue must read empty before the wait for it ends.
- ``wait_poll_interval_s`` (``10``): seconds between polls while waiting for the input queue.
- ``api_queue_deadline_s`` (``3``): the most a Batches page or ``/queues`` request waits for SQS in
  total; queues that have not answered by then show as unavailable.
- ``api_queue_cache_s`` (``10``): how long one probe of a spec's queues (answer or failure) serves every
  request of the API server process.
- ``trigger_min_event_age_s`` (``30``): a wait's trigger holds any event until it has run this long
  after its deferral (Airflow 3.3's scheduler can take the deferring process's late "success" for a
  state mismatch and fail a task whose trigger fired seconds after it deferred).
- ``view_ledger_conn_id`` (unset): the connection of the ledger store (the drain's SQL sink) the Batch
  view reads a run's current ledger and repairs from — how a run repaired by ``batchq rerun`` shows it.
  Unset, the view reads Airflow alone (XComs, Asset events) and needs no sink credentials.

And one of Airflow's own: ``[operators] default_deferrable`` (``False``) is the default of every batchq
``deferrable=`` (the sensor, the drain operator, :class:`~batchq.airflow.task_group.BatchTaskGroup`).

Renamed keys are still read, with a :class:`DeprecationWarning`: ``drain_stable_for_s`` →
``wait_stable_for_s``, ``drain_poll_interval_s`` → ``wait_poll_interval_s`` ("drain" now names only the
results drainer). Values are read when called, not at import, so tests and deployments can change them
at any time.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from batchq.monitor.waits import DEFAULT_STABLE_FOR_S

SECTION = "batchq"
DEFAULT_AWS_CONN_ID = "aws_default"
DEFAULT_FANOUT_MAX_IN_FLIGHT = 8
DEFAULT_WAIT_POLL_INTERVAL_S = 10.0
DEFAULT_API_QUEUE_DEADLINE_S = 3.0
DEFAULT_API_QUEUE_CACHE_S = 10.0
#: current key → the retired key it replaces (still read, with a DeprecationWarning)
RENAMED_KEYS = {"wait_stable_for_s": "drain_stable_for_s", "wait_poll_interval_s": "drain_poll_interval_s"}
#: The package's directory (``include/batchq`` in the Astro layout, ``site-packages/batchq`` installed).
PACKAGE_DIR = Path(__file__).resolve().parents[1]


def _conf():
    try:
        from airflow.sdk import conf
    except ImportError:  # pragma: no cover - Airflow < 3.1
        from airflow.configuration import conf
    return conf


def _get(key: str, fallback: str) -> str:
    conf = _conf()
    old = RENAMED_KEYS.get(key)
    if old and not conf.has_option(SECTION, key) and conf.has_option(SECTION, old):
        warnings.warn(f"[{SECTION}] {old} is deprecated: rename it to {key}", DeprecationWarning, stacklevel=3)
        key = old
    return str(conf.get(SECTION, key, fallback=fallback))


def _seconds(key: str, fallback: float, *, allow_zero: bool) -> float:
    raw = _get(key, str(fallback))
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"[{SECTION}] {key} must be a number of seconds, got {raw!r}") from None
    if value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"[{SECTION}] {key} must be {'>= 0' if allow_zero else '> 0'}, got {value}")
    return value


DEFAULT_TRIGGER_MIN_EVENT_AGE_S = 30.0


def trigger_min_event_age_s() -> float:
    return _seconds("trigger_min_event_age_s", DEFAULT_TRIGGER_MIN_EVENT_AGE_S, allow_zero=True)


def view_ledger_conn_id() -> str | None:
    return _get("view_ledger_conn_id", "").strip() or None


def default_deferrable() -> bool:
    """``[operators] default_deferrable`` (Airflow's own key, default False): whether batchq's sensor and
    drain operator defer when a DAG does not say, like every provider's deferrable operators."""
    return _conf().getboolean("operators", "default_deferrable", fallback=False)


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


def wait_stable_for_s() -> float:
    """Seconds the input queue must read empty before its wait ends (0: the first empty poll)."""
    return _seconds("wait_stable_for_s", DEFAULT_STABLE_FOR_S, allow_zero=True)


def wait_poll_interval_s() -> float:
    """Seconds between polls while waiting for the input queue."""
    return _seconds("wait_poll_interval_s", DEFAULT_WAIT_POLL_INTERVAL_S, allow_zero=False)


def api_queue_deadline_s() -> float:
    """Seconds a plugin request waits for SQS in total (the Batches page, ``/queues``)."""
    return _seconds("api_queue_deadline_s", DEFAULT_API_QUEUE_DEADLINE_S, allow_zero=False)


def api_queue_cache_s() -> float:
    """Seconds one probe of a spec's queues serves every request (0: no cache, single flight only)."""
    return _seconds("api_queue_cache_s", DEFAULT_API_QUEUE_CACHE_S, allow_zero=True)


def default_spec_dir(package_dir: Path = PACKAGE_DIR, dags_folder: str | None = None) -> Path:
    """``include/specs`` beside the package when it runs from an ``include/`` folder (the Astro layout:
    include/batchq, include/specs); for an installed package, never a folder inside site-packages, but
    ``include/specs`` beside the DAGs folder (``[core] dags_folder``)."""
    if package_dir.parent.name not in ("site-packages", "dist-packages"):
        return package_dir.parent / "specs"
    if dags_folder is None:
        dags_folder = str(_conf().get("core", "dags_folder", fallback="dags"))
    return Path(dags_folder).expanduser().resolve().parent / "include" / "specs"


def spec_dir() -> Path:
    configured = _get("spec_dir", "")
    return Path(configured).expanduser() if configured else default_spec_dir()


def spec_path(name_or_path: str | os.PathLike[str]) -> Path:
    """A spec file: an existing path as given, else ``<spec_dir>/<name>.yaml``."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.is_absolute() or path.exists():
        return path
    return spec_dir() / f"{path}.yaml"
