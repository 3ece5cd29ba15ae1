"""Faults lose nothing and leave nothing behind (issue 14).

Every test injects one fault a hostile-but-fair user could cause -- a killed parent, a
signal, a full or read-only disk, a locked checkpoint, a bad number, a broken input file --
into real processes and real files, and asserts: nothing lost (every finished record
intact and parseable), nothing left behind (no worker process, no `lmbench-run-*` temp
dir in the run's own TMPDIR), a clear message, the exit status.

Full and read-only filesystems are small tmpfs mounts (root only; skipped with the reason
elsewhere) or RLIMIT_FSIZE in a child process.
"""
from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from lmbench import env

from lmbench.run import checkpoint

from lmbench.run import runner
from lmbench.runspec import run_spec
from lmbench.cli import main as cli_main
from lmbench.config import ConfigError, make_config
from lmbench.results import ResultsError, load_records

REPO = Path(__file__).resolve().parent.parent
TINY_RUN = ["run", "--backend", "torch", "--preset", "tiny", "--quiet"]
# a run that trains long enough to be caught in the middle: stream mode has one batch shape
# (no shape warm-up) and the parent prints progress every 100 steps
LONG_RUN = ["run", "--backend", "torch", "--preset", "tiny", "--mode", "stream", "--steps", "2500",
            "--warmup", "1", "--eval", "none", "--threads", "1"]


# ---------------------------------------------------------------- helpers

