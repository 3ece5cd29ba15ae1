"""`lmbench peak`: the device's float32 matrix-multiply rate, per framework, once per machine.

The compute ceiling of a roofline, measured the way rooflines are: a large square GEMM
in the framework itself (each framework in its own child process, `python -m
lmbench.peak --child NAME`, with the same thread budget as a run), best of several
repetitions after a warm-up. Saved in results/<machine>/peak.json; the report divides
each run's achieved model FLOP/s by the figure of its framework and device.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

from . import env
from .files import write_atomic
from .backend import available_backends

# Best of 10 after a warm-up: the best of more repetitions is less sensitive to another
# tenant's bursts on a shared machine, and a 2048^2 GEMM costs well under a second.
REPS = 10
CHILD_TIMEOUT = 600  # seconds for one framework's import + warm-up + repetitions


def measure(framework: str, n: int | None, reps: int, device: str = "auto") -> dict:
    """GFLOP/s of an n x n float32 GEMM (2 n^3 FLOPs), best of `reps` after one warm-up.
    The GEMM itself is the backend module's `gemm(n, device)`: one module per framework."""
    from .backend import load_backend

    backend_cls = load_backend(framework)
    dev = "cuda" if device != "cpu" and backend_cls.cuda_available() else "cpu"
    n = n or (8192 if dev == "cuda" else 2048)  # large enough to reach the ceiling
    mm, version = sys.modules[backend_cls.__module__].gemm(n, dev)
    if reps < 1:
        raise ValueError(f"reps={reps}: at least one timed repetition")  # cmd_peak refuses it first
    mm()
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        mm()
        best = min(best, time.perf_counter() - t0)
    return {"gflops": 2 * n ** 3 / best / 1e9, "device": dev, "size": n, "framework_version": version}


def peak_file(results_dir="results") -> Path:
    return Path(results_dir) / env.machine_key() / "peak.json"


def record_machine_key(record: dict) -> str:
    """The machine key a record was filed under (lmbench.env.machine_key on its host)."""
    return env.machine_key(f"{record.get('cpu_model')}-{record.get('cpu_count')}cpu")


def find_peaks(record: dict, search: list[Path]) -> dict:
    """{framework: entry} from the peak.json of the record's machine: beside its results
    file, or in <dir>/<machine>/ of a directory given to the report (or above it)."""
    source = Path(str(record.get("_source", "")).rsplit(":", 1)[0]).parent
    key = record_machine_key(record)
    candidates = [source / "peak.json"]
    for base in search:
        base = base if base.is_dir() else base.parent
        for d in (base, *base.parents):
            candidates += [d / key / "peak.json", d / "peak.json"] if d.name != key else [d / "peak.json"]
    for f in candidates:
        if f.is_file():
            try:
                return json.loads(f.read_text())
            except ValueError:
                continue
    return {}


def peak_for(record: dict, search: list[Path]) -> float | None:
    """GFLOP/s of the record's framework on its device, or None if none was measured."""
    framework = (record.get("environment") or {}).get("framework") or record.get("backend")
    entry = find_peaks(record, search).get(framework)
    if not entry or entry.get("device", record.get("device")) != record.get("device"):
        return None
    return entry["gflops"]


def cmd_peak(a) -> int:
    from .cli import Fail

    for name, value in (("--reps", a.reps), ("--size", a.size), ("--threads", a.threads)):
        if value is not None and value < 1:
            raise Fail(f"invalid {name} {value}: must be a positive integer")
    bad = [f for f in a.frameworks if f not in available_backends()]
    if bad:
        raise Fail(f"unknown framework(s) {', '.join(bad)}: allowed: {', '.join(available_backends())}")
    if a.device == "cuda":
        from .bench import has_gpu

        if not has_gpu():
            raise Fail("--device cuda: this machine has no NVIDIA GPU; use --device cpu or auto")
    return measure_peaks(a.frameworks, a.results_dir, a.device, a.threads, a.reps, a.size)


