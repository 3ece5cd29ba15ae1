"""`lmbench ab`: both sides of a comparison in one invocation, runs interleaved.

Numbers recorded on another day fold the machine's drift into a verdict; like
`asv continuous`, this runs side A and side B of every cell alternately (A B, then B A in
the next round, ...) so that drift and bursts of load hit both sides alike.

  --ref REF                 side A is lmbench at git REF (a temporary `git worktree`,
                            removed at the end whatever happens), side B the working tree
  --python-a/--python-b PY  the interpreter of each side (two venvs: e.g. two torch
                            versions with the same lmbench)

Each run is `PY -m lmbench bench` on a one-cell suite, with the side's own code first on
PYTHONPATH: an import root holding `lmbench/` (links to the side's lmbench/*.py plus
`backends/`, the layout pyproject.toml's package-dir installs as lmbench.backends), so
neither the editable install of this checkout nor the current directory can leak into
side A. Records are appended to --out as `bench` writes them, marked with `ab_side`;
--resume skips runs already recorded ok for the same sides. The verdict is
`lmbench compare`'s (A the baseline, B the candidate) and so are the exit codes.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from .. import env
from .compare import RULE, add_threshold_args, compare_records, print_table, write_summary
from ..results import ResultsError, label, load_records
from ..run.lifeline import owned_temp_dir, preexec_die_with_parent
from ..run.runner import SCHEMA_VERSION, append_record, signals_as_interrupt
from ..run.suite import SuiteError, load_suite, spec_for, suite_path

REPO = Path(__file__).resolve().parents[2]  # the checkout: lmbench/regress/ab.py


def import_root(code_dir: Path, where: Path) -> Path:
    """A directory that, first on PYTHONPATH, makes `lmbench` (and `lmbench.backends`) the code
    in code_dir: lmbench/ holds links to code_dir/lmbench/* and backends -> code_dir/backends."""
    pkg = where / "lmbench"
    pkg.mkdir(parents=True)
    for item in (code_dir / "lmbench").iterdir():
        if item.name not in ("backends", "__pycache__"):
            (pkg / item.name).symlink_to(item.resolve())
    (pkg / "backends").symlink_to((code_dir / "backends").resolve())
    return where


class Worktree:
    """`git worktree add --detach` of REF (of `repo`) in a temporary directory, removed on exit."""

    def __init__(self, ref: str, where: Path, repo: Path = REPO):
        self.path, self.repo = where / "worktree", repo
        # a worktree an earlier ab left when it was killed (-9): its directory is gone, git forgets it
        subprocess.run(["git", "-C", str(repo), "worktree", "prune"], capture_output=True)
        out = subprocess.run(["git", "-C", str(repo), "worktree", "add", "--detach", str(self.path), ref],
                             capture_output=True, text=True)
        if out.returncode != 0:
            raise ResultsError(f"--ref {ref}: cannot check it out ({out.stderr.strip()}); give a branch, tag "
                               f"or commit of {repo}")
        if not (self.path / "lmbench" / "__init__.py").is_file():
            self.remove()
            raise ResultsError(f"--ref {ref}: that commit holds no lmbench/ package (older than lmbench, or "
                               f"another project's): give a commit of lmbench")
        self.commit = subprocess.run(["git", "-C", str(self.path), "rev-parse", "HEAD"], capture_output=True,
                                     text=True).stdout.strip()

    def remove(self) -> None:
        subprocess.run(["git", "-C", str(self.repo), "worktree", "remove", "--force", str(self.path)],
                       capture_output=True)
        subprocess.run(["git", "-C", str(self.repo), "worktree", "prune"], capture_output=True)


def _toml_cell(cell: dict) -> str:
    """A one-run suite file for `cell` (JSON strings and numbers are valid TOML values)."""
    values = {**cell, "repeats": 1}
    return "[[matrix]]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items())


def _failed_record(cell: dict, side: str, error: str) -> dict:
    spec = spec_for(cell).for_this_machine()
    return {"schema_version": SCHEMA_VERSION, "run_id": f"ab-{time.time_ns()}", "backend": spec.backend,
            "layout": spec.layout, "config": spec.config.to_dict(), "threads": spec.threads,
            "utc_time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "run": spec.recorded(), "status": "failed", "error_kind": "crash",
            "error": error, "metrics": None, **env.host()}


class Side:
    def __init__(self, name: str, python: str, code_dir: Path, root: Path, source: str):
        self.name, self.python, self.code_dir, self.root, self.source = name, python, code_dir, root, source
        self.child = None

    def run(self, cell: dict, tmp: Path, data_dir=None) -> dict:
        """One run of `cell` by this side's lmbench and Python; the bench record (or a failed one)."""
        work = Path(tempfile.mkdtemp(prefix=f"side{self.name}-", dir=tmp))
        (work / "cell.toml").write_text(_toml_cell(cell))
        argv = [self.python, "-m", "lmbench", "bench", "--suite", str(work / "cell.toml"),
                "--results-dir", str(work / "results"), "--no-report"]
        if data_dir:
            argv += ["--data-dir", str(data_dir)]
        environ = {**os.environ, "PYTHONPATH": str(self.root)}
        with open(work / "log.txt", "wb") as log:
            # its own session (killed with its workers), ended by the kernel if ab dies (-9 too)
            self.child = subprocess.Popen(argv, cwd=self.root, env=environ, stdin=subprocess.DEVNULL,
                                          stdout=log, stderr=log, start_new_session=True,
                                          preexec_fn=preexec_die_with_parent(signal.SIGTERM))
            self.child.wait()
        files = sorted((work / "results").glob("*/*.jsonl"))
        records = load_records(files, warn=lambda m: None) if files else []
        if not records:
            tail = (work / "log.txt").read_text(errors="replace")[-1500:]
            return _failed_record(cell, self.name, f"side {self.name} ({self.source}) recorded no run "
                                                   f"(exit status {self.child.returncode}); last output:\n{tail}")
        record = records[-1]
        record.pop("_source", None)
        return record

    def kill(self) -> None:
        if self.child and self.child.poll() is None:
            try:
                os.killpg(self.child.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.child.wait()


def cell_id(cell: dict) -> str:
    """A cell's identity in the records, whatever its number of repeats."""
    return json.dumps({k: v for k, v in cell.items() if k != "repeats"}, sort_keys=True)


def plan(cells: list[dict], repeats: int | None, done: Counter) -> list[tuple[str, dict]]:
    """(side, cell) for every run still to do: round r runs every cell A then B (B then A in odd
    rounds, so neither side always goes first); `done` counts ok records per (side, cell)."""
    todo = []
    for round_ in range(max(repeats or c.get("repeats", 1) for c in cells)):
        for cell in cells:
            if round_ >= (repeats or cell.get("repeats", 1)):
                continue
            for side in ("AB" if round_ % 2 == 0 else "BA"):
                key = (side, cell_id(cell))
                if done[key] > 0:
                    done[key] -= 1
                else:
                    todo.append((side, cell))
    return todo


def _recorded(out: Path, sides: dict) -> tuple[list[dict], Counter]:
    if not out.exists():
        return [], Counter()
    records = load_records([out], warn=lambda m: print(m, file=sys.stderr))
    same = [r for r in records if r.get("ab_sources") == sides]
    done = Counter((r["ab_side"], r["ab_cell"]) for r in same if r["status"] == "ok")
    return same, done


def check_machine(previous: list[dict], force: bool = False) -> None:
    """An A/B resumed on another kind of machine would mix timings: refused unless force."""
    keys = sorted({r.get("ab_machine_key") or env.record_machine_key(r) for r in previous} - {env.machine_key()})
    if keys and not force:
        raise ResultsError(f"the runs already recorded come from another machine kind ({', '.join(keys)}; this "
                           f"is {env.machine_key()}): timings are not comparable. Start a new --out, or pass "
                           f"--force to mix them anyway")


def run_ab(suite="check", ref=None, python_a=None, python_b=None, out=None, resume=False, backends=(),
           repeats=None, data_dir=None, max_slowdown="10%", max_ppl_rise="2%", allow_missing=False,
           summary=None, say=lambda m: print(m, file=sys.stderr, flush=True), force=False) -> int:
    if not ref and not python_a and not python_b:
        raise ResultsError("nothing to compare: give --ref REF (lmbench at a git ref vs the working tree) "
                           "and/or --python-a/--python-b (two Python environments)")
    if repeats is not None and repeats < 1:
        raise ResultsError(f"--repeats {repeats}: give a positive number of runs per side (5 or more to test)")
    cells = load_suite(suite_path(suite))
    if backends:
        cells = [c for c in cells if c["backend"] in backends]
        if not cells:
            raise ResultsError(f"suite {suite} has no cell of backend(s) {', '.join(backends)}")
    # absolute (runs start elsewhere), not resolved: a venv's python is a symlink that must stay one
    python_a, python_b = (os.path.abspath(py or sys.executable) for py in (python_a, python_b))
    for py in (python_a, python_b):
        if not (Path(py).is_file() and os.access(py, os.X_OK)):
            raise ResultsError(f"{py}: not an executable Python interpreter (give e.g. /path/venv/bin/python)")
    out = Path(out or Path("results") / "ab" / f"{env.machine_key()}.jsonl")
    started = time.monotonic()
    with owned_temp_dir("lmbench-ab-") as tmp:  # a killed ab's (its worktree in it) is swept by the next
        tmp = Path(tmp)
        worktree = Worktree(ref, tmp) if ref else None
        try:
            code_a = worktree.path if worktree else REPO
            a = Side("A", python_a, code_a, import_root(code_a, tmp / "root-A"),
                     f"{ref} ({worktree.commit[:10]})" if worktree else "working tree")
            b = Side("B", python_b, REPO, import_root(REPO, tmp / "root-B"), "working tree")
            sides = {"A": {"code": a.source, "python": python_a}, "B": {"code": b.source, "python": python_b}}
            previous, done = _recorded(out, sides)
            if previous and not resume:
                raise ResultsError(f"{out} already holds {len(previous)} run(s) of this A/B: pass --resume to "
                                   f"continue it, or --out another file")
            check_machine(previous, force)
            todo = plan(cells, repeats, done)
            say(f"lmbench ab: A = {a.source} with {python_a}; B = {b.source} with {python_b}; "
                f"{len(todo)} run(s) to do, records go to {out}")
            return _run_and_compare(todo, {"A": a, "B": b}, sides, out, tmp, data_dir, say, started,
                                    dict(max_slowdown=max_slowdown, max_ppl_rise=max_ppl_rise,
                                         allow_missing=allow_missing), summary)
        finally:
            if worktree:
                worktree.remove()


def _run_and_compare(todo, sides_by_name, sides, out, tmp, data_dir, say, started, thresholds, summary):
    stop = signals_as_interrupt()  # SIGTERM and SIGHUP like Ctrl-C: the side stopped, the worktree removed
    stop.__enter__()
    side = None
    try:
        for i, (name, cell) in enumerate(todo, 1):
            side = sides_by_name[name]
            record = side.run(cell, tmp, data_dir)
            record.update(ab_side=name, ab_sources=sides, ab_cell=cell_id(cell), ab_machine_key=env.machine_key())
            append_record(out, record)
            metric = (f"{record['metrics']['train_words_per_sec']:,.0f} train words/s"
                      if record["status"] == "ok" else f"FAILED: {record['error'].splitlines()[0][:200]}")
            version = (record.get("environment") or {}).get("framework_version")
            say(f"[{i}/{len(todo)}] {name} {label(record)}{f' ({version})' if version else ''}: {metric}")
    except KeyboardInterrupt:
        if side:
            side.kill()
        say(f"interrupted: the runs finished so far are in {out}; the same command with --resume "
            f"runs only what is missing")
        return 130
    finally:
        stop.__exit__(None, None, None)
    records, _ = _recorded(out, sides)
    for name in "AB":
        versions = sorted({f"{(r.get('environment') or {}).get('framework')} "
                           f"{(r.get('environment') or {}).get('framework_version')}"
                           for r in records if r["ab_side"] == name and r["status"] == "ok"})
        say(f"side {name}: {sides[name]['code']}, {sides[name]['python']}: {', '.join(versions) or 'no ok run'}")
    say(f"wall time {time.monotonic() - started:.0f} s")
    base = [r for r in records if r["ab_side"] == "A"]
    cand = [r for r in records if r["ab_side"] == "B"]
    result = compare_records(base, cand, force=True, names=("A", "B"), **thresholds)
    print_table(result, lambda m: print(m, flush=True))
    if summary:
        write_summary(summary, result, f"lmbench ab: A = {sides['A']['code']} vs B = {sides['B']['code']}")
    return result["code"]


def cmd_ab(a) -> int:
    try:
        return run_ab(a.suite, a.ref, a.python_a, a.python_b, a.out, a.resume, a.backend or (), a.repeats,
                      a.data_dir, a.max_slowdown, a.max_ppl_rise, a.allow_missing, a.summary, force=a.force)
    except (ResultsError, SuiteError) as e:
        print(f"lmbench ab: error: {e}", file=sys.stderr)
        return 2


def add_parser(sub) -> None:
    import argparse

    p = sub.add_parser("ab", help="A/B: two code versions or two Python environments, runs interleaved; "
                       "exit 1 on a regression of B", formatter_class=argparse.RawDescriptionHelpFormatter,
                       description=__doc__.split("\n\n", 1)[1] + f"\nVerdict rule: {RULE}.")
    p.add_argument("--ref", help="side A: lmbench at this git ref (branch, tag, commit), e.g. origin/main")
    p.add_argument("--python-a", help="side A's Python (default: this one)")
    p.add_argument("--python-b", help="side B's Python (default: this one)")
    p.add_argument("--suite", default="check", help="a name in suites/ or a .toml file (default check)")
    p.add_argument("--backend", action="append", help="only this backend's cells (repeatable)")
    p.add_argument("--repeats", type=int, help="runs per side and cell (default: the suite's repeats)")
    p.add_argument("--out", help="records file (default results/ab/<machine>.jsonl)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted A/B in --out")
    p.add_argument("--data-dir", default=None)
    add_threshold_args(p)
    p.add_argument("--force", action="store_true", help="--resume runs recorded on another machine kind")
    p.set_defaults(func=cmd_ab)
