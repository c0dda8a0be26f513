"""The test tree mirrors the package (tests/README.md): folders under unit/ and integration/ are
package folders, and test basenames are unique (the folders have no ``__init__.py``)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "include" / "batchq"
TIERS = ("unit", "integration")


def package_folders(package: Path) -> set[str]:
    return {p.name for p in package.iterdir() if (p / "__init__.py").is_file()}


def misplaced_folders(tests: Path, package: Path) -> list[str]:
    """Test folders under a mirrored tier that name no package folder."""
    known = package_folders(package)
    bad = []
    for tier in TIERS:
        for folder in sorted(p for p in (tests / tier).iterdir() if p.is_dir()):
            if folder.name.startswith((".", "__")):
                continue
            if folder.name not in known:
                bad.append(f"{tier}/{folder.name}")
    return bad


def duplicate_basenames(tests: Path) -> list[str]:
    counts = Counter(p.name for p in tests.rglob("test_*.py"))
    return sorted(name for name, n in counts.items() if n > 1)


def test_test_folders_mirror_package_folders():
    assert misplaced_folders(REPO / "tests", PACKAGE) == []


def test_test_basenames_are_unique():
    assert duplicate_basenames(REPO / "tests") == []


def test_the_checks_can_fail(tmp_path):
    """A synthetic tree with a stray folder and a duplicate basename trips both checks."""
    package = tmp_path / "pkg"
    (package / "sqs").mkdir(parents=True)
    (package / "sqs" / "__init__.py").write_text("")
    tests = tmp_path / "tests"
    for rel in ("unit/sqs/test_a.py", "unit/health/test_b.py", "integration/sqs/test_a.py"):
        (tests / rel).parent.mkdir(parents=True, exist_ok=True)
        (tests / rel).write_text("")
    assert misplaced_folders(tests, package) == ["unit/health"]
    assert duplicate_basenames(tests) == ["test_a.py"]
