"""`lmbench ab`: side A's code really comes from the ref, interleaving, resume, verdicts.

The real A/B runs use the tiny preset (5 timed steps) to stay short."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from lmbench.regress.ab import REPO, Worktree, import_root, plan

TINY = """[defaults]
preset = "tiny"
# stream: one batch shape, so a side's run is 5 timed steps, 1 warm-up and one shape warmed
# up twice (sentence mode warms a shape per new sentence length: 3x the steps of side B's sleep)
mode = "stream"
steps = 5
warmup = 1
eval = "none"
repeats = 5
timeout = 600
# one thread: with two on a 2-core machine that other work shares, OpenMP's spinning
# barriers can make a run 50x slower at random, on either side
threads = 1

[[matrix]]
backend = "torch"
layout = "packed"
"""


def where_lmbench_comes_from(root: Path) -> list[str]:
    code = "import lmbench, lmbench.backends; print(lmbench.__file__); print(list(lmbench.backends.__path__)[0])"
    out = subprocess.run([sys.executable, "-c", code], cwd=root, env={**os.environ, "PYTHONPATH": str(root)},
                         capture_output=True, text=True, check=True).stdout.split()
    return [str(Path(p).resolve()) for p in out]


def test_side_a_imports_the_worktree_not_the_editable_install(tmp_path):
    tree = Worktree("HEAD", tmp_path)
    try:
        package, backends = where_lmbench_comes_from(import_root(tree.path, tmp_path / "root"))
        assert package == str((tree.path / "lmbench" / "__init__.py").resolve())
        assert backends == str((tree.path / "backends").resolve())  # pyproject's package-dir mapping
    finally:
        tree.remove()
    assert not tree.path.exists()
    assert str(tree.path) not in subprocess.run(["git", "-C", str(REPO), "worktree", "list"],
                                                capture_output=True, text=True).stdout


def test_interleaving_and_resume_plan():
    cells = [{"backend": "torch", "layout": "packed", "repeats": 3}, {"backend": "torch", "layout": "padded"}]
    order = [(side, c["layout"]) for side, c in plan(cells, None, Counter())]
    assert order == [("A", "packed"), ("B", "packed"), ("A", "padded"), ("B", "padded"),
                     ("B", "packed"), ("A", "packed"), ("A", "packed"), ("B", "packed")]
    from lmbench.regress.ab import cell_id
    done = Counter({("A", cell_id(cells[0])): 2, ("B", cell_id(cells[1])): 1})
    left = [(side, c["layout"]) for side, c in plan(cells, None, done)]
    assert left == [("B", "packed"), ("A", "padded"), ("B", "packed"), ("A", "packed"), ("B", "packed")]


def ab(tmp_path, *argv, **popen):
    suite = tmp_path / "tiny.toml"
    suite.write_text(TINY)
    cmd = [sys.executable, "-m", "lmbench", "ab", "--suite", str(suite), "--out", str(tmp_path / "ab.jsonl"),
           *map(str, argv)]
    return subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **popen)


def finish(proc, timeout):
    """The output of an `ab` process; on a timeout it is stopped the way a user would (SIGTERM:
    it takes its running child down) before the test fails."""
    try:
        return proc.communicate(timeout=timeout)[0]
    except subprocess.TimeoutExpired:
        proc.terminate()
        proc.communicate(timeout=120)
        raise


def records(tmp_path):
    path = tmp_path / "ab.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.mark.slow
def test_same_code_ab_passes_and_resumes_after_interruption(tmp_path):
    proc = ab(tmp_path, "--ref", "HEAD", "--repeats", "2")
    deadline = time.monotonic() + 600
    while not records(tmp_path) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    out = finish(proc, 120)
    assert proc.returncode == 130, out
    assert "--resume runs only what is missing" in out
    first = records(tmp_path)
    assert 1 <= len(first) < 4 and first[0]["ab_side"] == "A"
    assert "lmbench-ab-" not in subprocess.run(["git", "-C", str(REPO), "worktree", "list"], capture_output=True,
                                               text=True).stdout  # the temporary worktree is gone

    again = ab(tmp_path, "--ref", "HEAD", "--repeats", "2")
    out = finish(again, 120)
    assert again.returncode == 2 and "pass --resume to continue it" in out

    summary = tmp_path / "summary.md"
    proc = ab(tmp_path, "--ref", "HEAD", "--repeats", "2", "--resume", "--summary", summary)
    out = finish(proc, 1200)
    assert proc.returncode == 0, out
    assert f"{4 - len(first)} run(s) to do" in out
    rs = records(tmp_path)
    assert Counter(r["ab_side"] for r in rs) == {"A": 2, "B": 2} and all(r["status"] == "ok" for r in rs)
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    assert {r["git_commit"] for r in rs if r["ab_side"] == "A"} == {head.strip()}
    assert "side A: HEAD" in out and "torch 2." in out and "1 configuration(s) matched" in out
    assert summary.read_text().startswith("### lmbench ab: A = HEAD")


# Loaded by a side's interpreter (the wrapper below puts it on PYTHONPATH, which the worker
# inherits): every torch train step sleeps first, so that side's train steps really take longer.
SLOW_STEP = """import importlib.abc, importlib.util, sys, time


