"""`lmbench history`: commits in git log order, spread per commit, regressions marked."""
from __future__ import annotations

import json

from records import record

from lmbench.cli import main as cli_main
from lmbench.regress.history import commit_order, history_section


def runs(words, commit, seed, **kw):
    out = []
    for i, w in enumerate(words):
        r = record(words_per_sec=w, step_ms=100 * 1000 / w, seed=seed + i, **kw)
        r["git_commit"] = commit
        out.append(r)
    return out


def write(path, records):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def test_history_orders_commits_and_marks_where_compare_fires(tmp_path, capsys):
    first, second, third = commit_order()[:3]  # this repository's oldest commits
    machine = tmp_path / "test-cpu-2cpu"  # the machine key of records.record()
    # written out of order, in separate files: the order must come from git log
    write(machine / "b.jsonl", runs([700, 710, 690, 705, 695], third, 20))  # 30% slower: fires
    write(machine / "a.jsonl", runs([1000, 1010, 990, 1005, 995], first, 0)
          + runs([980, 1020, 1000, 990, 1010], second, 10) + runs([600], "f" * 40, 30))
    write(tmp_path / "baselines" / "test-cpu-2cpu.jsonl", runs([1, 2, 3], first, 40))  # not a machine dir
    text, pngs = history_section(tmp_path)
    table = [line for line in text.splitlines() if line.startswith("| ")][1:]
    assert [line.split("|")[1].strip() for line in table] == [first[:10], second[:10], third[:10],
                                                           "ffffffffff (not in git log)"]
    assert [line.split("|")[2].strip() for line in table] == ["5", "5", "5", "1"]
    assert "| 1,000 | 990-1,010 |  |  |" in table[0]
    assert table[1].rstrip().endswith("|  |") and "**fired**" in table[2] and "**fired**" not in table[3]
    assert table[3].endswith("| 0.857 | 5/1 runs: no verdict; no calibrated noise band (`lmbench calibrate --save`) |")
    assert [p.name for p in pngs] == ["history-test-cpu-2cpu.png"]
    assert pngs[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and "(history-test-cpu-2cpu.png)" in text

    assert cli_main(["history", str(tmp_path)]) == 0
    assert (tmp_path / "report" / "history.md").read_text().startswith("## History")


def test_nothing_recorded_is_a_clear_error(tmp_path, capsys):
    assert history_section(tmp_path) is None
    assert cli_main(["history", str(tmp_path)]) == 2
    assert "no recorded runs under" in capsys.readouterr().err


def test_one_run_per_commit_shows_the_calibrated_noise_band_not_a_verdict(tmp_path):
    first, second, third, fourth = commit_order()[:4]
    machine = tmp_path / "test-cpu-2cpu"
    # one run per commit, the third 40% slower: the rule cannot fire on one run a side
    write(machine / "a.jsonl", runs([1000], first, 0) + runs([1020], second, 1) + runs([600], third, 2)
          + runs([4000], fourth, 3))
    (machine / "calibration.json").write_text(json.dumps({"spread_limit": 0.05, "cells": {
        "all": {"pair_band": [0.9, 1.1]}}}))
    text, _ = history_section(tmp_path)
    table = [line for line in text.splitlines() if line.startswith("| ")][1:]
    assert "fired" not in text.split("## History", 1)[1].split("\n\n", 2)[2]  # no commit marked
    assert table[1].endswith("| 1.020 | 1/1 runs: no verdict; inside the noise band 0.900-1.100 of one run vs another |")
    assert table[2].endswith("| 0.588 | 1/1 runs: no verdict; OUTSIDE the noise band 0.900-1.100 of one run vs another |")
    assert "OUTSIDE the noise band" in table[3]  # faster beyond the band is outside it too
