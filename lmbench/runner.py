"""The parent side of a run: one fresh child process per run, one JSON record per run.

The parent never imports a framework. Whatever happens to the child (a crash, a hang
past the timeout, an out-of-memory kill, a missing framework), the parent writes a
record with status "failed" and the reason, and goes on.
"""
from __future__ import annotations

import datetime as dt
import errno
import fcntl
import json
import math
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

from . import env
from .config import Config, ConfigError
from .lifeline import PARENT_PID_ENV

SCHEMA_VERSION = 1
RECORDED_RUN_FIELDS = ("steps", "epochs", "warmup", "eval", "eval_batches", "epoch_batches", "device",
                       "threads", "compile", "precision")
# run settings whose default a record written before they existed means (cell keys ignore them at it)
RUN_DEFAULTS = {"compile": False, "precision": "fp32"}


class RecordWriteError(RuntimeError):
    """A record could not be appended; the file was left exactly as it was."""


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_positive_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0


def check_timeout(timeout) -> None:
    """A timeout is a positive finite number of seconds (or None: no timeout)."""
    if timeout is not None and not _is_positive_number(timeout):
        raise ConfigError(f"invalid timeout={timeout!r}: must be a positive number of seconds")


def run_spec(cfg: Config, backend: str, layout: str | None = None, device: str = "auto",
             threads: int | None = None, steps: int | None = None, epochs: int | None = None,
             warmup: int = 10, eval: str = "valid", data_dir=None, target_ppl=None,
             eval_batches: int | None = None, checkpoint=None, resume: bool = False,
             epoch_batches: int | None = None, oversubscribe: bool = False, compile: bool = False,
             precision: str = "fp32") -> dict:
    """The worker's spec of one run, every value validated: the one place `run`, `bench`
    and suite files are checked (ConfigError naming the value and what is allowed)."""
    from .backend import PRECISIONS, backend_layouts

    layouts = backend_layouts(backend)
    layout = layout or layouts[0]
    if layout not in layouts:
        raise ConfigError(f"invalid layout={layout!r} for backend {backend!r}: allowed: {', '.join(layouts)}")
    if device not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"invalid device={device!r}: allowed: auto, cpu, cuda")
    if eval not in ("valid", "test", "both", "none"):
        raise ConfigError(f"invalid eval={eval!r}: allowed: valid, test, both, none")
    for name, value in (("steps", steps), ("epochs", epochs), ("threads", threads),
                        ("eval_batches", eval_batches), ("epoch_batches", epoch_batches)):
        if value is not None and (not _is_int(value) or value <= 0):
            raise ConfigError(f"invalid {name}={value!r}: must be a positive integer")
    if not isinstance(compile, bool):
        raise ConfigError(f"invalid compile={compile!r}: must be true or false")
    if precision not in PRECISIONS:
        raise ConfigError(f"invalid precision={precision!r}: allowed: {', '.join(PRECISIONS)}")
    if not _is_int(warmup) or warmup < 0:
        raise ConfigError(f"invalid warmup={warmup!r}: must be an integer >= 0")
    if target_ppl is not None and not _is_positive_number(target_ppl):
        raise ConfigError(f"invalid target_ppl={target_ppl!r}: must be a positive number")
    if steps and epochs:
        raise ConfigError("give steps or epochs, not both")
    if (checkpoint or resume or epoch_batches) and not epochs:
        raise ConfigError("checkpoint, resume and epoch_batches go with epochs (--epochs N)")
    if resume and not checkpoint:
        raise ConfigError("resume needs a checkpoint file (--checkpoint FILE)")
    if epoch_batches and warmup >= epoch_batches:
        raise ConfigError(f"invalid warmup={warmup} with epoch_batches={epoch_batches}: the warm-up would "
                          f"leave no timed step in the first epoch; use a warm-up below {epoch_batches} "
                          f"(--warmup) or more batches per epoch (--epoch-batches)")
    cpus = env.cpu_count()
    warnings = []
    if threads and threads > cpus:
        too_many = (f"{threads} threads on this machine's {cpus} CPU(s): the threads queue for the "
                    f"cores, so the run times the scheduler, not the framework")
        if not oversubscribe:
            raise ConfigError(f"invalid threads={threads}: {too_many}; use {cpus} thread(s) or fewer (--threads), or pass "
                              f"--oversubscribe to measure it anyway (the record then carries a warning)")
        warnings.append(too_many)
    return {"config": cfg.to_dict(), "backend": backend, "layout": layout, "device": device,
            "threads": threads or cpus, "steps": steps, "epochs": epochs,
            "warmup": warmup, "eval": eval, "data_dir": str(data_dir) if data_dir else None,
            "target_ppl": target_ppl, "eval_batches": eval_batches, "epoch_batches": epoch_batches,
            "checkpoint": str(checkpoint) if checkpoint else None, "resume": resume,
            "compile": compile, "precision": precision, "warnings": warnings}


