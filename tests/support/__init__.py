"""Test helpers that are not fixtures (importable as ``support.*`` from tests)."""
