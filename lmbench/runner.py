"""The parent side of a run: one fresh child process per run, one JSON record per run.

The parent never imports a framework. Whatever happens to the child (a crash, a hang
past the timeout, an out-of-memory kill, a missing framework), the parent writes a
record with status "failed" and the reason, and goes on.
"""
from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from . import env
from .config import Config, ConfigError

SCHEMA_VERSION = 1
RECORDED_RUN_FIELDS = ("steps", "epochs", "warmup", "eval", "eval_batches", "epoch_batches", "device",
                       "threads")


def run_spec(cfg: Config, backend: str, layout: str | None = None, device: str = "auto",
             threads: int | None = None, steps: int | None = None, epochs: int | None = None,
             warmup: int = 10, eval: str = "valid", data_dir=None, target_ppl=None,
             eval_batches: int | None = None, checkpoint=None, resume: bool = False,
             epoch_batches: int | None = None) -> dict:
    from .backend import backend_layouts

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
        if value is not None and value <= 0:
                raise ConfigError(f"invalid {name}={value!r}: must be a positive integer")
    if warmup < 0:
        raise ConfigError(f"invalid warmup={warmup!r}: must be >= 0")
    return {"config": cfg.to_dict(), "backend": backend, "layout": layout, "device": device,
            "threads": threads or env.cpu_count(), "steps": steps, "epochs": epochs,
            "warmup": warmup, "eval": eval, "data_dir": str(data_dir) if data_dir else None,
            "target_ppl": target_ppl, "eval_batches": eval_batches, "epoch_batches": epoch_batches,
            "checkpoint": str(checkpoint) if checkpoint else None, "resume": resume}


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
    record["git_commit"], record["git_dirty"] = env.git_state()
    record.update(env.host())
    with tempfile.TemporaryDirectory(prefix="lmbench-run-") as tmp:
        spec_path, result_path = Path(tmp, "spec.json"), Path(tmp, "result.json")
        spec_path.write_text(json.dumps(spec))
        stderr_path = Path(tmp, "stderr.txt")
        read_fd, write_fd = os.pipe()
        with open(stderr_path, "wb") as stderr:
            proc = subprocess.Popen(
                [python, "-m", "lmbench.worker", str(spec_path), str(result_path), str(write_fd)],
                stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr, pass_fds=(write_fd,),
                start_new_session=True)
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
        if record["status"] != "ok":
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
    """Append one JSON line atomically: one write() of the whole line under an exclusive lock."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(record, allow_nan=True) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        written = os.write(fd, line)
        if written != len(line):
            raise OSError(f"short write to {path}: {written} of {len(line)} bytes")
        os.fsync(fd)
    finally:
        os.close(fd)


def summary(record: dict) -> str:
    """The one-screen human summary of a run record."""
    c, m = record["config"], record.get("metrics") or {}
    head = (f"{record['backend']}/{record['layout']}  {c['preset']} {c['mode']}"
            + (f"/{c['batching']}" if c["mode"] == "sentence" else "")
            + f"  B={c['batch_size']} H={c['hidden']} L={c['layers']}  device={record.get('device')}"
            + f"  threads={record['threads']}")
    if record["status"] != "ok":
        return f"{head}\n  FAILED: {record['error']}"
    env_ = record.get("environment") or {}
    st = m["step_time_ms"]
    lines = [head,
             f"  {env_.get('framework')} {env_.get('framework_version')}  steps={m['steps']} "
             f"(warm-up {m['warmup_steps']}: {m['warmup_seconds']:.2f} s, first step {m['first_step_ms']:.0f} ms)",
             f"  train  {m['train_words_per_sec']:,.0f} words/s  step {st['median']:.2f} ms "
             f"(p10 {st['p10']:.2f}, p90 {st['p90']:.2f})  padding {m['padding_fraction']:.1%}  "
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
