"""scripts/gpu-check.sh and its driver scripts/gpu_check.py, on a machine without a GPU: the
device check stops at once and says so, --dry-run prints the plan with an estimate per
cell, and the driver's budget guard -- what fits, what is left, the best layout for the
variants -- on records made here. No framework process runs: what the script does on a
GPU is shown by running it there (docs/gpu.md)."""
from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest

from lmbench import env
from lmbench.run.bench import has_gpu
from lmbench.run.suite import load_suite, suite_path
from records import record

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "gpu-check.sh"
BASH = shutil.which("bash")
_spec = importlib.util.spec_from_file_location("gpu_check", REPO / "scripts" / "gpu_check.py")
gc = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gc)


def script(*args, path=None, timeout=300):
    """Run gpu-check.sh with this test's Python (it imports this checkout's lmbench)."""
    env_ = {**os.environ, "LMBENCH_PYTHON": sys.executable}
    if path is not None:
        env_["PATH"] = path
    return subprocess.run([BASH, str(SCRIPT), *map(str, args)], capture_output=True, text=True,
                          env=env_, timeout=timeout, stdin=subprocess.DEVNULL)


@pytest.mark.skipif(has_gpu(), reason="this machine has a GPU")
def test_without_a_gpu_the_check_stops_at_once_saying_there_is_no_cuda_device(tmp_path):
    # a PATH with what the script uses but without nvidia-smi, whatever this machine has
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    for tool in ("date", "awk", "tee", "mkdir", "dirname", "git", "grep", "mktemp", "cat", "sed"):
        if shutil.which(tool):
            (bin_ / tool).symlink_to(shutil.which(tool))
    out = tmp_path / "out"
    proc = script(out, path=str(bin_))
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "no CUDA device: nvidia-smi is not installed here" in proc.stdout
    assert "--dry-run" in proc.stdout  # and how to see the plan instead
    assert "no CUDA device" in (out / "log.txt").read_text()  # the log says it too
    assert sorted(p.name for p in out.iterdir()) == ["log.txt"]  # nothing ran


def test_dry_run_prints_the_plan_with_an_estimate_per_cell_and_runs_nothing(tmp_path):
    out = tmp_path / "out"
    proc = script("--dry-run", out)
    text = proc.stdout
    assert proc.returncode == 0, text + proc.stderr
    assert sorted(p.name for p in out.iterdir()) == ["log.txt"]  # no results, no report
    for step in ("verify: torch and jax", "peak: float32 GEMM", "peak: bf16 GEMM", "lmbench report"):
        assert step in text, step
    assert [m.group(1) for m in re.finditer(r"^-- phase (\w)", text, re.M)] == ["A", "B", "C", "D"]
    # every first run of the suite's torch and jax cells is planned or listed as not fitting,
    # each with its estimate in seconds; phase A takes them in the suite's order
    cells = [gc.name(c) for c in load_suite(suite_path("gpu-quick"))]
    planned = re.findall(r"^ *(\d+)? +(\d+)  (\S+/\S+ .+?)$", text, re.M)
    first = [label for _, _, label in planned if "(run " not in label and " [" not in label]
    assert sorted(first) == sorted(cells) and len(cells) == 72
    phase_a = text.split("-- phase A")[1].split("-- phase B")[0]
    in_a = re.findall(r"^ +\d+ +\d+  (.+)$", phase_a, re.M)
    assert in_a and in_a == cells[:len(in_a)]
    assert all(int(est) > 0 for _, est, _ in planned)
    end = re.search(r"estimated end: (\d+) s of 480", text)
    assert end and int(end.group(1)) <= 480


def test_a_budget_too_small_for_the_report_is_refused(tmp_path):
    proc = script("--dry-run", "--budget", "30", tmp_path / "out")
    assert proc.returncode == 2  # the script's output (stdout and stderr) goes through its log
    assert "--budget 30: must be more than the 45 s kept for the report" in proc.stdout


def test_fit_keeps_the_order_or_passes_over_what_is_too_long():
    assert gc.fit(["a", "b", "c"], [5, 30, 5], 20) == (["a", "c"], ["b"])
    assert gc.fit(["a", "b", "c"], [5, 30, 5], 20, in_order=True) == (["a"], ["b", "c"])
    assert gc.fit(["a"], [5], 4) == ([], ["a"])


def _rec(backend, layout, words, preset="large", batch=128, status="ok", **run):
    r = record(backend=backend, layout=layout, words_per_sec=words, batch_size=batch, status=status)
    r["config"]["preset"] = preset
    r["run"].update(run)
    return r