def _nearest_existing(path: Path) -> Path:
    for p in (path, *path.parents):
        if p.exists():
            return p
    return Path(".")


def check_writable(path, what: str) -> None:
    """Fail before the work if a record file (or the directory it goes in) cannot be written.
    Probes for real (root ignores permission bits; a read-only filesystem does not)."""
    path = Path(path)
    how = f"give {what} a writable file path"
    if path.is_dir():
        raise ConfigError(f"{what} {path} is a directory, not a file: {how}")
    if path.exists():
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_APPEND))  # appends nothing
        except OSError as e:
            raise ConfigError(f"{what} {path} cannot be written ({e.strerror}): {how}") from e
        return
    check_writable_dir(path.parent, what)


def check_writable_dir(directory, what: str) -> None:
    directory = Path(directory)
    base = _nearest_existing(directory)
    if not base.is_dir():
        raise ConfigError(f"{what}: {base} is a file, so {directory} cannot be a directory: "
                          f"give {what} a path in a writable directory")
    try:
        with tempfile.TemporaryFile(dir=base, prefix=".lmbench-probe-"):
            pass
    except OSError as e:
        raise ConfigError(f"{what}: cannot write in {base} ({e.strerror}): give {what} a path in a "
                          f"writable directory") from e


def check_checkpoint(spec: dict, overwrite: bool = False) -> None:
    """The checkpoint path is writable with room for a checkpoint, and an existing one is
    never overwritten by a fresh run by accident."""
    if not spec.get("checkpoint"):
        return
    from .weights import num_params

    path = Path(spec["checkpoint"])
    if path.exists() and not spec.get("resume") and not overwrite:
        raise ConfigError(f"checkpoint {path} already exists: pass --resume to continue it, or give "
                          f"--checkpoint a new path (or --overwrite to start it again from epoch 0)")
    check_writable(path, "--checkpoint")
    need = 2 * 4 * num_params(Config(**spec["config"])) + (1 << 20)  # float32 weights, old + new file
    base = _nearest_existing(path.parent)
    free = shutil.disk_usage(base).free
    if free < need:
        raise ConfigError(f"checkpoint {path}: {free / 2**20:,.1f} MiB free in {base}, a checkpoint needs "
                          f"{need / 2**20:,.1f} MiB: free space there or give --checkpoint another path")


@contextmanager
def signals_as_interrupt(signums=(signal.SIGTERM, signal.SIGHUP)):
    """SIGTERM and SIGHUP raise KeyboardInterrupt (like Ctrl-C) inside the block, so that
    every way of stopping lmbench runs the same cleanup: the worker killed, its temp dir gone."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt(signal.Signals(signum).name)

    previous = {s: signal.signal(s, interrupt) for s in signums}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def interrupt_exit_status(e: KeyboardInterrupt) -> int:
    """128 + the signal's number, as a shell reports a process the signal ended."""
    name = e.args[0] if e.args and isinstance(e.args[0], str) else "SIGINT"
    return 128 + int(getattr(signal, name, signal.SIGINT))


def _describe_exit(rc: int) -> str:
    if rc < 0:
        sig = signal.Signals(-rc).name
        hint = " (killed: out of memory?)" if -rc == signal.SIGKILL else ""
        return f"worker died from {sig}{hint}"
    return f"worker exited with status {rc} without a result"


