"""`lmbench bisect`: halving the commits between a good and a bad one, an A/B per step, on a
temporary git repository whose commit 5 makes the (synthetic) runs 30% slower."""
from __future__ import annotations

import itertools
import subprocess
from pathlib import Path

import pytest
from records import record

from lmbench.regress.bisect import bisect, commits_between
from lmbench.cli import main as cli_main
from lmbench.results import ResultsError

SUITE = """[defaults]
preset = "tiny"
steps = 5
repeats = 5

[[matrix]]
backend = "torch"
layout = "packed"
"""


def git(repo, *argv):
    return subprocess.run(["git", "-C", str(repo), *argv], capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture
def history(tmp_path):
    """A repository of 9 commits: speed.txt says 1000 words/s up to commit 4, 700 from commit 5."""
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    git(repo, "config", "user.email", "t@example.com")
    git(repo, "config", "user.name", "t")
    shas = []
    # each commit is an lmbench checkout as far as ab's Worktree checks (it refuses a ref without lmbench/)
    (repo / "lmbench").mkdir()
    (repo / "lmbench" / "__init__.py").write_text("")
    for i in range(9):
        (repo / "speed.txt").write_text("700" if i >= 5 else "1000")
        (repo / "notes.txt").write_text(f"change {i}\n")
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", f"change {i}")
        shas.append(git(repo, "rev-parse", "HEAD"))
    (tmp_path / "suite.toml").write_text(SUITE)
    return repo, shas


def synthetic(calls):
    jitter = itertools.cycle([-2, 1, 0, 2, -1])

    def measure(side, cell):
        words = float((Path(side.code_dir) / "speed.txt").read_text()) * (1 + 0.01 * next(jitter))
        calls.append((side.name, Path(side.code_dir).name, words))
        r = record(words_per_sec=words, step_ms=100 * 1000 / words, seed=len(calls))
        r["git_commit"] = git(side.code_dir, "rev-parse", "HEAD")
        return r
    return measure


def test_bisect_names_the_commit_that_made_the_runs_slower(history, tmp_path, capsys):
    repo, shas = history
    calls = []
    code = bisect(shas[0], shas[-1], suite=str(tmp_path / "suite.toml"), repo=repo, out=tmp_path / "out",
                  measure=synthetic(calls), say=lambda m: None)
    out = capsys.readouterr().out
    assert code == 0, out
    assert f"first bad commit: {shas[5]} change 5" in out
    steps = [line for line in out.splitlines() if line.startswith("step ")]
    # BAD first, then halving the 8 commits after GOOD: 4 (good), 6 (bad), 5 (bad)
    assert steps == [f"step 1: {shas[8][:10]} is BAD (slower than {shas[0]})", f"step 2: {shas[4][:10]} is good",
                     f"step 3: {shas[6][:10]} is BAD (slower than {shas[0]})",
                     f"step 4: {shas[5][:10]} is BAD (slower than {shas[0]})"]
    assert "REGRESSION (runs slower, p=0.004)" in out  # compare's rule on each step's A/B
    # interleaved, A against the good commit every time: A B, B A, ... 5 runs per side
    assert [c[0] for c in calls[:10]] == list("ABBAABBAAB") and len(calls) == 4 * 10
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(f"{shas[i][:10]}.jsonl" for i in (4, 5, 6, 8))
    assert "lmbench-bisect-" not in git(repo, "worktree", "list")  # every step's worktree removed


def test_bisect_stops_when_bad_is_not_slower(history, tmp_path, capsys):
    repo, shas = history
    code = bisect(shas[0], shas[4], suite=str(tmp_path / "suite.toml"), repo=repo, out=tmp_path / "out",
                  measure=synthetic([]), say=lambda m: None)
    assert code == 1
    assert f"{shas[4]} is not slower than {shas[0]}" in capsys.readouterr().out


def test_bisect_refuses_refs_that_are_not_good_then_bad(history, tmp_path):
    repo, shas = history
    with pytest.raises(ResultsError, match="is not a descendant of --good"):
        commits_between(shas[5], shas[2], repo)
    with pytest.raises(ResultsError, match="nosuchref: not a commit of"):
        commits_between("nosuchref", shas[2], repo)
    assert commits_between(shas[2], shas[5], repo) == shas[3:6]


def test_bisect_command_line_errors_exit_2(capsys):
    assert cli_main(["bisect", "--good", "nosuchref", "--bad", "HEAD"]) == 2
    assert "nosuchref: not a commit of" in capsys.readouterr().err
