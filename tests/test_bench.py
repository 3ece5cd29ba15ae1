"""`lmbench bench`: suite files, failing cells that do not stop the rest, Ctrl-C and --resume.

Real child runs are few (each torch process costs ~20 s here): one diverging cell, a
cell killed by a 1-second timeout, and an interrupted 2-cell suite resumed.
"""
from __future__ import annotations

import dataclasses
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lmbench import env
from lmbench.run.bench import checkpoint_for, has_gpu, plan, run_suite
from lmbench.run.runner import run_isolated
from lmbench.run.suite import SuiteError, load_suite, spec_for, suite_path

REPO = Path(__file__).resolve().parent.parent
TINY = """
[defaults]
preset = "tiny"
steps = 3
warmup = 0
eval = "none"
"""


def suite(tmp_path, text, name="s.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def records_in(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def test_shipped_suites_load():
    cells = load_suite(suite_path("default"))
    pairs = {(c["backend"], c["layout"]) for c in cells}
    # native layouts and each framework's padded layout (tensorflow's native one is padded);
    # tensorflow's unrolled, its fastest stream layout, in stream mode only
    assert pairs == {("torch", "packed"), ("torch", "padded"), ("tensorflow", "padded"), ("paddle", "lod"),
                     ("paddle", "lod-padded"), ("paddle", "padded"), ("jax", "padded"), ("tensorflow", "unrolled")}
    sentence = [c for c in cells if c["mode"] == "sentence"]
    stream = [c for c in cells if c["mode"] == "stream"]
    assert len(sentence) == 14 and {c["batching"] for c in sentence} == {"random", "bucketed"}
    assert sorted((c["backend"], c["layout"]) for c in stream) == [
        ("jax", "padded"), ("paddle", "lod"), ("tensorflow", "padded"), ("tensorflow", "unrolled"), ("torch", "packed")]
    assert all(c["layout"] != "unrolled" for c in sentence)  # a trace per padded length: stream only
    assert all(c["eval"] == "valid" and "eval_batches" not in c for c in stream)  # the whole split
    assert all(c["eval"] == "none" and c["preset"] == "small" for c in sentence)
    gpu = load_suite(suite_path("gpu"))
    assert {c["preset"] for c in gpu} == {"medium", "large"}
    assert {c["batch_size"] for c in gpu if c["mode"] == "sentence"} == {20, 64, 128}
    check = load_suite(suite_path("check"))
    assert [(c["backend"], c["layout"], c["repeats"]) for c in check] == [("torch", "packed", 5), ("torch", "padded", 5)]


@pytest.mark.parametrize("text,needle", [
    ('[[matrix]]\nbackend = "mxnet"\n', "entry 1: unknown backend 'mxnet': available: jax, paddle, tensorflow, torch"),
    ('[[matrix]]\nbackend = "troch"\n', "unknown backend 'troch' (did you mean 'torch'?)"),
    ('[[matrix]]\nbackend = "torch"\nhiden = 3\n', "entry 1: unknown field 'hiden' (did you mean 'hidden'?): allowed:"),
    ('[[matrix]]\nbackend = "torch"\nmode = "sentense"\n', "entry 1: invalid mode='sentense': allowed: sentence, stream"),
    ('[[matrix]]\nbackend = "torch"\n[[matrix]]\nbackend = "torch"\nlayout = "lod"\n',
     "entry 2: backend 'torch' has no layout 'lod': allowed: native, packed, padded, padded-gather"),
    ('[[matrix]]\nbackend = "torch"\nsteps = 0\n', "entry 1: invalid steps=0: must be a positive integer"),
    ('[[matrix]]\nbackend = "torch"\nrepeats = "3"\n', "invalid repeats='3': must be a positive integer"),
    ('[[matrix]]\nbackend = "torch"\ntimeout = -1\n', "invalid timeout=-1: must be a positive number"),
    ('[[matrix]]\nbackend = "torch"\npreset = ["small", "huge"]\n', "unknown preset 'huge'"),
    ('[[matrix]]\nbackend = "torch"\nbatch_size = []\n', "batch_size is an empty list"),
    ('[[matrix]]\nbackend = "torch"\nsteps = 5\nepochs = 1\n', "give steps or epochs, not both"),
    ('[matrix\n', "not valid TOML"),
    ('[default]\nsteps = 3\n', "unknown top-level key(s) ['default']"),
    ('[defaults]\nsteps = 3\n', "no cells"),
])
def test_bad_suite_files_name_file_entry_and_problem(tmp_path, text, needle):
    path = suite(tmp_path, text)
    with pytest.raises(SuiteError) as e:
        load_suite(path)
    assert str(path) in str(e.value) and needle in str(e.value)


def test_unknown_suite_name_lists_the_known_ones():
    with pytest.raises(SuiteError, match="unknown suite 'nightly': known suites: check, default, gpu"):
        suite_path("nightly")


def test_matrix_expands_products_and_drops_duplicates(tmp_path):
    cells = load_suite(suite(tmp_path, """
[defaults]
steps = 5
[[matrix]]
backend = "tensorflow"
layout = ["native", "padded"]
batch_size = [20, 64]
"""))
    assert [(c["layout"], c["batch_size"]) for c in cells] == [("padded", 20), ("padded", 64)]


def test_plan_interleaves_repeats_and_skips_what_is_done(tmp_path):
    cells = load_suite(suite(tmp_path, TINY + '[[matrix]]\nbackend = "torch"\nlayout = ["packed", "padded"]\n'
                                              'repeats = 3\n'))
    order = [spec.layout for _, spec in plan(cells, "cpu", None, {})]
    assert order == ["packed", "padded"] * 3
    done = {spec_for(cells[0], "cpu").for_this_machine().identity(): 2}  # two ok packed records on disk: rounds 1 and 2
    assert [spec.layout for _, spec in plan(cells, "cpu", None, done)] == ["padded", "padded", "packed", "padded"]


@pytest.mark.skipif(has_gpu(), reason="this machine has a GPU")
def test_cuda_without_gpu_fails_before_any_cell(tmp_path):
    path = suite(tmp_path, TINY + '[[matrix]]\nbackend = "torch"\n')
    with pytest.raises(SuiteError, match="no NVIDIA GPU"):
        run_suite(str(path), device="cuda", results_dir=tmp_path / "results", report=False)
    assert not (tmp_path / "results").exists()


def test_failing_cells_are_recorded_and_the_rest_go_on(tmp_path):
    path = suite(tmp_path, TINY + """
[[matrix]]
backend = "torch"
layout = "packed"
timeout = 1          # killed long before torch is even imported
[[matrix]]
backend = "torch"
layout = "padded"
lr = 1e30            # diverges
clip = 1e30
init_scale = 50.0
""")
    results, said = tmp_path / "results", io.StringIO()
    assert run_suite(str(path), device="cpu", results_dir=results, out=said) == 1
    files = sorted(results.glob("*/*.jsonl"))
    assert len(files) == 1 and files[0].parent.name != "report"
    recs = records_in(files[0])
    assert [(r["layout"], r["status"], r["error_kind"]) for r in recs] == [
        ("packed", "failed", "timeout"), ("padded", "failed", "diverged")]
    assert "timed out after 1 s" in recs[0]["error"]
    assert "training loss became" in recs[1]["error"]
    assert all(r["suite"] == str(path) and r["machine_key"] == env.machine_key() for r in recs)
    md = (results / "report" / "report.md").read_text()  # the report still runs, listing them
    assert "0 ok, 2 failed" in md and "| torch/packed tiny sentence/random B=32 | timeout |" in md
    # the bench's clock around each run, and where the suite's time went (failed runs: all overhead)
    assert all(r["bench"]["run_seconds"] > 0 for r in recs) and "## Harness efficiency" in md
    assert "harness efficiency (2 run(s)" in said.getvalue() and "0% inside timed" in said.getvalue()


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def test_interrupted_suite_keeps_finished_runs_and_resume_runs_the_rest(tmp_path):
    path = suite(tmp_path, TINY + '[[matrix]]\nbackend = "torch"\nlayout = ["packed", "padded"]\n')
    results = tmp_path / "results"
    proc = subprocess.Popen([sys.executable, "-m", "lmbench", "bench", "--suite", str(path), "--device", "cpu",
                             "--results-dir", str(results), "--no-report"],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 400
    while not any(f.read_text().strip() for f in results.glob("*/*.jsonl")):
        assert proc.poll() is None and time.monotonic() < deadline, "the first run never got recorded"
        time.sleep(0.2)
    workers = []
    while not workers and time.monotonic() < deadline:  # the second cell's child process
        workers = _children(proc.pid)
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)  # Ctrl-C
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, out
    assert "interrupted: 1 of 2 run(s) finished" in out and "--resume" in out
    for w in workers:  # the run in flight was killed with the suite, not left running
        assert not Path(f"/proc/{w}").exists() or "Z" in Path(f"/proc/{w}/stat").read_text().split()[2]
    [first] = list(results.glob("*/*.jsonl"))
    assert [(r["layout"], r["status"]) for r in records_in(first)] == [("packed", "ok")]
    before = first.read_bytes()

    time.sleep(1.1)  # a new UTC-second timestamp: the resumed suite writes its own file
    assert run_suite(str(path), device="cpu", results_dir=results, resume=True) == 0
    files = sorted(results.glob("*/*.jsonl"))
    assert len(files) == 2 and files[0] == first  # records are never rewritten
    assert first.read_bytes() == before
    assert [(r["layout"], r["status"]) for r in records_in(files[1])] == [("padded", "ok")]
    md = (results / "report" / "report.md").read_text()  # the report covers the resumed runs too
    assert "2 run(s): 2 ok, 0 failed" in md
    # the GEMM peak was measured once for this machine, and the report divides by it
    assert "torch" in json.loads((files[1].parent / "peak.json").read_text())
    assert "Utilisation % of device ceiling = achieved model FLOP/s" in md
    assert all(os.path.getsize(f) > 0 for f in files)


def test_resume_continues_an_interrupted_training_cell_from_its_checkpoint(tmp_path):
    path = suite(tmp_path, TINY.replace("steps = 3", "epochs = 2\nepoch_batches = 3")
                 + '[[matrix]]\nbackend = "torch"\n')
    results = tmp_path / "results"
    [cell] = load_suite(path)
    spec = spec_for(cell, "cpu").for_this_machine()
    ckpt = checkpoint_for(results / env.machine_key(), spec, 0)
    # what an interrupted suite leaves behind: the cell's checkpoint after its first epoch
    first = run_isolated(dataclasses.replace(spec, epochs=1, checkpoint=str(ckpt)))
    assert first["status"] == "ok" and ckpt.is_file()
    assert run_suite(str(path), device="cpu", results_dir=results, resume=True, report=False) == 0
    [record] = records_in(next(results.glob("*/*.jsonl")))
    m = record["metrics"]
    assert record["status"] == "ok" and m["resumed_from_epoch"] == 1
    assert [e["epoch"] for e in m["epoch_log"]] == [1, 2]
    assert m["epoch_log"][0] == first["metrics"]["epoch_log"][0]  # epoch 1 came from the checkpoint
    assert not ckpt.exists()  # recorded: the checkpoint is gone


def test_a_deadline_already_passed_starts_no_run_and_lists_every_one(tmp_path):
    path = suite(tmp_path, TINY + '[[matrix]]\nbackend = "torch"\nlayout = ["packed", "padded"]\nrepeats = 2\n')
    out = tmp_path / "out.txt"
    with open(out, "w") as f:
        code = run_suite(str(path), device="cpu", results_dir=tmp_path / "results", report=False, out=f,
                         deadline=0)
    text = out.read_text()
    assert code == 0  # runs not started are listed, not failed
    assert not list((tmp_path / "results").glob("*/*.jsonl"))
    listed = [line for line in text.splitlines() if line.startswith("not started (--deadline): ")]
    assert [line.split(": ", 1)[1].split(" ")[0] for line in listed] == ["torch/packed", "torch/padded"] * 2
    assert "0 ok, 0 failed, 4 not started: the --deadline of 0 s had passed" in text


@pytest.mark.parametrize("bad", ["-1", "nan", "inf"])
def test_a_deadline_that_is_no_number_of_seconds_is_refused_before_any_run(tmp_path, capsys, bad):
    from lmbench.cli import main

    path = suite(tmp_path, TINY + '[[matrix]]\nbackend = "torch"\n')
    assert main(["bench", "--suite", str(path), "--device", "cpu", "--results-dir", str(tmp_path / "r"),
                 "--deadline", bad]) == 2
    assert f"invalid --deadline {float(bad)!r}: must be a number of seconds >= 0" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_a_run_still_going_at_the_deadline_is_stopped_and_the_rest_not_started(tmp_path, monkeypatch):
    import types

    import lmbench.run.bench as bench

    # the suite's clock: 0 when it begins and when the first run starts (1 s left: the worker
    # is killed long before torch is imported), then past the deadline for the second
    ticks = iter([0.0, 0.0, 5.0])
    monkeypatch.setattr(bench, "time", types.SimpleNamespace(monotonic=lambda: next(ticks), perf_counter=time.perf_counter))
    path = suite(tmp_path, TINY + '[[matrix]]\nbackend = "torch"\nlayout = ["packed", "padded"]\n')
    out = tmp_path / "out.txt"
    with open(out, "w") as f:
        code = run_suite(str(path), device="cpu", results_dir=tmp_path / "results", report=False, out=f,
                         deadline=1)
    [file] = (tmp_path / "results").glob("*/*.jsonl")
    [rec] = records_in(file)
    assert code == 1
    assert (rec["layout"], rec["status"], rec["error_kind"]) == ("packed", "failed", "deadline")
    assert rec["error"].startswith("stopped at the --deadline, 1 s after the suite began (the run had 1 s left")
    text = out.read_text()
    assert "not started (--deadline): torch/padded" in text and "0 ok, 1 failed, 1 not started" in text
