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
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

from .. import __version__
from .. import env
from . import launch
from ..config import ConfigError
from .lifeline import owned_temp_dir
from ..runspec import EAGER, RunSpec, variant_label

SCHEMA_VERSION = 1


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


def check_checkpoint(spec: RunSpec, overwrite: bool = False) -> None:
    """The checkpoint path is writable with room for a checkpoint, and an existing one is
    never overwritten by a fresh run by accident."""
    if not spec.checkpoint:
        return
    from ..weights import num_params

    path = Path(spec.checkpoint)
    if path.exists() and not spec.resume and not overwrite:
        raise ConfigError(f"checkpoint {path} already exists: pass --resume to continue it, or give "
                          f"--checkpoint a new path (or --overwrite to start it again from epoch 0)")
    check_writable(path, "--checkpoint")
    need = 2 * 4 * num_params(spec.config) + (1 << 20)  # float32 weights, old + new file
    base = _nearest_existing(path.parent)
    free = shutil.disk_usage(base).free
    if free < need:
        raise ConfigError(f"checkpoint {path}: {free / 2**20:,.1f} MiB free in {base}, a checkpoint needs "
                          f"{need / 2**20:,.1f} MiB: free space there or give --checkpoint another path")
    import resource

    # a file-size limit (ulimit -f) would fail the first checkpoint write after an epoch's work
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    one = 4 * num_params(spec.config) + (1 << 16)
    if limit != resource.RLIM_INFINITY and limit < one:
        raise ConfigError(f"checkpoint {path}: this process may write files of at most {limit / 2**20:,.2f} MiB "
                          f"(ulimit -f), a checkpoint is about {one / 2**20:,.1f} MiB: raise the limit "
                          f"(ulimit -f unlimited) or run without --checkpoint")


@contextmanager
def signals_as_interrupt(signums=(signal.SIGTERM, signal.SIGHUP)):
    """SIGTERM and SIGHUP raise KeyboardInterrupt (like Ctrl-C) inside the block, so that
    every way of stopping lmbench runs the same cleanup: the worker killed, its temp dir gone.
    A signal ignored on entry stays ignored: `nohup lmbench bench &` must survive the logout."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt(signal.Signals(signum).name)

    previous = {s: signal.signal(s, interrupt) for s in signums if signal.getsignal(s) != signal.SIG_IGN}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def interrupt_exit_status(e: KeyboardInterrupt) -> int:
    """128 + the signal's number, as a shell reports a process the signal ended."""
    name = e.args[0] if e.args and isinstance(e.args[0], str) else "SIGINT"
    return 128 + int(getattr(signal, name, signal.SIGINT))