def measure_peaks(frameworks, results_dir="results", device="auto", threads=None, reps=None, size=None,
                  say=print) -> int:
    """Measure each framework in its own child process and merge into peak.json; 0 if all did."""
    out = peak_file(results_dir)
    peaks = json.loads(out.read_text()) if out.is_file() else {}
    threads, reps = threads or env.cpu_count(), reps or REPS
    status = 0
    for fw in frameworks:
        cmd = [sys.executable, "-m", "lmbench.peak", "--child", fw, "--reps", str(reps),
               "--threads", str(threads), "--device", device] + (["--size", str(size)] if size else [])
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=CHILD_TIMEOUT)
        except subprocess.TimeoutExpired:  # run() kills the child before raising
            say(f"{fw}: GEMM peak failed: no result within {CHILD_TIMEOUT} s")
            status = 1
            continue
        lines = proc.stdout.strip().splitlines()
        if proc.returncode != 0 or not lines:
            err = proc.stderr.strip().splitlines()
            say(f"{fw}: GEMM peak failed: {err[-1] if err else f'exit status {proc.returncode}'}")
            status = 1
            continue
        entry = json.loads(lines[-1])
        entry.update(threads=threads, reps=reps, cpu_model=env.cpu_model(),
                     utc_time=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))
        peaks[fw] = entry
        say(f"{fw}: {entry['gflops']:,.1f} GFLOP/s float32 GEMM "
            f"({entry['size']}x{entry['size']}, {entry['device']}, {threads} threads)")
        write_atomic(out, json.dumps(peaks, indent=1) + "\n")  # after each framework: a later failure keeps it
    if peaks:
        say(f"saved in {out}")
    return status


def missing_peaks(frameworks, results_dir="results") -> list[str]:
    """Frameworks with no GEMM peak measured on this machine yet."""
    out = peak_file(results_dir)
    peaks = json.loads(out.read_text()) if out.is_file() else {}
    return [fw for fw in dict.fromkeys(frameworks) if fw in available_backends() and not _measured(peaks.get(fw))]


def _measured(entry) -> bool:
    """A usable figure: a positive GFLOP/s (an older lmbench saved 0.0 for --reps 0)."""
    gflops = entry.get("gflops") if isinstance(entry, dict) else None
    return isinstance(gflops, (int, float)) and not isinstance(gflops, bool) and math.isfinite(gflops) and gflops > 0


def add_parser(sub) -> None:
    p = sub.add_parser("peak", help="measure the float32 GEMM rate per framework (for utilisation)")
    p.add_argument("--frameworks", nargs="*", default=available_backends(), help="default: every backend")
    p.add_argument("--size", type=int, default=None, help="matrix size (default 2048 on CPU, 8192 on GPU)")
    p.add_argument("--reps", type=int, default=REPS, help=f"timed repetitions; the best counts (default {REPS})")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: all cores, as runs)")
    p.add_argument("--results-dir", default=os.environ.get("LMBENCH_RESULTS_DIR", "results"))
    p.set_defaults(func=cmd_peak)


def _child(argv) -> None:
    p = argparse.ArgumentParser(prog="python -m lmbench.peak")
    p.add_argument("--child", required=True, choices=available_backends())
    p.add_argument("--size", type=int, default=None)
    p.add_argument("--reps", type=int, default=REPS)
    p.add_argument("--threads", type=int, required=True)
    p.add_argument("--device", default="auto")
    a = p.parse_args(argv)
    from .lifeline import die_with_parent
    from .worker import set_thread_env

    die_with_parent()  # a killed `bench` must not leave its GEMM running

    set_thread_env(a.threads, a.child)  # before the framework import, exactly as a run does
    print(json.dumps(measure(a.child, a.size, a.reps, a.device)))


if __name__ == "__main__":
    _child(sys.argv[1:])
