"""Faults lose nothing, leave nothing behind, claim nothing that did not happen (issue 23).

The same manner as tests/test_faults.py (whose helpers these use): every test injects one
fault -- a parent killed at the wrong moment, a signal, a full disk, a hostile number or
record -- and asserts what is left, what is said and the exit status.
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from lmbench.run import runner
from lmbench.config import ConfigError, make_config
from lmbench.runspec import RunSpec, run_spec
from lmbench.run.lifeline import OWNER_FILE, sweep_orphans
from test_faults import REPO, TINY_RUN, Lmbench, alive, fill, tmpfs, wait_for  # noqa: F401 (tmpfs: a fixture)


def tiny_spec(**kw):
    return run_spec(make_config("tiny"), "torch", steps=5, warmup=1, eval="none", **kw)


def _kill(pids) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _descendants(pid: int) -> list[int]:
    from lmbench.run.launch import _descendants as found

    return found([pid])


# ---------------------------------------------------------------- 1. nothing blocks after a kill -9

def test_a_worker_whose_parent_died_before_it_opened_the_progress_fifo_exits(tmp_path):
    """The parent is killed right after starting the worker: nobody will ever read the FIFO,
    and a blocking open of its writing end would wait forever."""
    temp = tmp_path / "lmbench-run-early"
    temp.mkdir()
    spec, result, fifo = temp / "spec.json", temp / "result.json", temp / "progress"
    spec.write_text(json.dumps(tiny_spec().to_dict()))
    os.mkfifo(fifo)
    parent = textwrap.dedent(f"""
        import os, signal, subprocess, sys
        worker = subprocess.Popen([sys.executable, "-m", "lmbench.run.worker", {str(spec)!r}, {str(result)!r},
                                   {str(fifo)!r}], env={{**os.environ, "LMBENCH_PARENT_PID": str(os.getpid())}},
                                  stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  start_new_session=True)
        print(worker.pid, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)  # before the worker got anywhere
    """)
    proc = subprocess.run([sys.executable, "-c", parent], cwd=REPO, capture_output=True, text=True, timeout=60)
    worker = int(proc.stdout)
    try:
        wait_for(lambda: not alive(worker), 30, "the orphaned worker to exit")
    finally:
        _kill([worker])
    assert not temp.exists() and not result.exists()


def test_a_progress_fifo_without_reader_does_not_block_the_open(tmp_path):
    temp = tmp_path / "lmbench-run-noreader"
    temp.mkdir()
    os.mkfifo(temp / "progress")
    code = textwrap.dedent(f"""
        from lmbench.run.lifeline import open_progress
        open_progress({str(temp / "progress")!r}, {str(temp)!r})
    """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, timeout=60)
    assert proc.returncode == 3 and not temp.exists()


def test_a_progress_fifo_with_a_reader_opens_blocking(tmp_path):
    fifo = tmp_path / "progress"
    os.mkfifo(fifo)
    read_fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        from lmbench.run.lifeline import open_progress

        fd = open_progress(fifo)
        assert os.get_blocking(fd)  # a full pipe slows the worker, it never drops a line
        os.write(fd, b"x\n")
        assert os.read(read_fd, 10) == b"x\n"
        os.close(fd)
    finally:
        os.close(read_fd)


def test_a_launcher_dies_with_its_parent():
    from lmbench.run.lifeline import preexec_die_with_parent

    parent = textwrap.dedent("""
        import os, signal, subprocess, sys
        from lmbench.run.lifeline import preexec_die_with_parent
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"],
                                 preexec_fn=preexec_die_with_parent(), stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL, start_new_session=True)
        print(child.pid, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", parent], cwd=REPO, capture_output=True, text=True, timeout=60)
    launcher = int(proc.stdout)
    try:
        wait_for(lambda: not alive(launcher), 10, "the launcher to die with its parent")
    finally:
        _kill([launcher])
    assert callable(preexec_die_with_parent())


@pytest.mark.slow
def test_kill_9_of_run_with_two_workers_before_they_start_leaves_nothing(tmp_path):
    """torchrun, killed with nothing watching it, waited forever and so did its workers."""
    run = Lmbench(tmp_path, "run", "--backend", "torch", "--preset", "tiny", "--workers", "2", "--threads", "2",
                  "--steps", "3", "--warmup", "0", "--eval", "none", "--quiet")
    launcher = run.worker(marker="torch.distributed.run")
    os.kill(run.proc.pid, signal.SIGKILL)
    run.finish()
    seen = [launcher]
    try:
        def gone():
            seen.extend(p for p in _descendants(launcher) if p not in seen)
            return not any(alive(p) for p in seen)
        wait_for(gone, 30, "the launcher and its workers to exit")
    finally:
        _kill(seen)
    # no worker lived to remove the temp dir: the next lmbench that starts a run does
    sweep_orphans("lmbench-run-", run.tmpdir)
    assert not run.temp_dirs()


def test_temp_dirs_of_dead_owners_are_swept_and_live_ones_kept(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    mine, orphan, foreign = (tmp_path / f"lmbench-run-{n}" for n in ("mine", "orphan", "foreign"))
    for d, owner in ((mine, os.getpid()), (orphan, int(dead.stdout)), (foreign, None)):
        d.mkdir()
        if owner:
            (d / OWNER_FILE).write_text(str(owner))
    assert sweep_orphans("lmbench-run-", tmp_path) == [orphan]
    assert mine.is_dir() and foreign.is_dir() and not orphan.exists()


# ---------------------------------------------------------------- 3. nohup is kept

def test_an_inherited_ignored_sighup_stays_ignored_and_sigterm_still_interrupts():
    before = signal.signal(signal.SIGHUP, signal.SIG_IGN)  # what nohup hands on
    try:
        with runner.signals_as_interrupt():
            assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
            with pytest.raises(KeyboardInterrupt, match="SIGTERM"):
                signal.raise_signal(signal.SIGTERM)
        assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, before)


@pytest.mark.slow
def test_bench_under_nohup_survives_a_hangup(tmp_path):
    suite = tmp_path / "s.toml"
    suite.write_text('[[matrix]]\nbackend = "torch"\npreset = "tiny"\nsteps = 3\nwarmup = 0\neval = "none"\n')
    before = signal.signal(signal.SIGHUP, signal.SIG_IGN)  # inherited through exec, as nohup does it
    try:
        run = Lmbench(tmp_path, "bench", "--suite", str(suite), "--device", "cpu", "--no-report",
                      "--results-dir", str(tmp_path / "results"))
    finally:
        signal.signal(signal.SIGHUP, before)
    run.worker()
    run.proc.send_signal(signal.SIGHUP)
    assert run.finish(timeout=300) == 0, run.stderr
    assert "1 ok, 0 failed" in run.stderr


# ---------------------------------------------------------------- 4. a failed run never decides the machine

def test_a_timed_out_run_in_the_candidate_is_a_failed_cell_not_another_machine(tmp_path, capsys):
    from records import record

    from lmbench.cli import main as cli_main

    base, cand = tmp_path / "base.jsonl", tmp_path / "cand.jsonl"
    for i in range(5):
        runner.append_record(base, record(seed=i))
        runner.append_record(base, record(layout="padded", seed=i))
        runner.append_record(cand, record(seed=10 + i))
    timed_out = record(layout="padded", status="failed") | {
        "error": "timed out after 60 s; the worker was killed", "error_kind": "timeout", "environment": None}
    del timed_out["device"]  # the worker never got to say
    runner.append_record(cand, timed_out)
    code = cli_main(["compare", str(base), str(cand)])
    out = capsys.readouterr().out
    assert code == 1, out
    assert "FAILED in 1 run(s) (timeout): timed out after 60 s" in out and "different machines" not in out


# ---------------------------------------------------------------- 5. --resume outside a git checkout

def test_resume_outside_a_git_checkout_skips_what_this_lmbench_version_recorded(tmp_path, monkeypatch):
    from records import record

    import lmbench
    from lmbench import env
    from lmbench.run import bench
    from lmbench.run.suite import load_suite, spec_for

    suite = tmp_path / "s.toml"
    suite.write_text('[[matrix]]\nbackend = "torch"\npreset = "tiny"\nsteps = 3\nwarmup = 0\neval = "none"\n'
                     'repeats = 3\n')
    cells = load_suite(suite)
    spec = spec_for(cells[0], "cpu").for_this_machine()
    machine_dir = tmp_path / "results" / env.machine_key()

    def made_by(version, commit=None):
        r = record() | {"backend": spec.backend, "layout": spec.layout, "config": spec.config.to_dict(),
                        "run": spec.recorded(), "threads": spec.threads,
                        "git_commit": commit, "git_dirty": None, "lmbench_version": version}
        runner.append_record(machine_dir / "earlier.jsonl", r)

    made_by(lmbench.__version__)  # `pip install .`: no commit known
    made_by("0.0.1")  # another release: must run again
    made_by(lmbench.__version__, commit="f" * 40)  # a git checkout's: not this code
    done, _ = bench._already_done(machine_dir, None, warn=pytest.fail)
    assert len(bench.plan(cells, "cpu", None, done)) == 2  # 3 repeats, 1 already recorded
    # the record itself names the version, so that the next --resume can find it
    fake = tmp_path / "python"
    fake.write_text(f"#!{sys.executable}\nimport sys\nsys.exit(1)\n")
    fake.chmod(0o755)
    monkeypatch.setattr(env, "git_state", lambda path=None: (None, None))
    assert runner.run_isolated(spec, python=str(fake))["lmbench_version"] == lmbench.__version__


# ---------------------------------------------------------------- 8. tracebacks

WRONG_TYPES = [
    ("environment", "str", "environment is 'str', not a table"),
    ("run.workers", "two", "run.workers is 'two', not an integer"),
    ("git_commit", 5, "git_commit is 5, not a string"),
    ("metrics.steps", "x", "metrics.steps is 'x', not an integer"),
    ("metrics.step_time_ms", [1], "metrics.step_time_ms is [1], not a table"),
    ("metrics.step_time_ms.median", "fast", "metrics.step_time_ms.median is 'fast', not a number"),
    ("config.batch_size", 2.5, "config.batch_size is 2.5, not an integer"),
    ("run.compile", 1, "run.compile is 1, not true or false"),
    ("cpu_count", "2", "cpu_count is '2', not an integer"),
    ("metrics.epoch_log", [{"epoch": "one"}], "metrics.epoch_log holds an entry that is not a table of numbers"),
]


def _with(record: dict, dotted: str, value) -> dict:
    table = record
    *parents, name = dotted.split(".")
    for part in parents:
        table = table[part]
    table[name] = value
    return record


@pytest.mark.parametrize("field,value,why", WRONG_TYPES)
def test_a_record_with_a_wrong_typed_field_is_skipped_with_file_and_line(tmp_path, field, value, why):
    from records import record

    from lmbench.results import load_records

    path = tmp_path / "r.jsonl"
    runner.append_record(path, record(seed=0))
    runner.append_record(path, _with(record(seed=1), field, value))
    warnings = []
    assert [r["run_id"] for r in load_records([path], warn=warnings.append)] == ["id0"]
    assert warnings == [f"warning: {path}:2: skipped an incomplete record ({why})"]


def _machine_results(tmp_path, bad: dict) -> Path:
    """A results dir as bench files it: one machine, five good runs and one bad record."""
    from records import record

    from lmbench.run.peak import record_machine_key

    results = tmp_path / "results"
    path = results / record_machine_key(record()) / "runs.jsonl"
    for i in range(5):
        runner.append_record(path, record(seed=i))
    runner.append_record(path, bad)
    return results


@pytest.mark.parametrize("field,value,why", WRONG_TYPES[:4])
@pytest.mark.parametrize("command", ["report", "history", "compare", "calibrate"])
def test_readers_skip_wrong_typed_records_instead_of_crashing(tmp_path, capsys, command, field, value, why):
    from records import record

    from lmbench.cli import main as cli_main

    results = _machine_results(tmp_path, _with(record(seed=9), field, value))
    argv = {"report": ["report", str(results), "--out", str(tmp_path / "report")],
            "history": ["history", str(results), "--out", str(tmp_path / "report")],
            "compare": ["compare", str(results), str(results)],
            "calibrate": ["calibrate", str(results), "--runs", "2", "--draws", "5"]}[command]
    code = cli_main(argv)
    err = capsys.readouterr().err
    assert code == 0, err
    assert f"runs.jsonl:6: skipped an incomplete record ({why})" in err


def test_a_failed_atomic_write_leaves_the_old_file_and_no_temp_file(tmpfs):
    from lmbench.files import write_atomic

    full = tmpfs("64k")
    path = full / "peak.json"
    write_atomic(path, "old\n")
    assert oct(path.stat().st_mode & 0o777) == oct(0o666 & ~_umask())
    fill(full)
    with pytest.raises(OSError, match="nothing was written") as caught:
        write_atomic(path, "x" * 100_000)
    assert caught.value.filename == str(path)
    assert path.read_text() == "old\n" and sorted(p.name for p in full.iterdir()) == ["filler", "peak.json"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_history_on_a_full_disk_names_the_file_and_leaves_no_empty_file(tmp_path, tmpfs, capsys):
    from records import record

    from lmbench.cli import main as cli_main

    results = _machine_results(tmp_path, record(seed=5))
    out = tmpfs("64k")
    fill(out)
    code = cli_main(["history", str(results), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "No space left on device" in err and str(out / "history-") in err, err
    assert sorted(p.name for p in out.iterdir()) == ["filler"]  # no 0-byte plot or history.md


def test_peak_on_a_full_disk_names_the_file_and_leaves_no_empty_file(tmp_path, tmpfs, capsys):
    from lmbench.cli import main as cli_main
    from lmbench.run.peak import peak_file

    results = tmpfs("64k")
    peak_file(results).parent.mkdir(parents=True)
    fill(results)
    code = cli_main(["peak", "--frameworks", "torch", "--reps", "1", "--size", "64", "--threads", "1",
                     "--device", "cpu", "--results-dir", str(results)])
    err = capsys.readouterr().err
    assert code == 2 and f"lmbench: error: {peak_file(results)}: No space left on device" in err, err
    assert not list(peak_file(results).parent.iterdir())


def test_report_on_a_full_disk_is_one_line_not_a_traceback_and_leaves_no_empty_file(tmp_path, tmpfs, capsys):
    from records import record

    from lmbench.cli import main as cli_main

    results = _machine_results(tmp_path, record(seed=5))
    out = tmpfs("64k")
    fill(out)
    code = cli_main(["report", str(results), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "No space left on device" in err and "Traceback" not in err, err
    assert sorted(p.name for p in out.iterdir()) == ["filler"]  # no 0-byte plot, report.md or report.html


@pytest.mark.parametrize("argv", [["--runs", "0"], ["--runs", "-1"], ["--draws", "0"]])
def test_calibrate_refuses_a_number_of_runs_or_draws_below_one(tmp_path, capsys, argv):
    from records import record

    from lmbench.cli import main as cli_main

    results = _machine_results(tmp_path, record(seed=5))
    code = cli_main(["calibrate", str(results), *argv])
    err = capsys.readouterr().err
    assert code == 2 and f"{argv[0]} {argv[1]}: give a positive number" in err, err


# ---------------------------------------------------------------- 9. no claim that did not happen

@pytest.mark.parametrize("argv,needle", [
    (["verify", "--steps", "100"], "invalid steps=100: verify trains 1 to 3 SGD steps"),
    (["verify", "--steps", "-5"], "invalid steps=-5"),
    (["verify", "--steps", "0", "--workers", "2"], "invalid steps=0"),
    (["verify", "--steps", "9", "--precision", "bf16"], "invalid steps=9"),
    (["peak", "--reps", "-1"], "invalid --reps -1: must be a positive integer"),
    (["peak", "--reps", "0"], "invalid --reps 0"),
    (["peak", "--size", "0"], "invalid --size 0"),
    (["compare", "a.jsonl", "b.jsonl", "--max-slowdown", "nan"], "invalid threshold 'nan'"),
    (["compare", "a.jsonl", "b.jsonl", "--max-ppl-rise", "inf%"], "invalid threshold 'inf%'"),
])
def test_numbers_that_would_make_a_false_claim_are_refused_before_any_work(tmp_path, capsys, argv, needle):
    from lmbench.cli import main as cli_main

    code = cli_main(argv + (["--results-dir", str(tmp_path)] if argv[0] == "peak" else []))
    err = capsys.readouterr().err
    assert code == 2 and needle in err, err
    assert not list(tmp_path.iterdir())  # no peak.json of 0.0 GFLOP/s


def test_a_zero_peak_saved_by_an_older_lmbench_is_measured_again(tmp_path):
    from lmbench.run.peak import missing_peaks, peak_file

    peak_file(tmp_path).parent.mkdir(parents=True)
    peak_file(tmp_path).write_text(json.dumps({"torch": {"gflops": 0.0, "device": "cpu"}}))
    assert missing_peaks(["torch"], tmp_path) == ["torch"]
    peak_file(tmp_path).write_text(json.dumps({"torch": {"gflops": 12.5, "device": "cpu"}}))
    assert missing_peaks(["torch"], tmp_path) == []


HOLDER = textwrap.dedent("""
    import sys, time
    from lmbench.run import timing_lock as busy
    with busy.timing("lmbench bench --suite other"):
        print("timing", flush=True)
        time.sleep(120)
""")


def test_another_lmbench_timing_is_seen_and_a_killed_one_is_not(tmp_path, monkeypatch):
    from lmbench.run import timing_lock as busy

    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr("tempfile.tempdir", None)
    assert busy.warning() is None
    holder = subprocess.Popen([sys.executable, "-c", HOLDER], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "timing\n"
        with busy.timing("me"):  # our own announcement is not another lmbench
            assert busy.others() == [f"pid {holder.pid}: lmbench bench --suite other"]
            assert "another lmbench was timing on this machine" in busy.warning()
    finally:
        holder.kill()
        holder.wait()
    assert busy.others() == [] and not list((tmp_path / "lmbench-timing").iterdir())  # stale file removed


def test_two_suites_started_in_the_same_second_write_two_files_and_warn(tmp_path, monkeypatch):
    import datetime as dt
    import types

    from records import record

    from lmbench.run import bench

    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr("tempfile.tempdir", None)
    frozen = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
    monkeypatch.setattr(bench, "dt", types.SimpleNamespace(
        datetime=types.SimpleNamespace(now=lambda tz=None: frozen), timezone=dt.timezone))
    monkeypatch.setattr(bench, "run_isolated", lambda spec, **kw: record())  # the runs are not the point
    suite = tmp_path / "s.toml"
    suite.write_text('[[matrix]]\nbackend = "torch"\npreset = "tiny"\nsteps = 3\n')
    results = tmp_path / "results"
    assert bench.run_suite(str(suite), "cpu", results, report=False, out=open(os.devnull, "w")) == 0
    holder = subprocess.Popen([sys.executable, "-c", HOLDER], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "timing\n"
        assert bench.run_suite(str(suite), "cpu", results, report=False, out=open(os.devnull, "w")) == 0
    finally:
        holder.kill()
        holder.wait()
    files = sorted(results.glob("*/*.jsonl"))
    assert len(files) == 2 and all(f.name.startswith("20260102T030405Z-") for f in files)
    warned = [json.loads(f.read_text()).get("warnings") for f in files]
    assert sorted(map(bool, warned)) == [False, True]
    assert f"pid {holder.pid}: lmbench bench --suite other" in next(filter(None, warned))[0]


# ---------------------------------------------------------------- 2. no ok record without a throughput

@pytest.mark.parametrize("spec,batches,done,bad", [
    ({"steps": 5, "warmup": 400}, 10, 0, False),  # a run of steps times `steps`, whatever the warm-up
    ({"epochs": 1, "warmup": 400}, 300, 0, True),
    ({"epochs": 1, "warmup": 300}, 300, 0, True),
    ({"epochs": 1, "warmup": 299}, 300, 0, False),
    ({"epochs": 2, "warmup": 400}, 300, 0, False),  # the second epoch is timed
    ({"epochs": 3, "warmup": 400}, 300, 2, True),  # resumed: one epoch left, all warm-up
    ({"epochs": 1, "warmup": 10, "epoch_batches": 10}, None, 0, True),
    ({"epochs": 1, "warmup": 10, "epoch_batches": 50}, 8, 0, True),  # the split is shorter than the cut
    ({"epochs": 1, "warmup": 10}, None, 0, False),  # unknown until the data is read
])
def test_timed_steps_problem_names_a_run_that_would_time_nothing(spec, batches, done, bad):
    from lmbench.run.worker import timed_steps_problem

    try:  # an epoch_batches the warm-up covers is refused by RunSpec itself, before any work
        typed = RunSpec(backend="torch", config=make_config("tiny"), **spec)
    except ConfigError as e:
        assert bad and "leave no timed step" in str(e)
        return
    problem = timed_steps_problem(typed, batches, done)
    assert bool(problem) == bad, problem
    if bad:
        assert "no step would be timed" in problem and "--warmup" in problem


@pytest.mark.slow
@pytest.mark.parametrize("argv,needle", [
    (["--mode", "stream", "--epochs", "1", "--warmup", "5000"], "covers the whole epoch of 2905 training batch"),
    (["--mode", "stream", "--batch-size", "80000", "--steps", "1", "--warmup", "0"],
     "the valid split cannot be evaluated with a batch of 80000 sequence(s) (split 'valid' has 73760 targets"),
])
def test_a_run_with_nothing_to_time_or_evaluate_fails_before_training(tmp_path, capsys, argv, needle):
    from lmbench.cli import main as cli_main

    out = tmp_path / "r.jsonl"
    code = cli_main(TINY_RUN + argv + ["--threads", "1", "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 1 and needle in captured.out, captured.out + captured.err
    [record] = [json.loads(line) for line in out.read_text().splitlines()]
    assert record["status"] == "failed" and record["error_kind"] == "config" and record["metrics"] is None


# ---------------------------------------------------------------- 7 and 10. checkpoints

def test_a_checkpoint_write_that_fails_keeps_the_previous_one_and_leaves_no_temp_file(tmp_path):
    import numpy as np

    from lmbench.run import checkpoint

    path = tmp_path / "c.ckpt"
    meta = {"epoch": 1, "epoch_log": [], "wall_seconds": 1.0, "time_to_target_seconds": None, "config": {},
            "backend": ["torch", "packed"]}
    checkpoint.save(path, {"w": np.zeros(4, np.float32)}, meta)
    before = path.read_bytes()
    code = textwrap.dedent(f"""
        import resource, signal, sys
        import numpy as np
        from lmbench.run import checkpoint
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a short write instead of a kill (ulimit -f)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.RLIM_INFINITY))
        try:
            checkpoint.save({str(path)!r}, {{"w": np.zeros(100_000, np.float32)}}, {{**{meta!r}, "epoch": 2}})
        except checkpoint.CheckpointError as e:
            print(e)
            sys.exit(7)
    """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 7, proc.stderr
    assert f"could not write checkpoint {path} after epoch 2" in proc.stdout
    assert "the previous checkpoint was kept: --resume continues from it" in proc.stdout
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["c.ckpt"]


def test_a_valid_archive_that_is_no_checkpoint_is_refused_naming_the_file(tmp_path):
    import numpy as np

    from lmbench.run import checkpoint

    path = tmp_path / "c.ckpt"
    checkpoint.save(path, {"w": np.zeros(4, np.float32)}, {"config": {}})  # no epoch, no log
    with pytest.raises(checkpoint.CheckpointError, match=f"checkpoint {path} is damaged or truncated "
                                                         r"\(ValueError: its metadata lacks epoch, epoch_log"):
        checkpoint.load(path)


# ---------------------------------------------------------------- 10. messages

def test_only_the_worker_that_died_is_blamed_not_the_ones_lmbench_stopped(tmp_path):
    from lmbench.run.launch import Job

    procs = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) for _ in range(2)]
    job = Job(procs, None)
    procs[1].kill()  # the OOM killer takes rank 1
    procs[1].wait()
    wait_for(job.poll, 10, "the job to end")
    assert job.exits() == ("worker rank 0 was stopped by lmbench when another ended; "
                           "worker rank 1 died from SIGKILL (killed: out of memory?)")


@pytest.mark.parametrize("text", ["RuntimeError: can't allocate memory: you tried to allocate 1 bytes",
                                  "OSError: [Errno 12] Cannot allocate memory"])
def test_allocation_failures_are_classed_oom(text):
    from lmbench.run.worker import OOM_MESSAGES

    assert any(m in text.lower() for m in OOM_MESSAGES)


# ---------------------------------------------------------------- 6. verify's probe

def test_kill_9_of_verify_ends_its_probe_and_removes_its_temp_dir(tmp_path):
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    code = textwrap.dedent("""
        from lmbench.run.probe import probe
        from lmbench.verify.verify import build_case
        cfg, weights, batches, script = build_case("tiny")
        probe("torch", ["packed"], cfg, weights, batches, script * 50)
    """)
    parent = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env={**os.environ, "TMPDIR": str(tmpdir)},
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def the_probe():
        from test_faults import children

        for pid in children(parent.pid):
            with contextlib.suppress(OSError):
                if "lmbench.run.probe" in Path(f"/proc/{pid}/cmdline").read_text():
                    return pid
        return None
    child = wait_for(the_probe, 60, "the probe child")
    wait_for(lambda: list(tmpdir.glob("lmbench-probe-*/in.pkl")), 30, "the probe's input")
    import time

    time.sleep(1)  # the child has armed its lifeline: it was started with the input written
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    try:
        wait_for(lambda: not alive(child), 15, "the probe child to exit")
    finally:
        _kill([child])
    wait_for(lambda: not list(tmpdir.glob("lmbench-probe-*")), 10, "the probe's temp dir to be removed")


def test_run_with_a_bad_data_dir_fails_before_any_framework_starts(tmp_path, monkeypatch, capsys):
    """The data is checked in the parent: no worker is started for a run that cannot load it."""
    from lmbench.cli import main as cli_main

    monkeypatch.delenv("LMBENCH_PTB_MIRROR", raising=False)
    monkeypatch.setattr(subprocess.Popen, "__init__", lambda *a, **k: pytest.fail("a process was started"))
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert cli_main(["run", "--backend", "torch", "--preset", "tiny", "--steps", "1", "--no-save",
                     "--data-dir", str(blocker / "data")]) == 2
    assert "lmbench: error:" in capsys.readouterr().err


def test_ab_refuses_a_ref_without_lmbench_and_prunes_a_killed_abs_worktree(tmp_path):
    from lmbench.regress.ab import Worktree
    from lmbench.results import ResultsError

    repo = tmp_path / "repo"
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / "README").write_text("not lmbench\n")
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "add", "README"], check=True)
    subprocess.run([*git, "commit", "-qm", "x"], check=True)
    # what a kill -9 of ab leaves: a registered worktree whose directory is gone
    gone = tmp_path / "gone"
    subprocess.run([*git, "worktree", "add", "-q", "--detach", str(gone), "HEAD"], check=True)
    subprocess.run(["rm", "-rf", str(gone)], check=True)
    with pytest.raises(ResultsError, match="holds no lmbench/ package"):
        Worktree("HEAD", tmp_path / "w", repo=repo)
    listed = subprocess.run([*git, "worktree", "list"], capture_output=True, text=True).stdout
    assert str(gone) not in listed and str(tmp_path / "w") not in listed  # pruned, and its own removed


def test_an_interrupted_suite_names_the_options_to_resume_it_with(tmp_path):
    from lmbench.run import bench

    suite = tmp_path / "s.toml"
    suite.write_text('[[matrix]]\nbackend = "torch"\npreset = "tiny"\nsteps = 1\neval = "none"\n')
    out = tmp_path / "out.txt"

    def interrupted(*a, **k):
        raise KeyboardInterrupt("SIGTERM")

    orig = bench.run_isolated
    bench.run_isolated = interrupted
    try:
        with open(out, "w") as f:
            bench.run_suite(str(suite), device="cpu", results_dir=tmp_path / "r", report=False,
                            out=f)
    finally:
        bench.run_isolated = orig
    text = out.read_text()
    assert f"--device cpu --results-dir {tmp_path / 'r'}" in text and "--resume` runs only what is missing" in text


def test_a_lock_file_no_process_holds_is_removed_and_a_held_one_kept(tmp_path):
    from lmbench.run import checkpoint

    ckpt = tmp_path / "c.ckpt"
    held = checkpoint.lock(ckpt)  # this process trains it
    assert checkpoint.remove_stale_lock(ckpt) is False and Path(f"{ckpt}.lock").exists()
    os.close(held)  # what a killed worker leaves: the file, no holder
    assert checkpoint.remove_stale_lock(ckpt) is True and not Path(f"{ckpt}.lock").exists()
    assert checkpoint.remove_stale_lock(ckpt) is False  # nothing there


def test_a_file_size_limit_smaller_than_a_checkpoint_is_refused_before_any_epoch(tmp_path):
    """ulimit -f: the first checkpoint write would fail after an epoch's work; the parent refuses first."""
    code = textwrap.dedent(f"""
        import resource
        from lmbench.config import ConfigError, make_config
        from lmbench.run import runner
        from lmbench.runspec import run_spec
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.RLIM_INFINITY))
        spec = run_spec(make_config("tiny", epochs=1), "torch", epochs=1, checkpoint={str(tmp_path / "c.ckpt")!r})
        try:
            runner.check_checkpoint(spec)
        except ConfigError as e:
            print(e)
    """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert "(ulimit -f)" in proc.stdout and "raise the limit" in proc.stdout, proc.stdout + proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_checkpoint_with_nan_weights_is_refused_naming_the_weights_not_the_learning_rate(tmp_path):
    import numpy as np

    from lmbench.run import checkpoint

    path = tmp_path / "c.ckpt"
    meta = {"epoch": 1, "epoch_log": [], "wall_seconds": 1.0, "time_to_target_seconds": None, "config": {},
            "backend": ["torch", "packed"]}
    checkpoint.save(path, {"embedding": np.zeros(4, np.float32), "softmax_b": np.array([0, np.nan], np.float32)},
                    meta)
    with pytest.raises(checkpoint.CheckpointError, match="weights softmax_b hold NaN or infinity") as e:
        checkpoint.load(path)
    assert "--lr" not in str(e.value) and str(path) in str(e.value)


def test_machine_0_with_its_rendezvous_port_taken_fails_before_any_launcher(monkeypatch, capsys):
    """Paddle's launcher waited silently until --timeout; every backend now fails at once."""
    import socket

    from lmbench.cli import main as cli_main

    monkeypatch.setattr(subprocess.Popen, "__init__", lambda *a, **k: pytest.fail("a process was started"))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = cli_main(["run", "--backend", "paddle", "--preset", "tiny", "--steps", "2", "--no-save",
                         "--nodes", "2", "--node-rank", "0", "--rendezvous", f"127.0.0.1:{port}"])
        # machine 1 does not listen: the same port is no business of its
        runner.check_rendezvous(tiny_spec(nodes=2, node_rank=1, rendezvous=f"127.0.0.1:{port}"))
    assert code == 2
    assert f"port {port} is already in use on this machine" in capsys.readouterr().err