def run_isolated(spec: RunSpec, timeout: float | None = None, on_progress=None,
                 python: str = sys.executable) -> dict:
    """Run one spec in a fresh child process and return its full run record."""
    record = {
        "schema_version": SCHEMA_VERSION,
        "run_id": uuid.uuid4().hex,
        "utc_time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "backend": spec.backend, "layout": spec.layout, "config": spec.config.to_dict(),
        "run": spec.recorded(),
        "threads": spec.threads,
    }
    if spec.warnings:
        record["warnings"] = list(spec.warnings)
    record["git_commit"], record["git_dirty"] = env.git_state()
    record["lmbench_version"] = __version__  # the code's identity where there is no git checkout
    record.update(env.host())
    workers = spec.workers  # on this machine
    nodes, node_rank = spec.nodes, spec.node_rank
    ranks = list(range(node_rank * workers, (node_rank + 1) * workers))  # this machine's
    world = workers * nodes
    with owned_temp_dir("lmbench-run-") as tmp:  # a dead owner's is swept by the next run
        spec_path, result_path, fifo = Path(tmp, "spec.json"), Path(tmp, "result.json"), Path(tmp, "progress")
        spec_path.write_text(json.dumps(spec.to_dict()))
        stderr_path = Path(tmp, "stderr.txt")
        os.mkfifo(fifo)
        # the reading end, and a writing end held open so that the FIFO never reads as EOF
        # while no worker has it open yet
        read_fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        hold_fd = os.open(fifo, os.O_WRONLY)
        try:
            with open(stderr_path, "wb") as stderr:
                # own session(s), killed with everything they started on a timeout; a worker
                # ends itself if this process dies (lmbench.run.lifeline)
                job = launch.start("lmbench.run.worker", [spec_path, result_path, fifo], spec.backend,
                                   workers, Path(tmp), stderr, python, nodes, node_rank, spec.rendezvous)
            try:
                timed_out = _pump(job, read_fd, timeout, on_progress)
            except BaseException:  # Ctrl-C or SIGTERM in the parent: take the workers down too
                job.kill()
                if spec.checkpoint:  # the killed worker's lock file; its checkpoint stays for --resume
                    from .checkpoint import remove_stale_lock
                    remove_stale_lock(spec.checkpoint)
                raise
        finally:
            os.close(read_fd)
            os.close(hold_fd)
        tail = _output_tail(Path(tmp))
        if timed_out and spec.checkpoint:  # the killed worker's lock file; its checkpoint stays for --resume
            from .checkpoint import remove_stale_lock
            remove_stale_lock(spec.checkpoint)
        results = {rank: json.loads(path.read_text()) if path.exists() else None
                   for rank, path in ((r, launch.result_path(result_path, r, world)) for r in ranks)}
        unjoined = [json.loads(p.read_text()) for p in sorted(Path(tmp).glob("result.unjoined-*.json"))]
    missing = [rank for rank, result in results.items() if result is None]
    if unjoined and not timed_out:  # a worker failed before it joined the job: its error is the cause
        record.update({k: v for k, v in unjoined[0].items() if k != "metrics"}, metrics=None, stderr_tail=tail)
        record["error"] = f"a worker failed before joining the data-parallel job: {record['error']}"
    elif timed_out:
        who = f" (no result from worker rank {', '.join(map(str, missing))})" if world > 1 and missing else ""
        record.update(status="failed", error_kind="timeout",
                      error=f"timed out after {timeout:g} s{who}; the worker{'s were' if world > 1 else ' was'} "
                            f"killed", stderr_tail=tail)
    elif missing:
        who = "" if world == 1 else f"worker rank {', '.join(map(str, missing))} left no result: "
        record.update(status="failed", error_kind="crash", stderr_tail=tail,
                      error=f"{who}{job.exits()}; last output:\n{tail[-1500:]}")
    else:
        failed = [(rank, r) for rank, r in results.items() if r["status"] != "ok"]
        result = dict(failed[0][1] if failed else results[ranks[0]])
        if failed and world > 1:
            result["error"] = f"worker rank {failed[0][0]}: {result['error']}"
        metrics = result.pop("metrics", None) or {}
        record.update(result)
        record["device"] = metrics.pop("device", None)
        record["environment"] = metrics.pop("environment", None)
        if record["status"] == "ok" and world > 1:
            _combine_workers(metrics, [results[r]["metrics"] for r in ranks])
        record["metrics"] = metrics if record["status"] == "ok" else None
        if record["status"] == "failed":
            record["stderr_tail"] = tail
    return record


