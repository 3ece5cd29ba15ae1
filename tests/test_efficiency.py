"""Harness efficiency: where a suite's wall time went, from records of known timings."""
from __future__ import annotations

from lmbench.report.efficiency import breakdown, lines, section


def timed_run(run_seconds, suite="s.toml", peak=None, status="ok"):
    r = {"suite": suite, "status": status, "bench": {"run_seconds": run_seconds}}
    if peak is not None:
        r["bench"]["peak_seconds"] = peak
    r["metrics"] = None if status != "ok" else {
        "train_seconds": 20.0, "warmup_seconds": 3.0, "cold_shapes": {"seconds": 7.0}, "eval_seconds": 4.0,
        "eval_cold_shapes": {"seconds": 1.0}, "wall_seconds": 40.0}
    return r


def test_a_suites_wall_time_splits_into_timed_warm_up_eval_start_and_peak():
    records = [timed_run(50.0, peak=12.0), timed_run(50.0), timed_run(8.0, status="failed"),
               {"suite": "s.toml", "status": "ok", "metrics": {"train_seconds": 1.0}}]  # not timed by the bench
    b = breakdown(records)["s.toml"]
    # each ok run: 20 timed, 3 + 7 warm-up, 4 + 1 eval, 50 - 40 start, 40 - 35 the rest
    assert b["parts"] == {"timed": 40.0, "warmup": 20.0, "eval": 10.0, "start": 28.0, "other": 10.0,
                          "peak": 12.0}
    assert b["runs"] == 3 and b["total"] == 120.0
    text = "\n".join(lines(b, suite_seconds=150.0))
    assert "26.7%      40.0 s  timed training steps" in text
    assert "20.0%      30.0 s  the bench itself" in text  # 150 s of wall clock, 120 s of it in runs and peak
    assert "40% inside timed or necessary warm-up work" in text


def test_the_report_shows_each_suites_breakdown_and_nothing_without_the_bench_clock():
    blocks = section([timed_run(50.0, suite="a.toml"), timed_run(100.0, suite="b.toml")])
    (_, title), (_, headers, rows, _), _ = blocks
    assert title == "Harness efficiency" and headers[0] == "Suite"
    assert [row[0][1] for row in rows] == ["a.toml", "b.toml"]
    assert rows[1][headers.index("Process start, imports, data load, model build")][1] == "60% (60 s)"
    assert section([{"suite": "s", "status": "ok", "metrics": {"train_seconds": 1.0}}]) == []
