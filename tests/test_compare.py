"""`lmbench compare`: exit 0 / 1 / 2, noise-aware; on fixtures and on real recorded runs."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
from records import record, slower

from lmbench.bench import _key as bench_key
from lmbench.cli import main as cli_main
from lmbench.compare import throughput_verdict
from lmbench.results import cell_key
from lmbench.runner import SCHEMA_VERSION
from lmbench.suite import load_suite, spec_for, suite_path

BASELINES = Path(__file__).resolve().parent.parent / "results" / "baselines"


def write(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(path)


def run(capsys, *argv):
    code = cli_main(["compare", *map(str, argv)])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_real_slowdown_is_a_regression(tmp_path, capsys):
    base = [record(seed=1), record(layout="padded", seed=2)]
    cand = [slower(base[0], 1.3, seed=3), slower(base[1], 1.01, seed=4)]
    code, out = run(capsys, write(tmp_path / "b.jsonl", base), write(tmp_path / "c.jsonl", cand))
    assert code == 1, out
    assert "2 configuration(s) matched" in out and "1 regression(s)" in out
    packed = next(line for line in out.splitlines() if "torch/packed" in line)
    assert "0.769" in packed and "REGRESSION" in packed  # 1 / 1.3
    padded = next(line for line in out.splitlines() if "torch/padded" in line)
    assert padded.endswith("ok")


def test_slowdown_with_heavy_tailed_noise_is_still_found():
    # step times as a loaded machine gives them: log-normal with occasional 3x stalls
    rng = np.random.default_rng(0)

    def noisy(scale, seed):
        r = record(seed=seed, n=40)
        s = rng.lognormal(np.log(100 * scale), 0.15, 40)
        s[rng.random(40) < 0.1] *= 3
        r["metrics"]["step_time_ms"]["samples"] = list(s)
        r["metrics"]["train_words_per_sec"] = 1000 / scale
        return r
    _, _, ratio, verdict = throughput_verdict([noisy(1, 1), noisy(1, 2)], [noisy(1.3, 3), noisy(1.3, 4)], 0.10)
    assert ratio == pytest.approx(1 / 1.3) and verdict.startswith("REGRESSION")


def test_noise_only_difference_is_not_flagged(tmp_path, capsys):
    # throughput 12% lower (past the 10% threshold) but the step times come from the same wide
    # distribution: Mann-Whitney finds no significant difference, so no regression
    base = [record(step_ms=100, spread=40, n=8, seed=5)]
    cand = [record(step_ms=100, spread=40, n=8, seed=6, words_per_sec=880)]
    code, out = run(capsys, write(tmp_path / "b.jsonl", base), write(tmp_path / "c.jsonl", cand))
    assert code == 0, out
    assert "noise (step times not significantly longer" in out and "0 regression(s)" in out


def test_small_significant_slowdown_under_the_threshold_passes(tmp_path, capsys):
    base = [record(seed=12, spread=1)]
    cand = [slower(base[0], 1.05, seed=13)]  # clearly slower, but within 10%
    code, out = run(capsys, write(tmp_path / "b.jsonl", base), write(tmp_path / "c.jsonl", cand))
    assert code == 0 and "0.952" in out
    code, out = run(capsys, tmp_path / "b.jsonl", tmp_path / "c.jsonl", "--max-slowdown", "3%")
    assert code == 1 and "REGRESSION" in out


def test_no_change_passes(tmp_path, capsys):
    base = [record(seed=7, valid_ppl=120.0)]
    code, out = run(capsys, write(tmp_path / "b.jsonl", base), write(tmp_path / "c.jsonl", base))
    assert code == 0 and "0 regression(s)" in out
    assert [line.split()[-1] for line in out.splitlines() if "words" in line or "ppl" in line] == ["ok"] * 3


def test_perplexity_rise_is_a_regression(tmp_path, capsys):
    base = [record(seed=8, valid_ppl=120.0)]
    cand = [record(seed=8, valid_ppl=125.0)]
    code, out = run(capsys, write(tmp_path / "b.jsonl", base), write(tmp_path / "c.jsonl", cand))
    assert code == 1
    assert "REGRESSION (+4.2%)" in next(line for line in out.splitlines() if "valid_ppl" in line)


def test_busier_machine_is_pointed_out(tmp_path, capsys):
    base = [record(seed=14, load_average=0.5)]
    cand = [record(seed=14, load_average=6.0)]
    code, out = run(capsys, write(tmp_path / "b.jsonl", base), write(tmp_path / "c.jsonl", cand))
    assert code == 0 and "load average 6.0 vs 0.5" in out


def test_unusable_input_exits_2(tmp_path, capsys):
    good = write(tmp_path / "good.jsonl", [record(seed=9)])
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
    code, out = run(capsys, a, b)
    assert code == 2 and "different machines" in out and "--force" in out
    code, out = run(capsys, a, b, "--force")
    assert code == 0


def test_corrupt_lines_are_named_and_skipped(tmp_path, capsys):
    path = tmp_path / "b.jsonl"
    path.write_text(json.dumps(record(seed=11)) + "\n{\"schema_version\": 1, \"trunc\n")
    code, out = run(capsys, path, path)
    assert code == 0
    assert f"{path}:2: skipped a corrupt or truncated record" in out


def _baseline_records():
    files = sorted(BASELINES.glob("*.jsonl"))
    if not files:
        pytest.skip("no committed baseline in results/baselines/ (make bench-check-baseline)")
    return files[0], [json.loads(line) for line in files[0].read_text().splitlines() if line.strip()]


def test_committed_baseline_matches_the_check_suite():
    """If the check suite changes, `make bench-check` would match nothing: refresh the baseline."""
    path, records = _baseline_records()
    keys = {cell_key(r) for r in records if r["status"] == "ok"}
    expected = {bench_key(spec_for(c, "auto")) for c in load_suite(suite_path("check"))}
    assert expected <= keys, f"{path} is stale: run `make bench-check-baseline` and commit it"


def test_real_runs_against_themselves_and_slowed(tmp_path, capsys):
    """Real step-time samples (the committed baseline's runs on this project's machine): the
    same runs pass; the same runs 30% slower, with the real noise pattern, regress."""
    path, records = _baseline_records()
    code, out = run(capsys, path, path)
    assert code == 0, out
    rng = np.random.default_rng(0)
    slowed = copy.deepcopy(records)
    for r in slowed:
        if r["status"] == "ok":
            s = np.asarray(r["metrics"]["step_time_ms"]["samples"])
            r["metrics"]["step_time_ms"]["samples"] = list(rng.permutation(s) * 1.3)
            r["metrics"]["train_words_per_sec"] /= 1.3
    code, out = run(capsys, path, write(tmp_path / "slow.jsonl", slowed))
    assert code == 1 and "REGRESSION" in out, out
