"""batchq.importing.import_object: the one parser of ``package.module:attribute`` paths."""

from __future__ import annotations

import json
import os.path
import sys

import pytest
from batchq.importing import import_object


@pytest.mark.parametrize("path, want", [("json:loads", json.loads), ("os.path:join", os.path.join),
                                        ("batchq.importing:import_object", import_object)])
def test_good_paths_return_the_object(path, want):
    assert import_object(path) is want


@pytest.mark.parametrize("path", ["json", "json.loads", ":loads", "json:", "", ":"])
def test_malformed_paths_say_what_a_path_looks_like(path):
    with pytest.raises(ValueError, match="must look like 'package.module:attribute'"):
        import_object(path)


def test_a_missing_module_names_the_path_and_the_module():
    with pytest.raises(ValueError, match=r"'no_such_module_xyz:f'.*no_such_module_xyz"):
        import_object("no_such_module_xyz:f")


def test_a_missing_attribute_names_the_path_and_the_attribute():
    with pytest.raises(ValueError, match=r"'json:no_such_attr'.*no_such_attr"):
        import_object("json:no_such_attr")


def test_a_module_that_fails_on_import_with_an_import_error_is_a_clear_error(tmp_path, monkeypatch):
    (tmp_path / "broken_batchq_test_mod.py").write_text("import no_such_dependency_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        with pytest.raises(ValueError, match=r"broken_batchq_test_mod:f'.*no_such_dependency_xyz"):
            import_object("broken_batchq_test_mod:f")
    finally:
        sys.modules.pop("broken_batchq_test_mod", None)


def test_an_attribute_path_with_dots_is_not_resolved_as_nested_attributes():
    # "os:path.join" would need getattr chaining; the one syntax is module:attribute.
    with pytest.raises(ValueError, match="path.join"):
        import_object("os:path.join")
