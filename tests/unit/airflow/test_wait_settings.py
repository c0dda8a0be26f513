"""The input-queue wait's settings: ``[batchq] wait_stable_for_s`` / ``wait_poll_interval_s``, the retired
``drain_*`` keys still read with a DeprecationWarning, bad values named; the sensor takes its defaults
from them."""

from __future__ import annotations

import warnings

import pytest
from batchq.airflow import settings
from batchq.monitor.waits import DEFAULT_STABLE_FOR_S

KEYS = ("WAIT_STABLE_FOR_S", "WAIT_POLL_INTERVAL_S", "DRAIN_STABLE_FOR_S", "DRAIN_POLL_INTERVAL_S")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for key in KEYS:
        monkeypatch.delenv(f"AIRFLOW__BATCHQ__{key}", raising=False)


def test_defaults_without_any_key():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert settings.wait_stable_for_s() == DEFAULT_STABLE_FOR_S == 60.0
        assert settings.wait_poll_interval_s() == settings.DEFAULT_WAIT_POLL_INTERVAL_S == 10.0


def test_new_keys_are_read(monkeypatch):
    monkeypatch.setenv("AIRFLOW__BATCHQ__WAIT_STABLE_FOR_S", "5")
    monkeypatch.setenv("AIRFLOW__BATCHQ__WAIT_POLL_INTERVAL_S", "0.5")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert (settings.wait_stable_for_s(), settings.wait_poll_interval_s()) == (5.0, 0.5)


@pytest.mark.parametrize(
    "old, new, accessor",
    [("DRAIN_STABLE_FOR_S", "wait_stable_for_s", settings.wait_stable_for_s), ("DRAIN_POLL_INTERVAL_S", "wait_poll_interval_s", settings.wait_poll_interval_s)],
)
def test_retired_keys_still_work_with_a_deprecation_warning(monkeypatch, old, new, accessor):
    monkeypatch.setenv(f"AIRFLOW__BATCHQ__{old}", "7")
    with pytest.warns(DeprecationWarning, match=rf"\[batchq\] {old.lower()} is deprecated: rename it to {new}"):
        assert accessor() == 7.0


def test_the_new_key_wins_over_the_retired_one_silently(monkeypatch):
    monkeypatch.setenv("AIRFLOW__BATCHQ__DRAIN_STABLE_FOR_S", "7")
    monkeypatch.setenv("AIRFLOW__BATCHQ__WAIT_STABLE_FOR_S", "3")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert settings.wait_stable_for_s() == 3.0


@pytest.mark.parametrize(
    "key, value, match",
    [
        ("WAIT_STABLE_FOR_S", "soon", r"wait_stable_for_s must be a number of seconds, got 'soon'"),
        ("WAIT_STABLE_FOR_S", "-1", r"wait_stable_for_s must be >= 0"),
        ("WAIT_POLL_INTERVAL_S", "0", r"wait_poll_interval_s must be > 0"),
    ],
)
def test_bad_values_are_named(monkeypatch, key, value, match):
    monkeypatch.setenv(f"AIRFLOW__BATCHQ__{key}", value)
    with pytest.raises(ValueError, match=match):
        settings.wait_stable_for_s() if "STABLE" in key else settings.wait_poll_interval_s()


def test_zero_stable_window_is_allowed(monkeypatch):
    monkeypatch.setenv("AIRFLOW__BATCHQ__WAIT_STABLE_FOR_S", "0")
    assert settings.wait_stable_for_s() == 0.0


def test_the_sensor_takes_its_defaults_from_the_settings(monkeypatch):
    from batchq.airflow.sensors import QueueDrainedSensor

    monkeypatch.setenv("AIRFLOW__BATCHQ__DRAIN_STABLE_FOR_S", "9")
    monkeypatch.setenv("AIRFLOW__BATCHQ__WAIT_POLL_INTERVAL_S", "2")
    with pytest.warns(DeprecationWarning, match="drain_stable_for_s"):
        sensor = QueueDrainedSensor(task_id="wait", queue_name="http://h/1/q", aws_conn_id="x")
    assert (sensor.stable_for, sensor.poll_interval, sensor.poke_interval) == (9.0, 2.0, 2.0)
    explicit = QueueDrainedSensor(task_id="wait2", queue_name="q", stable_for=1, poll_interval=3, aws_conn_id="x")
    assert (explicit.stable_for, explicit.poll_interval) == (1, 3)