def _state(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


def alive(pid: int) -> bool:
    return _state(pid) not in (None, "Z", "X")  # a zombie has stopped running


def children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


def wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class Lmbench:
    """`python -m lmbench ARGS` as a user starts it, with its own TMPDIR and output files."""

    def __init__(self, tmp_path: Path, *argv: str, env_extra: dict | None = None):
        self.tmpdir = tmp_path / "tmp"
        self.tmpdir.mkdir(exist_ok=True)
        self.out_path, self.err_path = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen([sys.executable, "-m", "lmbench", *argv], cwd=REPO,
                                         env={**os.environ, "TMPDIR": str(self.tmpdir), **(env_extra or {})},
                                         stdin=subprocess.DEVNULL, stdout=out, stderr=err)

    @property
    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace")

    @property
    def stdout(self) -> str:
        return self.out_path.read_text(errors="replace")

    def worker(self, marker: str = "lmbench.run.worker", timeout: float = 120) -> int:
        def find():
            for pid in children(self.proc.pid):
                with contextlib.suppress(OSError):
                    if marker in Path(f"/proc/{pid}/cmdline").read_text():
                        return pid
            assert self.proc.poll() is None, f"lmbench exited early:\n{self.stderr}"
            return None
        return wait_for(find, timeout, f"a {marker} child")

    def wait_output(self, needle: str, timeout: float = 240) -> None:
        def seen():
            assert self.proc.poll() is None, f"lmbench exited before {needle!r}:\n{self.stderr}"
            return needle in self.stderr
        wait_for(seen, timeout, repr(needle))

    def finish(self, timeout: float = 120) -> int:
        return self.proc.wait(timeout=timeout)

    def temp_dirs(self) -> list[Path]:
        return list(self.tmpdir.glob("lmbench-run-*"))


def assert_nothing_left(run: Lmbench, pids, within: float = 10) -> None:
    wait_for(lambda: not any(alive(p) for p in pids), within, f"workers {pids} to end")
    wait_for(lambda: not run.temp_dirs(), 10, "the run's temp dir to be removed")


@pytest.fixture
def tmpfs(tmp_path):
    """mount(size, ro=False) -> a fresh tmpfs directory, unmounted afterwards."""
    mounted = []

    def mount(size: str = "64k", ro: bool = False) -> Path:
        point = tmp_path / f"mnt{len(mounted)}"
        point.mkdir()
        opts = f"size={size}" + (",ro" if ro else "")
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(point)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here (needs root): {proc.stderr.strip()}")
        mounted.append(point)
        return point

    yield mount
    for point in mounted:
        subprocess.run(["umount", "-l", str(point)], capture_output=True)


def fill(directory: Path) -> None:
    """Fill a filesystem to the last byte."""
    fd = os.open(directory / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        for chunk in (b"x" * 4096, b"x"):
            with contextlib.suppress(OSError):
                while os.write(fd, chunk):
                    pass
    finally:
        os.close(fd)


def record(i: int, pad: int = 0) -> dict:
    from records import record as make

    r = make(seed=i)
    r["pad"] = "p" * pad
    return r


def tiny_spec(**kw):
    return run_spec(make_config("tiny"), "torch", steps=5, warmup=1, eval="none", **kw)


# ---------------------------------------------------------------- a worker never outlives its parent

@pytest.mark.slow
def test_kill_9_of_run_ends_the_worker_and_removes_its_temp_dir(tmp_path):
    run = Lmbench(tmp_path, *LONG_RUN, "--out", str(tmp_path / "r.jsonl"))
    worker = run.worker()
    run.wait_output("timed steps: 100/")  # training, not importing
    assert run.temp_dirs()
    os.kill(run.proc.pid, signal.SIGKILL)
    assert run.finish() == -signal.SIGKILL
    assert_nothing_left(run, [worker])
    assert not (tmp_path / "r.jsonl").exists()  # nothing half-recorded


@pytest.mark.slow
def test_kill_9_of_bench_ends_the_worker_and_removes_its_temp_dir(tmp_path):
    suite = tmp_path / "s.toml"
    suite.write_text('[[matrix]]\nbackend = "torch"\npreset = "tiny"\nmode = "stream"\nsteps = 2500\n'
                     'warmup = 1\neval = "none"\nthreads = 1\n')
    run = Lmbench(tmp_path, "bench", "--suite", str(suite), "--device", "cpu", "--no-report",
                  "--results-dir", str(tmp_path / "results"))
    worker = run.worker()
    time.sleep(3)  # well into the framework import
    os.kill(run.proc.pid, signal.SIGKILL)
    run.finish()
    assert_nothing_left(run, [worker])


@pytest.mark.slow
def test_kill_9_of_bench_mid_training_then_resume_trains_the_cell_once(tmp_path):
    """The issue's worst case: the orphan kept training while `--resume` trained the same
    checkpoint, and a wrong number was recorded ok."""
    from lmbench.run.bench import checkpoint_for
    from lmbench.run.suite import load_suite, spec_for

    suite = tmp_path / "s.toml"
    suite.write_text('[[matrix]]\nbackend = "torch"\npreset = "tiny"\nmode = "stream"\nepochs = 3\n'
                     'epoch_batches = 100\nwarmup = 1\neval = "none"\nthreads = 1\n')
    results = tmp_path / "results"
    ckpt = checkpoint_for(results / env.machine_key(), spec_for(load_suite(suite)[0], "cpu").for_this_machine(), 0)
    argv = ["bench", "--suite", str(suite), "--device", "cpu", "--no-report", "--results-dir", str(results)]
    run = Lmbench(tmp_path, *argv)
    worker = run.worker()
    wait_for(ckpt.exists, 300, "the first epoch's checkpoint")
    os.kill(run.proc.pid, signal.SIGKILL)
    run.finish()
    assert_nothing_left(run, [worker])
    assert not list(results.rglob("*.jsonl"))

    again = Lmbench(tmp_path, *argv, "--resume")
    assert again.finish(timeout=600) == 0, again.stderr
    [rec] = [json.loads(line) for f in results.rglob("*.jsonl") for line in f.read_text().splitlines()]
    assert rec["status"] == "ok" and rec["metrics"]["resumed_from_epoch"] >= 1
    assert [e["epoch"] for e in rec["metrics"]["epoch_log"]] == [1, 2, 3]
    assert not ckpt.exists() and not Path(f"{ckpt}.lock").exists() and not again.temp_dirs()


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_a_signal_to_run_stops_the_worker_and_says_so(tmp_path, signum):
    out = tmp_path / "r.jsonl"
    out.write_text(json.dumps(record(0)) + "\n")
    before = out.read_bytes()
    run = Lmbench(tmp_path, *LONG_RUN, "--out", str(out))
    worker = run.worker()
    run.wait_output("timed steps: 100/")
    run.proc.send_signal(signum)
    assert run.finish() == 128 + signum
    assert "interrupted: the worker was stopped, nothing was recorded" in run.stderr
    assert "Traceback" not in run.stderr
    assert_nothing_left(run, [worker])
    assert out.read_bytes() == before


@pytest.mark.slow
def test_sigterm_during_the_gemm_peak_phase_of_bench(tmp_path):
    suite = tmp_path / "s.toml"
    suite.write_text('[[matrix]]\nbackend = "torch"\npreset = "tiny"\nsteps = 3\nwarmup = 0\neval = "none"\n')
    run = Lmbench(tmp_path, "bench", "--suite", str(suite), "--device", "cpu",
                  "--results-dir", str(tmp_path / "results"))
    peak = run.worker(marker="lmbench.run.peak")
    run.proc.send_signal(signal.SIGTERM)
    assert run.finish() == 128 + signal.SIGTERM
    assert "interrupted: 0 of 1 run(s) finished" in run.stderr and "--resume" in run.stderr
    assert "Traceback" not in run.stderr
    assert_nothing_left(run, [peak])


@pytest.mark.slow
def test_kill_9_of_bench_during_the_gemm_peak_phase(tmp_path):
    suite = tmp_path / "s.toml"
    suite.write_text('[[matrix]]\nbackend = "torch"\npreset = "tiny"\nsteps = 3\nwarmup = 0\neval = "none"\n')
    run = Lmbench(tmp_path, "bench", "--suite", str(suite), "--device", "cpu",
                  "--results-dir", str(tmp_path / "results"))
    peak = run.worker(marker="lmbench.run.peak")
    time.sleep(1)  # the peak child has armed its lifeline
    os.kill(run.proc.pid, signal.SIGKILL)
    run.finish()
    assert_nothing_left(run, [peak], within=2)  # its import and GEMMs alone take longer


@pytest.mark.slow
def test_sighup_to_bench_during_a_cell(tmp_path):
    suite = tmp_path / "s.toml"
    suite.write_text('[[matrix]]\nbackend = "torch"\npreset = "tiny"\nsteps = 3\nwarmup = 0\neval = "none"\n')
    run = Lmbench(tmp_path, "bench", "--suite", str(suite), "--device", "cpu", "--no-report",
                  "--results-dir", str(tmp_path / "results"))
    worker = run.worker()
    run.proc.send_signal(signal.SIGHUP)
    assert run.finish() == 128 + signal.SIGHUP
    assert "interrupted: 0 of 1 run(s) finished" in run.stderr
    assert_nothing_left(run, [worker])


def test_a_worker_whose_parent_is_already_gone_exits_and_cleans_up(tmp_path):
    """The race PR_SET_PDEATHSIG cannot cover: the parent died before the child armed it."""
    temp = tmp_path / "lmbench-run-x"
    temp.mkdir()
    code = textwrap.dedent(f"""
        import os, sys, time
        os.environ["LMBENCH_PARENT_PID"] = "1" if os.getppid() != 1 else "2"  # not our parent
        from lmbench.run.lifeline import die_with_parent
        die_with_parent({str(temp)!r})
        time.sleep(30)
        sys.exit(0)
    """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, timeout=60)
    assert proc.returncode == 3 and not temp.exists()


def test_a_worker_whose_progress_pipe_closes_exits(tmp_path):
    temp = tmp_path / "lmbench-run-y"
    temp.mkdir()
    read_fd, write_fd = os.pipe()
    code = textwrap.dedent(f"""
        import time
        from lmbench.run.lifeline import die_with_parent
        die_with_parent({str(temp)!r}, {write_fd})
        time.sleep(30)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, pass_fds=(write_fd,))
    os.close(write_fd)
    time.sleep(1)
    assert proc.poll() is None  # the pipe is open: the worker goes on
    os.close(read_fd)  # what a parent's death does to the pipe
    assert proc.wait(timeout=10) == 3 and not temp.exists()


# ---------------------------------------------------------------- one worker per checkpoint

def test_a_locked_checkpoint_gives_a_clear_failed_record(tmp_path):
    ckpt = tmp_path / "c.ckpt"
    fd = checkpoint.lock(ckpt)  # another worker training this cell right now
    try:
        spec = run_spec(make_config("tiny"), "torch", epochs=1, epoch_batches=3, warmup=0,
                               eval="none", checkpoint=ckpt, resume=True)
        record = runner.run_isolated(spec, timeout=120)
    finally:
        checkpoint.unlock(ckpt, fd)
    assert record["status"] == "failed" and record["error_kind"] == "checkpoint"
    assert f"is being trained by process {os.getpid()} right now" in record["error"]
    assert not ckpt.exists() and not Path(f"{ckpt}.lock").exists()


def test_checkpoint_lock_is_released_with_its_process(tmp_path):
    ckpt = tmp_path / "c.ckpt"
    holder = subprocess.Popen([sys.executable, "-c", "from lmbench.run import checkpoint; import time; "
                               f"checkpoint.lock({str(ckpt)!r}); print('held', flush=True); time.sleep(60)"],
                              cwd=REPO, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(checkpoint.CheckpointError, match=f"process {holder.pid} right now"):
        checkpoint.lock(ckpt)
    holder.kill()
    holder.wait()
    checkpoint.unlock(ckpt, checkpoint.lock(ckpt))  # a killed holder's lock is free again


def test_existing_checkpoint_without_resume_names_both_ways_out(tmp_path, capsys):
    ckpt = tmp_path / "c.ckpt"
    ckpt.write_bytes(b"three epochs of training")
    code = cli_main(TINY_RUN + ["--epochs", "1", "--checkpoint", str(ckpt)])
    err = capsys.readouterr().err
    assert code == 2 and f"checkpoint {ckpt} already exists" in err
    assert "--resume" in err and "--overwrite" in err and "new path" in err
    assert ckpt.read_bytes() == b"three epochs of training"


def test_checkpoint_without_room_fails_before_the_run(tmp_path, tmpfs, capsys):
    full = tmpfs("64k")
    fill(full)
    code = cli_main(TINY_RUN + ["--epochs", "1", "--checkpoint", str(full / "c.ckpt")])
    err = capsys.readouterr().err
    assert code == 2 and "MiB free in" in err and "a checkpoint needs" in err


# ---------------------------------------------------------------- records all-or-nothing

def _append_under_fsize_limit(path: Path, extra: int, rec: dict) -> subprocess.CompletedProcess:
    code = textwrap.dedent(f"""
        import json, resource, signal, sys
        from lmbench.run.runner import RecordWriteError, append_record
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a short write instead of a kill
        size = {path.stat().st_size}
        resource.setrlimit(resource.RLIMIT_FSIZE, (size + {extra}, resource.RLIM_INFINITY))
        try:
            append_record({str(path)!r}, json.loads(sys.stdin.read()))
        except RecordWriteError as e:
            print(e)
            sys.exit(7)
    """)
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, input=json.dumps(rec), text=True,
                          capture_output=True, timeout=60)


@pytest.mark.parametrize("extra", [0, 1, 500])
def test_a_short_write_leaves_the_file_as_it_was(tmp_path, extra):
    path = tmp_path / "r.jsonl"
    runner.append_record(path, record(0))
    before = path.read_bytes()
    proc = _append_under_fsize_limit(path, extra, record(1, pad=5000))
    assert proc.returncode == 7, proc.stderr
    assert f"could not append the record to {path}" in proc.stdout
    assert f"the file was left as it was ({len(before)} bytes)" in proc.stdout
    assert path.read_bytes() == before
    runner.append_record(path, record(2))  # the next record is whole, not glued to a fragment
    assert [r["run_id"] for r in load_records([path], warn=pytest.fail)] == ["id0", "id2"]


def test_a_fragment_left_by_a_killed_writer_does_not_swallow_the_next_record(tmp_path):
    path = tmp_path / "r.jsonl"
    runner.append_record(path, record(0))
    with open(path, "ab") as f:
        f.write(json.dumps(record(1)).encode()[:300])  # what an older lmbench left on a full disk
    runner.append_record(path, record(2))
    warnings = []
    assert [r["run_id"] for r in load_records([path], warn=warnings.append)] == ["id0", "id2"]
    assert len(warnings) == 1 and f"{path}:2: skipped a corrupt or truncated record" in warnings[0]


def test_append_on_a_full_filesystem(tmpfs):
    full = tmpfs("64k")
    path = full / "r.jsonl"
    runner.append_record(path, record(0))
    before = path.read_bytes()
    fill(full)
    with pytest.raises(runner.RecordWriteError, match=f"could not append the record to {path} "
                                                      r"\(.*\); the file was left as it was"):
        runner.append_record(path, record(1, pad=20000))
    assert path.read_bytes() == before


@pytest.mark.slow
def test_run_out_on_a_full_disk_keeps_the_record(tmp_path, tmpfs):
    full = tmpfs("64k")
    out = full / "r.jsonl"
    line = len(json.dumps(record(0))) + 1
    runner.append_record(out, record(0, pad=-line % 4096 + 4096 - 8))  # 8 bytes short of a page: no slack
    before = out.read_bytes()
    fill(full)
    run = Lmbench(tmp_path, *TINY_RUN, "--steps", "3", "--warmup", "0", "--eval", "none", "--out", str(out))
    assert run.finish(timeout=300) == 2
    assert out.read_bytes() == before
    assert f"could not append the record to {out}" in run.stderr and "save it by hand" in run.stderr
    saved = json.loads(run.stderr.strip().splitlines()[-1])  # the measurement is not lost
    assert saved["status"] == "ok" and saved["metrics"]["train_words_per_sec"] > 0
    assert not run.temp_dirs()


@pytest.mark.slow
def test_bench_on_a_full_results_dir_stops_and_keeps_the_record(tmp_path, tmpfs):
    results = tmpfs("64k")
    (results / env.machine_key()).mkdir()
    suite = tmp_path / "s.toml"
    suite.write_text('[[matrix]]\nbackend = "torch"\npreset = "tiny"\nsteps = 3\nwarmup = 0\neval = "none"\n'
                     'repeats = 2\n')
    fill(results)
    run = Lmbench(tmp_path, "bench", "--suite", str(suite), "--device", "cpu", "--no-report",
                  "--results-dir", str(results))
    assert run.finish(timeout=300) == 2
    assert "could not append the record to" in run.stderr and "the suite stopped" in run.stderr
    saved = json.loads(run.stderr.strip().splitlines()[-1])
    assert saved["status"] == "ok"
    assert not list((results / env.machine_key()).glob("*.jsonl"))  # not even an empty file left
    assert not run.temp_dirs()


# ---------------------------------------------------------------- fail before the work

def _quick(capsys, argv) -> tuple[int, str, float]:
    t0 = time.monotonic()
    code = cli_main(argv)
    return code, capsys.readouterr().err, time.monotonic() - t0


@pytest.mark.parametrize("argv,needle", [
    (["--threads", "999"], "invalid threads=999: 999 threads on this machine's"),
    (["--epochs", "1", "--epoch-batches", "5", "--warmup", "10"], "invalid warmup=10 with epoch_batches=5"),
    (["--timeout", "-1"], "invalid timeout=-1.0: must be a positive number"),
    (["--timeout", "nan"], "invalid timeout=nan"),
    (["--timeout", "inf"], "invalid timeout=inf"),
    (["--target-ppl", "-5"], "invalid target_ppl=-5.0: must be a positive number"),
    (["--steps", "5", "--epochs", "1"], "give steps or epochs, not both"),
    (["--resume", "--epochs", "1"], "resume needs a checkpoint file"),
    (["--warmup", "-1"], "invalid warmup=-1"),
])
def test_bad_numbers_are_refused_before_any_work(tmp_path, capsys, argv, needle):
    code, err, seconds = _quick(capsys, TINY_RUN + argv + ["--out", str(tmp_path / "r.jsonl")])
    assert code == 2 and needle in err, err
    assert seconds < 5 and not (tmp_path / "r.jsonl").exists()  # no worker was started


def test_oversubscribed_threads_are_recorded_and_shown(tmp_path):
    n = env.cpu_count() + 1
    with pytest.raises(ConfigError, match="--oversubscribe"):
        tiny_spec(threads=n)
    spec = tiny_spec(threads=n, oversubscribe=True)
    fake = tmp_path / "python"  # a worker that fails at once: the warning goes on whatever the outcome
    fake.write_text(f"#!{sys.executable}\nimport sys\nsys.exit(1)\n")
    fake.chmod(0o755)
    rec = runner.run_isolated(spec, python=str(fake))
    assert rec["warnings"] == [f"{n} threads on this machine's {n - 1} CPU(s): the threads queue for the "
                               f"cores, so the run times the scheduler, not the framework"]
    assert "WARNING: " in runner.summary(rec)


def test_run_out_a_directory_or_read_only(tmp_path, tmpfs, capsys):
    code, err, _ = _quick(capsys, TINY_RUN + ["--out", str(tmp_path)])
    assert code == 2 and f"--out {tmp_path} is a directory, not a file" in err
    ro = tmpfs("64k", ro=True)
    code, err, seconds = _quick(capsys, TINY_RUN + ["--out", str(ro / "r.jsonl")])
    assert code == 2 and f"--out: cannot write in {ro} (Read-only file system)" in err
    assert seconds < 5


def test_bench_results_dir_read_only_or_a_file_fails_before_any_cell(tmp_path, tmpfs, capsys):
    suite = tmp_path / "s.toml"
    suite.write_text('[[matrix]]\nbackend = "torch"\npreset = "tiny"\nsteps = 3\n')
    (tmp_path / "afile").write_text("")
    code, err, _ = _quick(capsys, ["bench", "--suite", str(suite), "--results-dir", str(tmp_path / "afile")])
    assert code == 2 and "is a file" in err
    ro = tmpfs("64k", ro=True)
    code, err, seconds = _quick(capsys, ["bench", "--suite", str(suite), "--results-dir", str(ro)])
    assert code == 2 and f"--results-dir: cannot write in {ro} (Read-only file system)" in err
    assert seconds < 10


def test_bench_refuses_to_overwrite_an_interrupted_training_without_resume(tmp_path, capsys):
    from lmbench.run.bench import checkpoint_for
    from lmbench.run.suite import load_suite, spec_for

    suite = tmp_path / "s.toml"
    suite.write_text('[[matrix]]\nbackend = "torch"\npreset = "tiny"\nepochs = 1\nepoch_batches = 3\n'
                     'warmup = 0\n')
    results = tmp_path / "results"
    ckpt = checkpoint_for(results / env.machine_key(), spec_for(load_suite(suite)[0], "cpu").for_this_machine(), 0)
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"epoch 1")
    code, err, _ = _quick(capsys, ["bench", "--suite", str(suite), "--device", "cpu", "--results-dir", str(results)])
    assert code == 2 and f"checkpoint {ckpt} of an interrupted training" in err and "--resume" in err
    assert ckpt.read_bytes() == b"epoch 1"


def test_bench_without_data_resolves_it_once_with_the_whole_hint(tmp_path, monkeypatch, capsys):
    from lmbench.data import download

    monkeypatch.setenv("LMBENCH_DATA_DIR", str(tmp_path / "nodata"))
    monkeypatch.setenv("LMBENCH_PTB_MIRROR", str(tmp_path / "empty-mirror"))
    # no internet: every canonical source fails at once instead of after its retries
    monkeypatch.setattr(download, "MIKOLOV_TGZ", (tmp_path / "none.tgz").as_uri())
    monkeypatch.setattr(download, "ZAREMBA_RAW", (tmp_path / "none").as_uri() + "/{name}")
    suite = tmp_path / "s.toml"
    suite.write_text('[[matrix]]\nbackend = "torch"\npreset = "tiny"\nsteps = 3\n'
                     '[[matrix]]\nbackend = "torch"\nlayout = "padded"\npreset = "tiny"\nsteps = 3\n')
    code, err, seconds = _quick(capsys, ["bench", "--suite", str(suite), "--device", "cpu", "--no-report",
                                         "--results-dir", str(tmp_path / "results")])
    assert code == 2 and err.count("could not get a verified copy") == 1
    assert download.HOW_TO_MIRROR in err  # the whole hint, not its first line
    assert not list((tmp_path / "results").rglob("*.jsonl")) and seconds < 10


def test_download_into_a_read_only_data_dir(tmpfs, capsys):
    ro = tmpfs("64k", ro=True)
    code, err, _ = _quick(capsys, ["download", "--data-dir", str(ro)])
    assert code == 2 and f"cannot write the PTB files to {ro / 'ptb'}" in err and "--data-dir" in err
    assert "Traceback" not in err


# ---------------------------------------------------------------- hostile input files

@pytest.mark.parametrize("content,needle", [
    (b'matrix = [1, 2]\n', "write [defaults] as a table and each [[matrix]] as an array table"),
    (b'defaults = 3\n', "write [defaults] as a table"),
    (b'[[matrix]]\nbackend = "torch"\n# caf\xe9\n', "is not UTF-8 text"),
    (b'[[matrix]]\nbackend = "torch"\nthreads = 999\n', "invalid threads=999"),
    (b'[[matrix]]\nbackend = "torch"\ntarget_ppl = -5\n', "invalid target_ppl=-5"),
    (b'[[matrix]]\nbackend = "torch"\nepochs = 1\nepoch_batches = 5\n', "invalid warmup=10 with epoch_batches=5"),
    (b'[[matrix]]\nbackend = "torch"\ntimeout = nan\n', "invalid timeout=nan"),
])
def test_hostile_suite_files(tmp_path, capsys, content, needle):
    path = tmp_path / "s.toml"
    path.write_bytes(content)
    code, err, _ = _quick(capsys, ["bench", "--suite", str(path), "--results-dir", str(tmp_path / "r")])
    assert code == 2 and needle in err and str(path) in err, err


def _compare(capsys, base: Path, cand: Path) -> tuple[int, str]:
    code = cli_main(["compare", str(base), str(cand)])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_incomplete_zero_and_empty_results_in_compare(tmp_path, capsys):
    good = tmp_path / "good.jsonl"
    for i in range(3):
        runner.append_record(good, record(i))
    incomplete = tmp_path / "incomplete.jsonl"
    incomplete.write_text(json.dumps({"schema_version": 1, "status": "ok"}) + "\n")
    zero = tmp_path / "zero.jsonl"
    runner.append_record(zero, record(0) | {"metrics": record(0)["metrics"] | {"train_words_per_sec": 0}})
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    for bad, why in ((incomplete, "no 'backend'"), (zero, "train_words_per_sec is 0"), (empty, None)):
        code, text = _compare(capsys, bad, good)
        assert code == 2 and f"{bad}: holds no usable run record" in text, text
        assert "Traceback" not in text and "different machines" not in text
        if why:
            assert why in text


def test_unreadable_results_name_the_path(tmp_path):
    d = tmp_path / "dir.jsonl"
    d.mkdir()
    (d / "x.jsonl").mkdir()  # rglob finds a directory named like a results file
    with pytest.raises(ResultsError, match="x.jsonl: cannot be read"):
        load_records([d], warn=lambda m: None)
