"""`lmbench compare`: exit 0 / 1 / 2, noise-aware."""
from __future__ import annotations

import json

from records import record, slower

from lmbench.cli import main as cli_main
from lmbench.runner import SCHEMA_VERSION


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
    assert "REGRESSION" in out and "2 run(s) matched" in out and "1 regression(s)" in out
    packed = next(line for line in out.splitlines() if "torch/packed" in line)
    assert "0.769" in packed  # 1 / 1.3


def test_noise_only_difference_is_not_flagged(tmp_path, capsys):
    # throughput 12% lower (past the 10% threshold) but step times drawn from the same wide
    # distribution: Mann-Whitney finds no significant difference
    base = [record(step_ms=100, spread=40, n=8, seed=5)]
    cand = [record(step_ms=100, spread=40, n=8, seed=6, words_per_sec=880)]
    code, out = run(capsys, write(tmp_path / "b.jsonl", base), write(tmp_path / "c.jsonl", cand))
    assert code == 0, out
    assert "noise" in out and "0 regression(s)" in out


def test_no_change_passes(tmp_path, capsys):
    base = [record(seed=7)]
    code, out = run(capsys, write(tmp_path / "b.jsonl", base), write(tmp_path / "c.jsonl", base))
    assert code == 0 and "ok" in out


def test_perplexity_rise_is_a_regression(tmp_path, capsys):
    base = [record(seed=8, valid_ppl=120.0)]
    cand = [record(seed=8, valid_ppl=125.0)]
    code, out = run(capsys, write(tmp_path / "b.jsonl", base), write(tmp_path / "c.jsonl", cand))
    assert code == 1 and "valid_ppl" in out


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
    assert code == 2 and "no run in" in out and "matches" in out
    (tmp_path / "empty").mkdir()
    code, out = run(capsys, good, tmp_path / "empty")
    assert code == 2 and "no .jsonl results" in out


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