def run_isolated(spec: dict, timeout: float | None = None, on_progress=None,
                 python: str = sys.executable) -> dict:
    """Run one spec in a fresh child process and return its full run record."""
    record = {
        "schema_version": SCHEMA_VERSION,
        "run_id": uuid.uuid4().hex,
        "utc_time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "backend": spec["backend"], "layout": spec["layout"], "config": spec["config"],
        "run": {k: spec.get(k) for k in RECORDED_RUN_FIELDS},
        "threads": spec["threads"],
    }
    if spec.get("warnings"):
        record["warnings"] = list(spec["warnings"])
    record["git_commit"], record["git_dirty"] = env.git_state()
    record.update(env.host())
    with tempfile.TemporaryDirectory(prefix="lmbench-run-") as tmp:
        spec_path, result_path = Path(tmp, "spec.json"), Path(tmp, "result.json")
        spec_path.write_text(json.dumps(spec))
        stderr_path = Path(tmp, "stderr.txt")
        read_fd, write_fd = os.pipe()
        with open(stderr_path, "wb") as stderr:
            # own session: a timeout kills the worker's whole process group; the worker ends
            # itself if this process dies (lmbench.lifeline)
            proc = subprocess.Popen(
                [python, "-m", "lmbench.worker", str(spec_path), str(result_path), str(write_fd)],
                stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr, pass_fds=(write_fd,),
                start_new_session=True, env={**os.environ, PARENT_PID_ENV: str(os.getpid())})
        os.close(write_fd)
        try:
            timed_out = _pump(proc, read_fd, timeout, on_progress)
        except BaseException:  # Ctrl-C or SIGTERM in the parent: take the child (own session) down too
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
            raise
        finally:
            os.close(read_fd)
        tail = stderr_path.read_text(errors="replace")[-4000:]
        result = json.loads(result_path.read_text()) if result_path.exists() else None
    if timed_out:
        record.update(status="failed", error_kind="timeout",
                      error=f"timed out after {timeout:g} s; the worker was killed", stderr_tail=tail)
    elif result is None:
        record.update(status="failed", error_kind="crash",
                      error=f"{_describe_exit(proc.returncode)}; last output:\n{tail[-1500:]}",
                      stderr_tail=tail)
    else:
        metrics = result.pop("metrics", None) or {}
        record.update(result)
        record["device"] = metrics.pop("device", None)
        record["environment"] = metrics.pop("environment", None)
        record["metrics"] = metrics if record["status"] == "ok" else None
        if record["status"] == "failed":
            record["stderr_tail"] = tail
    return record


def _pump(proc, read_fd, timeout, on_progress) -> bool:
    """Forward progress events until the child exits; kill it past `timeout`. True if killed."""
    deadline = time.monotonic() + timeout if timeout else None
    buf = b""
    open_pipe = True
    while True:
        wait = 0.5 if deadline is None else max(0.0, min(0.5, deadline - time.monotonic()))
        if open_pipe:
            ready, _, _ = select.select([read_fd], [], [], wait)
            if ready:
                chunk = os.read(read_fd, 65536)
                if not chunk:
                    open_pipe = False
                buf += chunk
                *lines, buf = buf.split(b"\n")
                for line in lines:
                    if on_progress and line.strip():
                        try:
                            on_progress(json.loads(line))
                        except ValueError:
                            pass
        else:
            time.sleep(wait)
        if proc.poll() is not None:
            return False
        if deadline is not None and time.monotonic() >= deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return True


