"""Ledger decisions (pure): completion and Step-Functions-style failure tolerance."""

from __future__ import annotations

import pytest
from batchq.store import evaluate, tolerated_failures


@pytest.mark.parametrize(
    "expected,count,pct,want",
    [(100, 0, 0.0, 0), (100, 3, 0.0, 3), (100, 0, 1.0, 1), (1600, 0, 1.0, 16), (1599, 0, 1.0, 15), (100, 5, 1.0, 5), (10, 0, 100.0, 10)],
)
def test_tolerated_failures_is_the_larger_of_count_and_percentage(expected, count, pct, want):
    assert tolerated_failures(expected, count, pct) == want


def test_tolerated_failures_rejects_bad_input():
    with pytest.raises(ValueError):
        tolerated_failures(10, 0, 101)
    with pytest.raises(ValueError):
        tolerated_failures(10, -1, 0)


def test_open_until_every_key_is_closed():
    s = evaluate("b", "r", 10, 6, 3)
    assert not s.complete and s.pending == 1 and s.outcome == "open" and not s.ok
    s = evaluate("b", "r", 10, 7, 3, tolerated_failure_count=3)
    assert s.complete and s.ok and s.outcome == "succeeded"


def test_too_many_failures_fails_with_counts_and_first_keys():
    failures = [{"key": "k1", "error": {"type": "Boom", "message": "disk full"}}]
    s = evaluate("b", "r", 100, 97, 2, 1, tolerated_failure_percentage=2.0, first_failures=failures)
    assert s.failed == 3 and s.quarantined == 1  # quarantined keys count as failures
    assert s.complete and not s.ok and s.outcome == "failed"
    text = s.describe()
    assert "97 succeeded" in text and "3 failed" in text and "k1: Boom: disk full" in text
    assert s.counts()["outcome"] == "failed" and s.to_dict()["first_failures"] == failures


def test_zero_expected_is_complete_at_once():
    assert evaluate("b", "r", 0, 0, 0).ok
