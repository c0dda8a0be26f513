"""``batchq plan-capacity`` through the real parser: JSON out, SVG written, inputs read, bad input refused."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
from batchq.cli import main
from batchq.cli.plan_capacity import deadline_seconds

REPO = Path(__file__).resolve().parents[3]
SPEC = REPO / "include" / "specs" / "customer_batch.yaml"


def run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(["plan-capacity", *argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_json_for_the_example_spec_with_deadline_and_schedule(capsys, tmp_path):
    svg = tmp_path / "curve.svg"
    rc, out, _ = run(capsys, "--spec", str(SPEC), "--p50", "20", "--p95", "60", "--policy", "lambda",
                     "--start", "07:00", "--deadline", "08:00", "--schedule", "0 7 * * *", "--runs", "5",
                     "--json", "--svg", str(svg))
    assert rc == 0
    plan = json.loads(out)
    assert plan["inputs"]["payloads"] == 1600  # 200 × 3 × 3 − 200 excluded
    assert plan["policy"] == "lambda" and plan["deadline_s"] == 3600
    assert plan["deadline_met"] is True and plan["smallest_max_meeting_deadline"] >= 1
    assert plan["cost_per_month"]["runs"] == pytest.approx(365 / 12)
    assert plan["inputs"]["prices_taken"]
    assert svg.read_text().startswith("<svg")


def test_text_report_and_durations_file(capsys, tmp_path):
    durations = tmp_path / "d.json"
    durations.write_text(json.dumps([0.5, 1.0, 1.5]))
    rc, out, _ = run(capsys, "--payloads", "200", "--durations-file", str(durations), "--policy", "keda",
                     "--max", "3", "--runs", "3", "--no-search")
    assert rc == 0
    assert "policy keda: 200 payloads, empirical, 3 samples" in out
    assert "drain time" in out and "SQS requests" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--payloads", "10", "--p50", "2"], "--p50 needs --p95"),
        (["--payloads", "10", "--p50", "5", "--p95", "2"], "p50 <= p95"),
        (["--payloads", "10", "--seconds-per-payload", "1", "--deadline", "08:00"], "goes with --start"),
        (["--payloads", "10", "--seconds-per-payload", "1", "--schedule", "0 7 * *"], "five-field"),
        (["--payloads", "10", "--seconds-per-payload", "1", "--min", "5", "--max", "2"], "above --max"),
        (["--payloads", "10", "--from-run", "b", "r"], "--sink-url"),
    ],
)
def test_bad_input_is_one_clear_error(capsys, argv, message):
    rc, _, err = run(capsys, *argv)
    assert rc == 2 and message in err


def test_bad_durations_file_names_the_item(capsys, tmp_path):
    f = tmp_path / "d.txt"
    f.write_text("1.0\n2.5\nslow\n")
    rc, _, err = run(capsys, "--payloads", "10", "--durations-file", str(f))
    assert rc == 2 and "item 2 ('slow')" in err


def test_bad_time_of_day_is_a_usage_error(capsys):
    with pytest.raises(SystemExit):
        main(["plan-capacity", "--payloads", "10", "--seconds-per-payload", "1", "--start", "25:00",
              "--deadline", "08:00"])
    assert "HH:MM" in capsys.readouterr().err


def test_deadline_wraps_to_the_next_day():
    assert deadline_seconds(7 * 60, 8 * 60) == 3600
    assert deadline_seconds(23 * 60, 1 * 60) == 2 * 3600
    assert deadline_seconds(None, None) is None


def test_durations_from_a_previous_run_in_the_sink(capsys, tmp_path):
    url = f"sqlite:///{tmp_path / 'sink.db'}"
    engine = sa.create_engine(url)
    t0 = datetime(2026, 11, 30, 7, tzinfo=timezone.utc)
    with engine.begin() as conn:
        conn.execute(sa.text("create table batchq_results (key text primary key, batch text, run_id text, "
                             "started_at timestamp, finished_at timestamp)"))
        for i, d in enumerate([2.0, 4.0, 6.0]):
            conn.execute(sa.text("insert into batchq_results values (:k, 'b', 'r1', :s, :f)"),
                         {"k": f"k{i}", "s": t0, "f": t0 + timedelta(seconds=d)})
        conn.execute(sa.text("insert into batchq_results values ('other', 'b', 'r2', :s, :f)"),
                     {"s": t0, "f": t0 + timedelta(seconds=100)})
    engine.dispose()
    rc, out, _ = run(capsys, "--payloads", "30", "--from-run", "b", "r1", "--sink-url", url, "--runs", "2",
                     "--no-search", "--json")
    assert rc == 0
    assert json.loads(out)["inputs"]["service"] == "empirical, 3 samples, mean 4s"

    rc, _, err = run(capsys, "--payloads", "30", "--from-run", "b", "nope", "--sink-url", url)
    assert rc == 2 and "no results with started_at" in err


def test_sink_without_started_at_says_what_to_give_instead(capsys, tmp_path):
    url = f"sqlite:///{tmp_path / 'sink.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("create table batchq_results (key text primary key, batch text, run_id text, "
                             "finished_at timestamp)"))
    engine.dispose()
    rc, _, err = run(capsys, "--payloads", "30", "--from-run", "b", "r1", "--sink-url", url)
    assert rc == 2 and "no started_at column" in err and "--seconds-per-payload" in err


def test_deadline_as_a_duration_names_the_setting_and_reports_progress(capsys):
    # Issue 20: `--deadline 1h` was refused; the answer did not name the setting; 40 s of silence.
    rc, out, err = run(capsys, "--payloads", "400", "--seconds-per-payload", "2", "--policy", "local",
                       "--concurrency", "4", "--deadline", "1h", "--runs", "3")
    assert rc == 0, err
    assert "deadline     1h00m00s after start" in out
    assert "smallest max workers (batchq workers --max) meeting it: " in out
    assert "plan-capacity: simulating 3 runs of 400 payloads under local" in err
    assert "plan-capacity: searching the smallest max workers" in err
    assert "plan-capacity" not in out  # stdout is the plan alone
    rc, out, err = run(capsys, "--payloads", "400", "--seconds-per-payload", "2", "--policy", "lambda",
                       "--deadline", "90m", "--runs", "2", "--json", "--quiet")
    plan = json.loads(out)
    assert rc == 0 and plan["deadline_s"] == 5400 and err == ""
    assert plan["max_setting"].startswith("maximum concurrency") and "reserved concurrency" in plan["max_setting"]


def test_durations_parse_in_the_one_clock_module():
    from batchq.clock import parse_deadline, parse_duration

    assert [parse_duration(v) for v in ("1h", "90m", "1h30m", "45s", "2h15m30s", "600")] == [3600, 5400, 5400, 45, 8130, 600]
    assert parse_deadline("08:00") == ("clock", 480) and parse_deadline("1h") == ("duration", 3600)
    for bad in ("", "h", "0m", "1d", "-5", "nan"):
        with pytest.raises(ValueError, match="must look like"):
            parse_duration(bad)
    with pytest.raises(ValueError, match="time of day 'HH:MM'.*or a duration"):
        parse_deadline("tomorrow")