def append_record(path, record: dict) -> None:
    """Append one JSON line all-or-nothing: one write() of the whole line on an O_APPEND
    descriptor under an exclusive lock; a failed or short write (a full disk, a file size
    limit) is cut back off, leaving the file exactly as it was, and raises RecordWriteError
    naming the path and the OS error."""
    path = Path(path)
    line = (json.dumps(record, allow_nan=True) + "\n").encode()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd, created = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_EXCL, 0o644), True
        except FileExistsError:
            fd, created = os.open(path, os.O_RDWR | os.O_APPEND), False
    except OSError as e:
        raise RecordWriteError(f"cannot append the record to {path} ({e.strerror}); "
                               f"nothing was written") from e
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        size = os.fstat(fd).st_size
        # a fragment an older lmbench or a killed writer left: start the record on a line of its own
        data = line if size == 0 or os.pread(fd, 1, size - 1) == b"\n" else b"\n" + line
        try:
            written = os.write(fd, data)
            if written != len(data):
                raise OSError(errno.ENOSPC, f"short write: {written} of {len(data)} bytes (disk full or "
                                            f"file size limit?)")
            os.fsync(fd)
        except OSError as e:
            try:
                os.ftruncate(fd, size)
                if created and size == 0:
                    path.unlink()
            except OSError:
                pass
            was = "no file was left" if created and size == 0 else f"the file was left as it was ({size} bytes)"
            raise RecordWriteError(f"could not append the record to {path} ({e.strerror}); {was}") from e
    finally:
        os.close(fd)


def summary(record: dict) -> str:
    """The one-screen human summary of a run record."""
    c, m = record["config"], record.get("metrics") or {}
    head = (f"{record['backend']}/{record['layout']}  {c['preset']} {c['mode']}"
            + (f"/{c['batching']}" if c["mode"] == "sentence" else "")
            + f"  B={c['batch_size']} H={c['hidden']} L={c['layers']}  device={record.get('device')}"
            + f"  threads={record['threads']}" + _variant(record.get("run") or {}))
    warnings = "".join(f"\n  WARNING: {w}" for w in record.get("warnings") or [])
    head += warnings
    if record["status"] == "skipped":
        return f"{head}\n  SKIPPED: {record['reason']}"
    if record["status"] != "ok":
        return f"{head}\n  FAILED: {record['error']}"
    env_ = record.get("environment") or {}
    st = m["step_time_ms"]
    lines = [head,
             f"  {env_.get('framework')} {env_.get('framework_version')}  steps={m['steps']} "
             f"(warm-up {m['warmup_steps']}: {m['warmup_seconds']:.2f} s, first step {m['first_step_ms']:.0f} ms)",
             f"  train  {m['train_words_per_sec']:,.0f} words/s  "
             + (f"step {st['median']:.2f} ms (p10 {st['p10']:.2f}, p90 {st['p90']:.2f})" if st["median"] is not None
                else f"step times: {m.get('step_time_source')}")
             + f"  padding {m['padding_fraction']:.1%}  "
             f"train ppl {m['train_ppl']:.2f}"]
    if m.get("eval_words_per_sec"):
        ppl = "  ".join(f"{s} ppl {m[s + '_ppl']:.2f}" for s in ("valid", "test") if f"{s}_ppl" in m)
        lines.append(f"  eval   {m['eval_words_per_sec']:,.0f} words/s  {ppl}")
    lines.append(f"  peak memory {m['peak_memory_bytes'] / 2**20:,.0f} MiB ({m['peak_memory_kind']})"
                 f"  achieved {m['achieved_flops_per_sec'] / 1e9:.2f} GFLOP/s")
    for e in m.get("epoch_log") or []:
        lines.append(f"  epoch {e['epoch']:>2}  lr {e['lr']:.4g}  train ppl {e['train_ppl']:.2f}"
                     + (f"  valid ppl {e['valid_ppl']:.2f}" if "valid_ppl" in e else "")
                     + f"  {e['wall_seconds']:.0f} s")
    return "\n".join(lines)


def _variant(run: dict) -> str:
    """ "  compile precision=bf16" for a variant run, "" for eager float32."""
    return (" compile" * bool(run.get("compile")) + (f" precision={run['precision']}"
            if run.get("precision", "fp32") != "fp32" else "")).replace(" ", "  ", 1)


def preflight(spec: dict, timeout=None, out=None, overwrite: bool = False) -> None:
    """What `run` checks before the work starts, so that nothing fails after it: the
    timeout, the record file and the checkpoint (ConfigError naming the problem)."""
    check_timeout(timeout)
    if out:
        check_writable(out, "--out")
    check_checkpoint(spec, overwrite)
