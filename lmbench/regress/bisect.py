"""`lmbench bisect --good REF --bad REF`: the first commit that made a suite slower.

What `asv find` and TorchBench's bisector do, with `lmbench ab`'s comparison at each step:
the commits between GOOD and BAD (`git rev-list --ancestry-path GOOD..BAD`, oldest first)
are searched by halving. A step checks a commit out in a temporary `git worktree` and
runs an interleaved A/B of the suite's cells against GOOD (A = GOOD, B = the commit, A B
then B A, ..., every run its own process on the side's code: lmbench.regress.ab's machinery); the
verdict is `lmbench compare`'s rule, and a regression (or a cell that fails at the
commit) marks the commit bad, anything else good. BAD itself is tested first: if it is
not slower than GOOD there is nothing to find. Each step's records go to
--out/<commit>.jsonl (--resume reuses them). About log2(N) + 1 steps of 2 x repeats runs
each: `--suite check --backend torch` (2 cells x 5 runs per side) is ~20 runs per step.

Exit 0: the first bad commit is named; 1: BAD is not slower than GOOD; 2: unusable input.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .. import env
from .ab import REPO, RULE, Side, Worktree, _recorded, _run_and_compare, import_root, plan
from .compare import MIN_RUNS, add_threshold_args
from ..results import ResultsError
from ..run.suite import SuiteError, load_suite, suite_path


def commits_between(good: str, bad: str, repo: Path = REPO) -> list[str]:
    """The commits after GOOD up to and including BAD that descend from GOOD, oldest first."""
    full = []
    for ref in (good, bad):
        out = subprocess.run(["git", "-C", str(repo), "rev-parse", "--verify", f"{ref}^{{commit}}"],
                             capture_output=True, text=True)
        if out.returncode != 0:
            raise ResultsError(f"{ref}: not a commit of {repo} ({out.stderr.strip()}); give a branch, tag or "
                               f"commit")
        full.append(out.stdout.strip())
    out = subprocess.run(["git", "-C", str(repo), "rev-list", "--reverse", "--ancestry-path",
                          f"{full[0]}..{full[1]}"], capture_output=True, text=True)
    commits = out.stdout.split()
    if out.returncode != 0 or not commits or commits[-1] != full[1]:
        raise ResultsError(f"--bad {bad} is not a descendant of --good {good}: nothing to bisect (give the "
                           f"older, good commit as --good)")
    return commits


class _Measured(Side):
    """A side whose runs come from `measure(side, cell)` instead of a process (tests)."""

    def __init__(self, measure, *args):
        super().__init__(*args)
        self.measure = measure

    def run(self, cell: dict, tmp: Path, data_dir=None) -> dict:
        return self.measure(self, cell)


def bisect(good: str, bad: str, suite="check", backends=(), repeats=None, python=None, out=None, resume=False,
           data_dir=None, max_slowdown="10%", max_ppl_rise="2%", allow_missing=False, summary=None, repo: Path = REPO,
           measure=None, say=lambda m: print(m, file=sys.stderr, flush=True), print_=print) -> int:
    """Binary search for the first commit slower than GOOD; 0 once named, 1 if BAD is not slower.
    `measure(side, cell) -> record` replaces the benchmark process (a test's synthetic timings)."""
    if repeats is not None and repeats < 1:
        raise ResultsError(f"--repeats {repeats}: give a positive number of runs per side ({MIN_RUNS} or more to "
                           f"test)")
    cells = load_suite(suite_path(suite))
    if backends:
        cells = [c for c in cells if c["backend"] in backends]
        if not cells:
            raise ResultsError(f"suite {suite} has no cell of backend(s) {', '.join(backends)}")
    runs = min(repeats or c.get("repeats", 1) for c in cells)
    if runs < MIN_RUNS:
        say(f"warning: {runs} run(s) per side cannot reach p < 0.01 ({MIN_RUNS} needed): every step will read as "
            f"good; give --repeats {MIN_RUNS}")
    python = os.path.abspath(python or sys.executable)
    commits = commits_between(good, bad, repo)
    out_dir = Path(out or Path("results") / "bisect" / f"{env.machine_key()}-{commits[0][:10]}-{commits[-1][:10]}")
    out_dir.mkdir(parents=True, exist_ok=True)
    thresholds = dict(max_slowdown=max_slowdown, max_ppl_rise=max_ppl_rise, allow_missing=allow_missing)
    started = time.monotonic()
    say(f"lmbench bisect: {len(commits)} commit(s) after {good} up to {bad}; each step an A/B of suite {suite} "
        f"against {good}; records in {out_dir}")
    with tempfile.TemporaryDirectory(prefix="lmbench-bisect-") as tmp:
        tmp = Path(tmp)
        good_tree = Worktree(good, tmp / "good", repo)
        try:
            side_a = _side("A", f"{good} ({good_tree.commit[:10]})", good_tree.path, python, tmp / "root-good",
                           measure)
            verdicts: dict[str, bool] = {}

            def is_bad(index: int, step: int) -> bool:
                commit = commits[index]
                tree = Worktree(commit, tmp / f"step-{step}", repo)
                try:
                    side_b = _side("B", commit[:10], tree.path, python, tmp / f"root-{step}", measure)
                    sides = {"A": {"code": side_a.source, "python": python}, "B": {"code": side_b.source,
                                                                                   "python": python}}
                    records = out_dir / f"{commit[:10]}.jsonl"
                    previous, done = _recorded(records, sides)
                    if previous and not resume:
                        raise ResultsError(f"{records} already holds {len(previous)} run(s) of this step: pass "
                                           f"--resume to reuse them, or --out another directory")
                    say(f"step {step}: {commit[:10]} ({_subject(commit, repo)}) vs {good}")
                    code = _run_and_compare(plan(cells, repeats, done), {"A": side_a, "B": side_b}, sides, records,
                                            tmp, data_dir, say, time.monotonic(), thresholds, summary)
                finally:
                    tree.remove()
                if code == 130:
                    raise KeyboardInterrupt
                verdicts[commit] = code != 0
                print_(f"step {step}: {commit[:10]} is {'BAD (slower than ' + good + ')' if code else 'good'}")
                return code != 0

            step = 1
            if not is_bad(len(commits) - 1, step):
                print_(f"lmbench bisect: {bad} is not slower than {good} by compare's rule: no regression to find")
                return 1
            lo, hi = -1, len(commits) - 1  # commits[lo] (or GOOD itself) good, commits[hi] bad
            while hi - lo > 1:
                step += 1
                mid = (lo + hi) // 2
                if is_bad(mid, step):
                    hi = mid
                else:
                    lo = mid
        except KeyboardInterrupt:
            say(f"interrupted: the steps' runs so far are in {out_dir}; the same command with --resume reuses them")
            return 130
        finally:
            good_tree.remove()
    first = commits[hi]
    print_(f"first bad commit: {first} {_subject(first, repo)} ({step} step(s), "
           f"{time.monotonic() - started:.0f} s)")
    return 0


def _side(name, source, code_dir, python, root, measure) -> Side:
    if measure is not None:
        return _Measured(measure, name, python, code_dir, root, source)
    return Side(name, python, code_dir, import_root(code_dir, root), source)


def _subject(commit: str, repo: Path) -> str:
    out = subprocess.run(["git", "-C", str(repo), "log", "-1", "--format=%s", commit], capture_output=True, text=True)
    return out.stdout.strip()[:72]


def cmd_bisect(a) -> int:
    try:
        return bisect(a.good, a.bad, a.suite, a.backend or (), a.repeats, a.python, a.out, a.resume, a.data_dir,
                      a.max_slowdown, a.max_ppl_rise, a.allow_missing, a.summary)
    except (ResultsError, SuiteError) as e:
        print(f"lmbench bisect: error: {e}", file=sys.stderr)
        return 2


def add_parser(sub) -> None:
    import argparse

    p = sub.add_parser("bisect", help="binary search for the first commit slower than a good one (an A/B per step)",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description=__doc__.split("\n\n", 1)[1] + f"\nVerdict rule: {RULE}.")
    p.add_argument("--good", required=True, help="a commit (branch, tag) known to be fast")
    p.add_argument("--bad", required=True, help="a later commit known to be slower")
    p.add_argument("--suite", default="check", help="a name in suites/ or a .toml file (default check)")
    p.add_argument("--backend", action="append", help="only this backend's cells (repeatable)")
    p.add_argument("--repeats", type=int, help="runs per side and cell (default: the suite's repeats)")
    p.add_argument("--python", help="the interpreter of both sides (default: this one)")
    p.add_argument("--out", help="directory for each step's records (default results/bisect/<machine>-<good>-<bad>)")
    p.add_argument("--resume", action="store_true", help="reuse the runs of an interrupted bisect in --out")
    p.add_argument("--data-dir", default=None)
    add_threshold_args(p)
    p.set_defaults(func=cmd_bisect)
