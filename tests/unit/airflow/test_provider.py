"""batchq as an Airflow provider (issue 20): `airflow providers list` shows it, its connection type and form
fields are registered, the batchq:// asset scheme is normalised and validated, and the plugin is
registered once.

The shared venv's batchq metadata comes from another checkout's pyproject, so these tests put a
distribution built from *this* pyproject's entry points first on the path of an `airflow` subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import tomllib

REPO = Path(__file__).resolve().parents[3]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def _dist(tmp_path: Path, groups: tuple[str, ...]) -> Path:
    """A ``batchq`` dist-info with this pyproject's entry points of ``groups``."""
    project = PYPROJECT["project"]
    dist = tmp_path / f"batchq-{project['version']}.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: batchq\nVersion: {project['version']}\n")
    lines = []
    for group in groups:
        lines.append(f"[{group}]")
        lines += [f"{name} = {value}" for name, value in project["entry-points"][group].items()]
    (dist / "entry_points.txt").write_text("\n".join(lines) + "\n")
    return tmp_path


def _run(args: list[str], tmp_path: Path, path_first: Path | None = None) -> subprocess.CompletedProcess:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    pythonpath = [str(REPO / "include"), str(REPO)]
    if path_first is not None:
        pythonpath.insert(0, str(path_first))
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(tmp_path / "no-dags"),
        "PYTHONPATH": os.pathsep.join(pythonpath),
    }
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=240, check=False)


def test_provider_info_is_valid_for_airflows_schema():
    import airflow
    import jsonschema
    from airflow.providers_manager import ProvidersManager  # noqa: F401 - the schema ships beside it
    from batchq.airflow.provider_info import get_provider_info

    schema = json.loads((Path(airflow.__file__).parent / "provider_info.schema.json").read_text())
    info = get_provider_info()
    jsonschema.validate(info, schema)
    assert info["package-name"] == PYPROJECT["project"]["name"]
    assert PYPROJECT["project"]["entry-points"]["apache_airflow_provider"]["provider_info"] == "batchq.airflow.provider_info:get_provider_info"


def test_airflow_providers_list_shows_batchq(tmp_path):
    airflow = str(Path(sys.executable).with_name("airflow"))
    proc = _run([airflow, "providers", "list", "-o", "json"], tmp_path, _dist(tmp_path, ("apache_airflow_provider",)))
    assert proc.returncode == 0, proc.stderr[-3000:]
    providers = {p["package_name"]: p for p in json.loads(proc.stdout[proc.stdout.index("[") :])}
    assert providers["batchq"]["version"] == PYPROJECT["project"]["version"]
    # Airflow reads every distribution's entry points (no de-duplication), so an older batchq on the path
    # cannot hide the installed one; what proves the listing comes from *this* pyproject is the entry point
    # itself (test_provider_info_is_valid_for_airflows_schema) and the version read from it above.
    assert providers["batchq"]["description"]


PROBE = r"""
import json
from airflow.providers_manager import ProvidersManager
pm = ProvidersManager()
hook = pm.hooks["batchq_http"]
print(json.dumps({
    "hook": [hook.hook_class_name, hook.hook_name, hook.package_name] if hook else None,
    "widgets": sorted(k for k in pm.connection_form_widgets if "batchq_http" in k),
    "behaviour": pm.field_behaviours.get("batchq_http"),
    "asset_schemes": sorted(k for k in pm.asset_uri_handlers if k == "batchq"),
    "factories": sorted(k for k in pm.asset_factories if k == "batchq"),
}))
"""


def test_connection_type_form_and_asset_scheme_are_registered(tmp_path):
    proc = _run([sys.executable, "-c", PROBE], tmp_path, _dist(tmp_path, ("apache_airflow_provider",)))
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["hook"] == ["batchq.airflow.sinks.BatchqHttpSinkHook", "batchq HTTP sink", "batchq"]
    assert got["widgets"] == ["extra__batchq_http__headers", "extra__batchq_http__token", "extra__batchq_http__use_https"]
    assert got["behaviour"]["relabeling"]["schema"] == "Path"
    assert got["asset_schemes"] == ["batchq"] and got["factories"] == ["batchq"]


def test_one_batchq_distribution_is_visible():
    """`pip install -e` left include/batchq.egg-info on the path beside the venv's dist-info: two
    distributions, so Airflow loaded the plugin entry point twice (`make venv` now removes the copy)."""
    from importlib.metadata import distributions

    found = [str(getattr(d, "_path", d)) for d in distributions() if (d.metadata["name"] or "").lower() == "batchq"]
    assert len(found) <= 1, found


PLUGINS_PROBE = r"""
import json, sys
from pathlib import Path
# A stale include/batchq.egg-info beside an editable install is a second distribution (its own test
# above); leave it out here so this test looks at the plugins folder and the entry point only.
sys.path[:] = [p for p in sys.path if not (Path(p or ".") / "batchq.egg-info").exists()]
from airflow import plugins_manager
plugins, errors = plugins_manager._get_plugins()
print(json.dumps({"names": [p.name for p in plugins], "errors": {str(k): v for k, v in errors.items()}}))
"""


def test_every_airflow_command_registers_the_plugin_once(tmp_path):
    """Installed batchq (the venv's entry point) + the repo's plugins folder: before issue 20 both
    registered it and every `airflow` command logged "Plugin 'batchq' already registered, skipping"."""
    proc = _run([sys.executable, "-c", PLUGINS_PROBE], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["names"].count("batchq") == 1
    assert not [e for e in got["errors"].values() if "already registered" in e], got["errors"]


@pytest.mark.parametrize(
    ("uri", "problem"),
    [
        ("batchq://customer_batch/results", None),
        ("batchq://customer_batch/results/", None),
        ("batchq:///results", "batch name"),
        ("batchq://bad name/results", "batch name"),
        ("batchq://customer_batch/resluts", "only batchq Assets"),
        ("batchq://customer_batch/results?x=1", "only batchq Assets"),
        ("batchq://customer_batch/partitions", None),
        ("batchq://customer_batch/partitions/", None),
        ("batchq://customer_batch/partition", "only batchq Assets"),
    ],
)
def test_batchq_uris_are_normalised_and_validated(uri, problem):
    from batchq.airflow.assets import sanitize_uri

    if problem is None:
        assert sanitize_uri(urlsplit(uri)).geturl() == uri.rstrip("/")
    else:
        with pytest.raises(ValueError, match=problem):
            sanitize_uri(urlsplit(uri))


def test_asset_factory_and_openlineage_dataset():
    from batchq.airflow.assets import convert_asset_to_openlineage, create_asset
    from batchq.airflow.operators.drain import results_asset

    asset = create_asset(batch="customer_batch")
    assert asset == results_asset("customer_batch")
    ds = convert_asset_to_openlineage(asset)
    assert (ds.namespace, ds.name) == ("batchq://customer_batch", "results")