def _output_tail(tmp: Path, limit: int = 4000) -> str:
    """The end of the workers' output, and of each log a launcher wrote (paddle: logs/)."""
    tail = Path(tmp, "stderr.txt").read_text(errors="replace")[-limit:]
    for log in sorted(Path(tmp, "logs").glob("*")) if Path(tmp, "logs").is_dir() else []:
        if log.is_file() and log.stat().st_size:
            tail += f"\n--- {log.name} ---\n" + log.read_text(errors="replace")[-limit // 2:]
    return tail


def _combine_workers(metrics: dict, per_rank: list[dict]) -> None:
    """This machine's first worker's metrics (rank 0 evaluated) become the run's, with the
    throughput of the whole job: the real tokens of all workers (of every machine: the
    shards partition each batch, so every worker knows the total) over the slowest timed
    region here (every step is a collective: no worker finishes a step before all do)."""
    slowest = max(m["train_seconds"] for m in per_rank)
    dp = metrics["data_parallel"]
    tokens = dp["job_timed_tokens"]
    dp["per_worker"] = [{"rank": m["data_parallel"]["rank"], "train_words_per_sec": m["train_words_per_sec"],
                         "train_seconds": m["train_seconds"], "timed_tokens": m["timed_tokens"],
                         "step_time_ms": {k: m["step_time_ms"][k] for k in ("median", "p10", "p90")},
                         "allreduce_share": m["data_parallel"].get("allreduce_share"),
                         "first_time_shapes_timed": m.get("first_time_shapes_timed")}
                        for m in per_rank]
    # each A/B leg timed alike, by its slowest worker: a faster worker's own share would count
    # its wait for the slower one as all-reduce; that wait is the imbalance, kept apart
    legs = [m["data_parallel"].get("allreduce_ab") for m in per_rank]
    if legs and all(legs):
        with_s, without = max(x["with_seconds"] for x in legs), [x["without_seconds"] for x in legs]
        dp["allreduce_share"] = max(0.0, 1.0 - max(without) / with_s)
        dp["imbalance"] = max(without) / min(without) - 1.0
    else:  # records before the legs were kept, or an engine that cannot skip the all-reduce
        shares = [w["allreduce_share"] for w in dp["per_worker"] if w["allreduce_share"] is not None]
        dp["allreduce_share"] = sum(shares) / len(shares) if shares else None
    metrics.update(train_words_per_sec=tokens / slowest if slowest else None, train_seconds=slowest,
                   timed_tokens=tokens,
                   # any worker's cold step stalls every worker (a step is a collective)
                   first_time_shapes_timed=sum(m.get("first_time_shapes_timed") or 0 for m in per_rank),
                   timed_padded_positions=dp.get("job_timed_padded_positions"))
    from .worker import first_epoch_projection, lstm_work  # imports no framework

    metrics["work"] = lstm_work(metrics, (metrics.get("work") or {}).get("lstm_computes_padding"))
    if "first_epoch" in metrics:  # again, at the whole job's words/s
        metrics["first_epoch"] = first_epoch_projection(metrics)
    metrics["achieved_flops_per_sec"] = (metrics["train_words_per_sec"] or 0) * metrics["flops_per_token"]


def _pump(job, read_fd, timeout, on_progress) -> bool:
    """Forward progress events until the workers exit; kill them past `timeout`. True if killed."""
    deadline = time.monotonic() + timeout if timeout else None
    buf = b""
    while True:
        wait = 0.5 if deadline is None else max(0.0, min(0.5, deadline - time.monotonic()))
        ready, _, _ = select.select([read_fd], [], [], wait)
        done = job.poll()  # before reading: what a worker wrote before exiting is read below
        if ready or done:
            try:
                buf += os.read(read_fd, 65536)
            except BlockingIOError:
                pass
            *lines, buf = buf.split(b"\n")
            for line in lines:
                if on_progress and line.strip():
                    try:
                        on_progress(json.loads(line))
                    except ValueError:
                        pass
        if done:
            return False
        if deadline is not None and time.monotonic() >= deadline:
            job.kill()
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
            + f"  threads={record['threads']}" + _variant(record))
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


def _variant(record: dict) -> str:
    """ "  [compile bf16]" for a variant run, "" for eager float32."""
    run = record.get("run") or {}
    name = variant_label(bool(run.get("compile")), run.get("precision") or "fp32")
    return "" if name == EAGER else f"  [{name}]"


def check_rendezvous(spec: RunSpec) -> None:
    """On machine 0 of several, the rendezvous port must be free here: a launcher that
    cannot listen on it may wait (Paddle's does) until --timeout for machines that never
    come."""
    if spec.nodes <= 1 or spec.node_rank != 0:
        return
    import errno
    import socket

    host, _, port = spec.rendezvous.rpartition(":")
    try:
        infos = socket.getaddrinfo(host.strip("[]"), int(port), type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise ConfigError(f"--rendezvous {spec.rendezvous}: cannot resolve {host!r} ({e.strerror}): give "
                          f"machine 0's address") from e
    family, _, _, _, address = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a port in TIME_WAIT is free to listen on
        try:
            s.bind(address)
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise ConfigError(f"--rendezvous {spec.rendezvous}: port {port} is already in use on this machine "
                                  f"(machine 0, --node-rank 0, listens there): pick a free port, the same on "
                                  f"every machine") from e
            if e.errno != errno.EADDRNOTAVAIL:  # not this machine's address: its launcher says so
                raise


def preflight(spec: RunSpec, timeout=None, out=None, overwrite: bool = False) -> None:
    """What `run` checks before the work starts, so that nothing fails after it: the
    timeout, the record file, the checkpoint and a multi-machine run's rendezvous port
    (ConfigError naming the problem)."""
    check_timeout(timeout)
    if out:
        check_writable(out, "--out")
    check_checkpoint(spec, overwrite)
    check_rendezvous(spec)
