"""`lmbench compare`: exit 0 / 1 / 2, noise-aware; on fixtures and on real recorded runs."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
from records import record

from lmbench.regress.calibrate import calibrate
from lmbench.cli import main as cli_main
from lmbench.regress.compare import MIN_RUNS, throughput_verdict
from lmbench.env import machine_key
from lmbench.results import load_records
from lmbench.runspec import RunSpec
from lmbench.run.runner import SCHEMA_VERSION
from lmbench.run.suite import load_suite, spec_for, suite_path

BASELINES = Path(__file__).resolve().parent.parent / "results" / "baselines"


def write(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(path)


def run(capsys, *argv):
    code = cli_main(["compare", *map(str, argv)])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def runs(words, layout="packed", seed=0, **kw):
    """One record per words/s figure: separate runs of one configuration."""
    return [record(layout=layout, words_per_sec=w, step_ms=100 * 1000 / w, seed=seed + i, **kw)
            for i, w in enumerate(words)]


BASE = [1000, 1010, 990, 1005, 995]


def test_real_slowdown_is_a_regression(tmp_path, capsys):
    base = runs(BASE) + runs(BASE, layout="padded", seed=10)
    cand = runs([w / 1.3 for w in BASE], seed=20) + runs([w / 1.01 for w in BASE], layout="padded", seed=30)
    code, out = run(capsys, write(tmp_path / "b.jsonl", base), write(tmp_path / "c.jsonl", cand))
    assert code == 1, out
    assert "2 configuration(s) matched" in out and "1 regression(s)" in out
    packed = next(line for line in out.splitlines() if "torch/packed" in line)
    assert "0.769" in packed and "REGRESSION (runs slower, p=0.004)" in packed  # 1/1.3; 1/C(10,5)
    assert "step-paired ratio 0.7" in packed  # the same batches, 1.3x the step time, fresh noise
    padded = next(line for line in out.splitlines() if "torch/padded" in line)
    assert padded.endswith("ok")


def test_steps_of_one_run_are_not_replicates(tmp_path, capsys):
    """The issue's case: two runs per side, every step 12% slower. Pooled steps would give
    p ~ 1e-9; two runs per side cannot reach p < 0.01, so it is untestable, not a regression."""
    base = runs([1000, 962])
    cand = runs([1000 / 1.12, 962 / 1.12], seed=5)
    code, out = run(capsys, write(tmp_path / "b.jsonl", base), write(tmp_path / "c.jsonl", cand), "--unfit-baseline")
    assert code == 0, out
    assert "untestable: 2/2 runs cannot reach p < 0.01 (need 5 per side" in out


def test_whole_run_noise_is_not_flagged(tmp_path, capsys):
    # medians 12% apart (past the threshold) but the runs overlap: the rank test says noise
    base = runs([1000, 700, 1100, 900, 1200])
    cand = runs([880, 1150, 650, 860, 950], seed=7)
    _, _, ratio, verdict = throughput_verdict(base, cand, 0.10)
    assert ratio == pytest.approx(0.88) and verdict.startswith("noise (runs not significantly slower")
    code, out = run(capsys, write(tmp_path / "b.jsonl", base), write(tmp_path / "c.jsonl", cand), "--unfit-baseline")
    assert code == 0 and "0 regression(s)" in out


def test_small_significant_slowdown_under_the_threshold_passes(tmp_path, capsys):
    base = runs(BASE, spread=1)
    cand = runs([w / 1.05 for w in BASE], seed=13, spread=1)  # clearly slower, but within 10%
    code, out = run(capsys, write(tmp_path / "b.jsonl", base), write(tmp_path / "c.jsonl", cand))
    assert code == 0 and "0.952" in out
    code, out = run(capsys, tmp_path / "b.jsonl", tmp_path / "c.jsonl", "--max-slowdown", "3%")
    assert code == 1 and "REGRESSION" in out


def test_missing_or_failed_cell_fails_unless_allowed(tmp_path, capsys):
    base = write(tmp_path / "b.jsonl", runs(BASE) + runs(BASE, layout="padded", seed=10)
                 + runs(BASE, layout="packed", batch_size=64, seed=40))
    cand_records = runs(BASE, seed=20) + [record(layout="padded", status="failed", seed=50)]
    cand = write(tmp_path / "c.jsonl", cand_records)
    code, out = run(capsys, base, cand)
    assert code == 1, out
    assert "torch/padded" in out and "FAILED in 1 run(s) (crash): RuntimeError: boom" in out
    assert "B=64" in out and "MISSING from the candidate" in out
    assert "2 baseline configuration(s) missing or failed; 0 regression(s)" in out
    code, out = run(capsys, base, cand, "--allow-missing")
    assert code == 0 and "missing or failed (allowed)" in out


def test_step_summary_markdown_is_well_formed(tmp_path, capsys):
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    base = write(tmp_path / "b.jsonl", runs(BASE) + runs(BASE, layout="padded", seed=10))
    cand = write(tmp_path / "c.jsonl", runs([w / 1.3 for w in BASE], seed=20))
    code, _ = run(capsys, base, cand, "--summary", summary)
    assert code == 1
    text = summary.read_text()
    assert text.startswith("earlier step\n### lmbench compare")  # appended, as GitHub does
    assert ": **regression**" in text.splitlines()[1]
    table = [line for line in text.splitlines() if line.startswith("|")]
    assert table[0] == "| run | metric | baseline | candidate | ratio | verdict |"
    assert table[1] == "|---|---|---:|---:|---:|---|"
    assert all(line.count("|") - line.count("\\|") == 7 for line in table), table
    assert any("REGRESSION" in line for line in table) and any("MISSING" in line for line in table)
    assert "Rule: a throughput drop is a regression if" in text


def test_no_change_passes(tmp_path, capsys):
    base = [record(seed=7, valid_ppl=120.0)]
    code, out = run(capsys, write(tmp_path / "b.jsonl", base), write(tmp_path / "c.jsonl", base), "--unfit-baseline")
    assert code == 0 and "0 regression(s)" in out
    assert [line.split()[-1] for line in out.splitlines() if "words" in line or "ppl" in line] == ["ok"] * 3


def test_perplexity_rise_is_a_regression(tmp_path, capsys):
    base = [record(seed=8, valid_ppl=120.0)]
    cand = [record(seed=8, valid_ppl=125.0)]
    code, out = run(capsys, write(tmp_path / "b.jsonl", base), write(tmp_path / "c.jsonl", cand), "--unfit-baseline")
    assert code == 1
    assert "REGRESSION (+4.2%)" in next(line for line in out.splitlines() if "valid_ppl" in line)


def test_busier_machine_is_pointed_out(tmp_path, capsys):
    """Older records (a load average read between cells) are still read for the note."""
    base = [record(seed=14, load_average=0.5, busy=None)]
    cand = [record(seed=14, load_average=6.0, busy=None)]
    code, out = run(capsys, write(tmp_path / "b.jsonl", base), write(tmp_path / "c.jsonl", cand), "--unfit-baseline")
    assert code == 0 and "load average 6.0 vs 0.5" in out


def test_candidate_runs_recorded_busy_are_pointed_out(tmp_path, capsys):
    base = write(tmp_path / "b.jsonl", runs(BASE))
    code, out = run(capsys, base, write(tmp_path / "c.jsonl", runs(BASE, seed=9, busy=True)))
    assert code == 0 and "5 candidate run(s) were recorded while the machine was busy (other processes used 40%" in out


def test_unusable_input_exits_2(tmp_path, capsys):
    good = write(tmp_path / "good.jsonl", runs(BASE, seed=9))
    code, out = run(capsys, tmp_path / "missing.jsonl", good)
    assert code == 2 and "missing.jsonl: no such file or directory" in out
    future = record(seed=9)
    future["schema_version"] = SCHEMA_VERSION + 1
    code, out = run(capsys, good, write(tmp_path / "future.jsonl", [future]))
    assert code == 2 and "future.jsonl:1" in out and f"schema_version {SCHEMA_VERSION + 1}" in out
    other = write(tmp_path / "other.jsonl", [record(seed=9, layout="padded")])
    code, out = run(capsys, good, other)
    assert code == 2 and "no successful run in" in out and "matches one in" in out
    (tmp_path / "empty").mkdir()
    code, out = run(capsys, good, tmp_path / "empty")
    assert code == 2 and "no .jsonl results" in out
    code, out = run(capsys, good, good, "--max-slowdown", "ten")
    assert code == 2 and "invalid threshold 'ten'" in out


def test_different_machines_are_refused_unless_forced(tmp_path, capsys):
    a = write(tmp_path / "a.jsonl", [record(seed=10)])
    b = write(tmp_path / "b.jsonl", [record(seed=10, cpu="Other CPU")])
    code, out = run(capsys, a, b, "--unfit-baseline")
    assert code == 2 and "different machine kinds" in out and "--force" in out
    code, out = run(capsys, a, b, "--force", "--unfit-baseline")
    assert code == 0


def test_corrupt_lines_are_named_and_skipped(tmp_path, capsys):
    path = tmp_path / "b.jsonl"
    path.write_text(json.dumps(record(seed=11)) + "\n{\"schema_version\": 1, \"trunc\n")
    code, out = run(capsys, path, path, "--unfit-baseline")
    assert code == 0
    assert f"{path}:2: skipped a corrupt or truncated record" in out


def _baseline_records():
    files = sorted(BASELINES.glob("*.jsonl"), key=lambda f: f.stem != machine_key())  # this machine's first
    if not files:
        pytest.skip("no committed baseline in results/baselines/ (make bench-check-baseline)")
    return files[0], [json.loads(line) for line in files[0].read_text().splitlines() if line.strip()]


def test_committed_baseline_matches_the_check_suite():
    """If the check suite changes, `make bench-check` would match nothing: refresh the baseline."""
    path, records = _baseline_records()
    keys = {RunSpec.from_record(r).identity(without=("threads",)) for r in records if r["status"] == "ok"}
    expected = {spec_for(c, "auto").identity(without=("threads",)) for c in load_suite(suite_path("check"))}
    assert expected <= keys, f"{path} is stale: run `make bench-check-baseline` and commit it"


def test_real_runs_against_themselves_and_slowed(tmp_path, capsys):
    """Real runs (the committed baseline of this project's machine): the same runs pass; the
    same runs slowed past their own run-to-run spread regress when there are enough runs."""
    path, records = _baseline_records()
    code, out = run(capsys, path, path)
    assert code == 0, out
    ok = [r["metrics"]["train_words_per_sec"] for r in records if r["status"] == "ok"]
    factor = 1.1 * max(ok) / min(ok)  # every slowed run below every original one
    slowed = copy.deepcopy(records)
    for r in slowed:
        if r["status"] == "ok":
            s = np.asarray(r["metrics"]["step_time_ms"]["samples"])
            r["metrics"]["step_time_ms"]["samples"] = list(s * factor)
            r["metrics"]["train_words_per_sec"] /= factor
    code, out = run(capsys, path, write(tmp_path / "slow.jsonl", slowed))
    if len(records) >= 2 * MIN_RUNS:  # two cells: a slowdown must be provable
        assert code == 1 and "REGRESSION (runs slower, p=0.004)" in out, out
    else:  # an old baseline with too few runs per cell cannot prove it, and says so
        assert code == 0 and "untestable" in out, out


REPEATS = Path(__file__).resolve().parent / "data" / "check-repeats"


def test_rule_does_not_cry_wolf_on_recorded_repeats():
    """Many runs of the same code on this project's machine (the check suite, several
    sessions, other work running): null comparisons flag <= 1%, slowdowns are found more
    often the larger they are. Seeded: the same records give the same rates."""
    records = load_records([REPEATS])
    result = calibrate(records, draws=2000, seed=0)  # the table in docs/regression.md
    assert result == calibrate(records, draws=2000, seed=0)
    assert all(sum(n.values()) >= 10 for n in result["sessions"].values())  # >= 10 runs per cell
    rate = {condition: sum(f for f, _ in counts) / sum(t for _, t in counts) for condition, counts in result["rows"]}
    # exchangeable runs: the exact test alone bounds it at P(U <= 1) = 2/252 = 0.8%, and the
    # threshold only lowers it; drawn 4000 times here
    assert rate["no change, runs drawn from all sessions"] <= 0.01, rate
    # (one whole session against another is not bounded: a machine 4x busier for a whole
    # session is a real slowdown of every run -- that is what `lmbench ab` interleaves away)
    # a slowdown beyond the runs' own spread (every slowed run below every run) is always found
    words = [r["metrics"]["train_words_per_sec"] for r in records if r["status"] == "ok"]
    beyond = 1 - 0.9 * min(words) / max(words)
    found = calibrate(records, draws=100, seed=1, slowdowns=(beyond,))["rows"][-1][1]
    assert all(f == t for f, t in found), found


def test_calibration_refuses_too_few_runs(tmp_path, capsys):
    write(tmp_path / "few.jsonl", runs(BASE))
    assert cli_main(["calibrate", str(tmp_path / "few.jsonl")]) == 2
    assert "5 run(s); a comparison of 5 vs 5 runs needs at least 10" in capsys.readouterr().err


def _refusal(capsys, tmp_path, base, *argv):
    code, out = run(capsys, write(tmp_path / "b.jsonl", base), write(tmp_path / "c.jsonl", runs(BASE, seed=90)), *argv)
    assert code == 2, out
    assert "is unfit to judge a candidate by" in out and "make bench-check-baseline" in out
    return out


def test_a_baseline_cell_with_fewer_runs_than_the_test_needs_is_refused(tmp_path, capsys):
    out = _refusal(capsys, tmp_path, runs(BASE[:4]))
    assert "torch/packed small sentence/random B=20: 4 run(s); the test needs >= 5" in out


def test_a_baseline_cell_of_two_commits_or_framework_versions_is_refused(tmp_path, capsys):
    base = runs(BASE)
    base[0]["git_commit"] = "def456"
    base[1]["environment"] = {**base[1]["environment"], "framework_version": "2.0"}
    out = _refusal(capsys, tmp_path, base)
    assert "runs of 2 commits (abc123, def456)" in out and "runs of 2 framework versions (1.0, 2.0)" in out


def test_a_baseline_cell_spread_above_the_limit_is_refused(tmp_path, capsys):
    out = _refusal(capsys, tmp_path, runs([1000, 1010, 990, 1005, 800]))
    assert "run-to-run spread 21% (800-1,010 words/s) above the limit 15% (default;" in out


def test_the_calibrated_spread_limit_of_the_machine_replaces_the_default(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LMBENCH_RESULTS_DIR", str(tmp_path / "results"))
    base = write(tmp_path / "b.jsonl", runs([1000, 1010, 990, 1005, 950]))  # 6% spread: fit by default
    assert run(capsys, base, "--check-baseline")[0] == 0
    (tmp_path / "results" / "test-cpu-2cpu").mkdir(parents=True)  # records.record()'s machine
    (tmp_path / "results" / "test-cpu-2cpu" / "calibration.json").write_text(
        json.dumps({"spread_limit": 0.04, "utc_time": "2026-12-03T00:00:00+00:00"}))
    code, out = run(capsys, base, "--check-baseline")
    assert code == 2 and "spread 6% (950-1,010 words/s) above the limit 4% (calibrated for test-cpu-2cpu" in out


def test_baseline_runs_recorded_busy_or_unmeasured_are_refused(tmp_path, capsys):
    out = _refusal(capsys, tmp_path, runs(BASE[:3]) + runs(BASE[3:], seed=3, busy=True))
    assert "2 run(s) recorded while the machine was busy (other processes used 40%" in out
    old = runs(BASE, busy=None, load_average=3.5)  # made before lmbench measured the window
    out = _refusal(capsys, tmp_path, old)
    assert "5 run(s) without a busy measurement around the timed window (recorded by an older lmbench; " \
           "load average then 3.5-3.5)" in out


def test_an_unfit_baseline_can_still_be_compared_when_asked(tmp_path, capsys):
    code, out = run(capsys, write(tmp_path / "b.jsonl", runs(BASE[:2])), write(tmp_path / "c.jsonl", runs(BASE[:2])),
                    "--unfit-baseline")
    assert code == 0 and "untestable" not in out and "1 configuration(s) matched" in out


def test_check_baseline_passes_a_fit_baseline_and_needs_no_candidate(tmp_path, capsys):
    code, out = run(capsys, write(tmp_path / "b.jsonl", runs(BASE)), "--check-baseline")
    assert code == 0 and "fit to judge by (1 configuration(s))" in out
    code, out = run(capsys, tmp_path / "b.jsonl")
    assert code == 2 and "give a CANDIDATE" in out


def test_calibrate_save_writes_the_limit_compare_then_admits_baselines_by(tmp_path, capsys, monkeypatch):
    quiet = runs([1000, 1010, 990, 1005, 995]) + runs([1002, 998, 1008, 992, 1000], seed=5)  # within 2%
    write(tmp_path / "quiet.jsonl", quiet)
    results = tmp_path / "results"
    assert cli_main(["calibrate", str(tmp_path / "quiet.jsonl"), "--draws", "200", "--save",
                     "--results-dir", str(results)]) == 0
    saved = json.loads((results / "test-cpu-2cpu" / "calibration.json").read_text())
    assert 0.01 < saved["spread_limit"] <= 0.021 and saved["machine_key"] == "test-cpu-2cpu"
    lo, hi = saved["cells"]["all"]["pair_band"]
    assert 0.97 < lo < 1 < hi < 1.03
    capsys.readouterr()
    # a baseline 6% apart passes the default 15% but not this machine's calibrated limit
    base = write(tmp_path / "b.jsonl", runs([1000, 1010, 990, 1005, 950]))
    code, out = run(capsys, base, "--check-baseline")
    assert code == 0, out
    monkeypatch.setenv("LMBENCH_RESULTS_DIR", str(results))
    code, out = run(capsys, base, "--check-baseline")
    assert code == 2 and "(calibrated for test-cpu-2cpu" in out


def test_calibrate_save_refuses_runs_not_measured_quiet(tmp_path, capsys):
    write(tmp_path / "loud.jsonl", runs(BASE) + runs(BASE, seed=5, busy=True))
    assert cli_main(["calibrate", str(tmp_path / "loud.jsonl"), "--draws", "10", "--save",
                     "--results-dir", str(tmp_path / "results")]) == 2
    assert "5 run(s) were not measured quiet (5 recorded while the machine was busy" in capsys.readouterr().err
    assert not (tmp_path / "results").exists()


def test_the_exact_rank_test_gives_scipys_p_values_ties_included():
    from scipy.stats import mannwhitneyu

    from lmbench.ranks import p_greater

    rng = np.random.default_rng(0)
    for _ in range(300):
        x, y = (list(rng.integers(0, 6, size=rng.integers(1, 9)).astype(float)) for _ in range(2))  # many ties
        assert p_greater(x, y) == pytest.approx(mannwhitneyu(x, y, alternative="greater", method="exact").pvalue,
                                                rel=1e-12), (x, y)
    assert p_greater([6, 7, 8, 9, 10], [1, 2, 3, 4, 5]) == pytest.approx(1 / 252)  # every x above every y
    assert p_greater([1, 2, 3, 4, 5], [6, 7, 8, 9, 10]) == 1.0