class SlowTrainStep(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name != "lmbench.backends.torch":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        load = spec.loader.exec_module

        def exec_module(module):
            load(module)
            step = module.Backend.train_step

            def slow_step(self, *args, **kwargs):
                time.sleep(%s)
                return step(self, *args, **kwargs)
            module.Backend.train_step = slow_step
        spec.loader.exec_module = exec_module
        return spec


sys.meta_path.insert(0, SlowTrainStep())
"""


@pytest.mark.slow
def test_side_b_with_slower_train_steps_is_a_regression(tmp_path):
    hook = tmp_path / "slow-step"
    hook.mkdir()
    # 1 s per step: 100x a tiny stream step (~10 ms on one thread), beyond what other work on
    # this shared machine made one take (up to ~0.5 s on one thread; ~1.3 s on two, whose
    # OpenMP barriers spin)
    (hook / "sitecustomize.py").write_text(SLOW_STEP % 1.0)
    slow_python = tmp_path / "python-slow-step"
    slow_python.write_text(f"#!/bin/sh\nPYTHONPATH=\"$PYTHONPATH:{hook}\" exec {sys.executable} \"$@\"\n")
    slow_python.chmod(0o755)
    proc = ab(tmp_path, "--python-b", slow_python)
    out = finish(proc, 3000)
    assert proc.returncode == 1, out
    assert "REGRESSION (runs slower" in out and "x5/5" in out
    sides = Counter((r["ab_side"], r["status"]) for r in records(tmp_path))
    assert sides == {("A", "ok"): 5, ("B", "ok"): 5}


@pytest.mark.slow
def test_failing_side_b_fails_the_verdict_unless_allowed(tmp_path):
    broken = tmp_path / "python-broken"
    broken.write_text("#!/bin/sh\necho 'ImportError: no module named torch' >&2\nexit 1\n")
    broken.chmod(0o755)
    proc = ab(tmp_path, "--python-b", broken, "--repeats", "1")
    out = finish(proc, 1200)
    assert proc.returncode == 1, out
    assert "FAILED in 1 run(s) (crash)" in out and "1 A configuration(s) missing or failed" in out
    proc = ab(tmp_path, "--python-b", broken, "--repeats", "1", "--resume", "--allow-missing")
    out = finish(proc, 1200)
    assert proc.returncode == 0, out
    assert "(allowed)" in out


def test_resuming_an_ab_of_another_machine_kind_is_refused_unless_forced():
    from lmbench import env
    from lmbench.regress.ab import check_machine
    from lmbench.results import ResultsError

    here = [{"ab_machine_key": env.machine_key()}]
    check_machine(here)  # same kind: fine
    other = [{"ab_machine_key": "intel-xeon-2cpu-f6m143s8-abcd"}]
    with pytest.raises(ResultsError, match="another machine kind \\(intel-xeon-2cpu-f6m143s8-abcd"):
        check_machine(other)
    check_machine(other, force=True)
    with pytest.raises(ResultsError, match="amd-epyc-2cpu;"):  # an older A/B file: its records' own key
        check_machine([{"cpu_model": "AMD EPYC", "cpu_count": 2}])