def test_the_variants_run_on_each_frameworks_fastest_layout_at_the_large_end():
    records = [_rec("torch", "packed", 900), _rec("torch", "padded", 1200), _rec("torch", "padded", 1100),
               _rec("torch", "padded-gather", 5000, status="failed"),  # a failure is no speed
               _rec("torch", "packed", 9000, precision="bf16"),  # nor is a variant's
               _rec("torch", "padded-gather", 3000, preset="small", batch=20),  # the large end decides
               _rec("jax", "padded", 700, preset="small", batch=20)]  # jax measured at the small end only
    best = gc.best_for_variants(records)
    assert best == {"torch": "padded", "jax": "padded"}
    cells = load_suite(suite_path("gpu-quick"))
    first, second = gc.variant_cells(cells, best)
    assert [gc.name(c) for c in first] == [
        "torch/padded large sentence/random B=128 [bf16]", "jax/padded large sentence/random B=128 [bf16]",
        "torch/padded small sentence/random B=20 [compile]", "jax/padded small sentence/random B=20 [compile]"]
    assert [gc.name(c) for c in second] == [
        "torch/padded small sentence/random B=20 [bf16]", "jax/padded small sentence/random B=20 [bf16]",
        "torch/padded large sentence/random B=128 [compile]", "jax/padded large sentence/random B=128 [compile]"]
    skipped = {**_rec("jax", "padded", 1, preset="small", batch=20, compile=True), "status": "skipped",
               "reason": "jax: --compile adds nothing", "metrics": None}
    assert gc.declined([skipped] + records) == {("jax", "compile")}


def test_a_phase_suite_runs_exactly_its_cells_in_order_with_their_repeats(tmp_path):
    cells = load_suite(suite_path("gpu-quick"))[:3]
    variant = {**cells[2], "precision": "bf16", "repeats": 1}
    chosen = [{**cells[0], "repeats": 2}, {**cells[1], "repeats": 1}, variant]
    path = tmp_path / "phase.toml"
    path.write_text(gc.toml_suite(chosen))
    assert [(gc.ident(c), c["repeats"]) for c in load_suite(path)] == [(gc.ident(c), c["repeats"]) for c in chosen]


def _driver(tmp_path, monkeypatch, bench, clock):
    """A Driver whose bench calls are `bench(cells run, seconds)` and whose clock is `clock[0]`."""
    monkeypatch.setattr(gc, "time", types.SimpleNamespace(time=lambda: clock[0]))
    a = types.SimpleNamespace(out=tmp_path / "out", python=sys.executable, started_at=clock[0], budget=480.0,
                              device="cpu", suite="gpu-quick", data_dir=None, dry_run=False)
    driver = gc.Driver(a)

    def run_step(title, argv, cap, env_=None):
        cells = load_suite(argv[argv.index("--suite") + 1])
        runs = [c for c in cells for _ in range(c["repeats"])]
        ran, took = bench(runs)
        out = driver.machine_dir / f"{clock[0]}.jsonl"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("".join(json.dumps(_rec(c["backend"], c["layout"], 1000.0, preset=c["preset"],
                                                batch=c["batch_size"])) + "\n" for c in ran))
        clock[0] += took
        return 0, took

    monkeypatch.setattr(gc, "run_step", run_step)
    return driver


def test_what_the_deadline_stopped_comes_back_as_left_and_the_estimates_follow_the_runs(tmp_path, monkeypatch):
    cells = load_suite(suite_path("gpu-quick"))[:3]
    driver = _driver(tmp_path, monkeypatch, lambda runs: (runs[:1], 40.0), [1000.0])  # then the deadline
    shapes = lambda cell: (10, 1000.0)  # noqa: E731 -- every cell alike: 10 shapes
    left = driver.bench("A", [(c, 1) for c in cells], until=10_000, shapes=shapes)
    assert [gc.ident(c) for c, _ in left] == [gc.ident(c) for c in cells[1:]]
    assert [gc.record_ident(r) for r in driver.records] == [gc.ident(cells[0])]
    # the run estimated at e took 40 s: later estimates are scaled by 40 / e
    assert driver.factor() == pytest.approx(40.0 / gc.estimate_seconds(cells[0], 10, 1000.0))
    assert (tmp_path / "out" / "suites" / "phase-A1.toml").is_file()


def test_after_runs_twice_as_long_as_estimated_only_what_fits_at_that_rate_starts(tmp_path, monkeypatch):
    cell = load_suite(suite_path("gpu-quick"))[0]
    e = gc.estimate_seconds(cell, 10, 1000.0)
    driver = _driver(tmp_path, monkeypatch, lambda runs: (runs, 2 * e * len(runs)), [1000.0])
    items = [(cell, n) for n in range(1, 7)]
    # room for 10 runs as estimated: the first bench call takes gc.CHUNK = 4 of them, which
    # take 8 estimates' time; 2 estimates' time is left, so one run at the doubled rate
    until = 10 * e + 2 * gc.BENCH_OVERHEAD
    left = driver.bench("C", items, until=until, shapes=lambda c: (10, 1000.0))
    assert gc.CHUNK == 4 and len(driver.records) == 5 and left == items[5:]
    assert driver.factor() == pytest.approx(2.0)


def test_a_jax_sentence_cell_is_estimated_above_its_stream_twin_for_its_sentence_lengths(ptb_path):
    shapes = gc.Shapes(ptb_path.parent)
    sentence = {"backend": "jax", "layout": "padded", "preset": "small", "mode": "sentence", "batching": "random",
                "batch_size": 20, "steps": 60, "warmup": 10}
    stream = {**sentence, "mode": "stream"}
    (n_sentence, _), (n_stream, _) = shapes(sentence), shapes(stream)
    assert n_stream == 1 and n_sentence > 10  # XLA compiles once per shape
    assert gc.estimate_seconds(sentence, *shapes(sentence)) > gc.estimate_seconds(stream, *shapes(stream))
