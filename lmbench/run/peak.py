"""`lmbench peak`: the device's matrix-multiply rate, per framework, once per machine.

The compute ceiling of a roofline, measured the way rooflines are: a large square GEMM
in the framework itself (each framework in its own child process, `python -m
lmbench.run.peak --child NAME`, with the same thread budget as a run), best of several
repetitions after a warm-up. --precision fp32 (default) is true float32 (TF32 off on a
GPU, in every backend's gemm()); --precision bf16 measures the bfloat16 ceiling that a
bf16 run's utilisation divides by (ceiling_for). Saved in results/<machine>/peak.json:
the float32 entry of a framework under its name, a bf16 one under "bf16"; the report
divides each run's achieved model FLOP/s by the figure of its framework, device and
precision.

Every figure is checked against the device's theoretical peak (theoretical_peak: cores x
FMA units x SIMD lanes x 2 x clock on a CPU, SMs x FLOP per clock x clock on a GPU): a
figure above it is a measurement error, refused and not saved.
"""
from __future__ import annotations

import argparse
import ctypes
import datetime as dt
import glob
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from .. import env
from ..files import write_atomic
from ..backend import available_backends

# Best of 10 after a warm-up: the best of more repetitions is less sensitive to another
# tenant's bursts on a shared machine, and a 2048^2 GEMM costs well under a second.
REPS = 10
CHILD_TIMEOUT = 600  # seconds for one framework's import + warm-up + repetitions


PRECISIONS = ("fp32", "bf16")


def measure(framework: str, n: int | None, reps: int, device: str = "auto", precision: str = "fp32") -> dict:
    """GFLOP/s of an n x n GEMM (2 n^3 FLOPs) in `precision`, best of `reps` after one warm-up.
    The GEMM itself is the backend module's `gemm(n, device, precision)`: one module per framework."""
    from ..backend import load_backend

    backend_cls = load_backend(framework)
    dev = "cuda" if device != "cpu" and backend_cls.cuda_available() else "cpu"
    n = n or (8192 if dev == "cuda" else 2048)  # large enough to reach the ceiling
    if reps < 1:
        raise ValueError(f"reps={reps}: at least one timed repetition")  # cmd_peak refuses it first
    mm, version = sys.modules[backend_cls.__module__].gemm(n, dev, precision)
    mm()
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        mm()
        best = min(best, time.perf_counter() - t0)
    return {"gflops": 2 * n ** 3 / best / 1e9, "device": dev, "size": n, "framework_version": version,
            "precision": precision, "tf32": False if precision == "fp32" else None}


# -- the theoretical peak a measured figure must stay under -------------------------------------
# Where the vendor documents a core's FMA datapath: (FMA units, bits per unit). AMD family 23
# (Zen, Zen 2) and 25 (Zen 3, Zen 4) have two FMA pipes of at most 256 bits; Zen 4 executes
# AVX-512 on them in two halves (AMD, Software Optimization Guide for the Zen 4
# Microarchitecture, 2.11). Elsewhere the bound assumes 2 units (4 on ARM) as wide as the
# widest vector the flags allow: no shipped core has more, so the bound may be loose, never low.
FMA_DATAPATHS = {("AuthenticAMD", 23): (2, 256), ("AuthenticAMD", 25): (2, 256)}
# A virtual machine hides the host's clock (no cpufreq; /proc/cpuinfo's "cpu MHz" is the
# nominal clock, which boost exceeds: one Zen 4 core here computes 112 GFLOP/s, 3.5 GHz at
# 32 FLOP per cycle, over a 2.6 GHz "cpu MHz"). Without cpuinfo_max_freq the bound takes the
# highest boost clock any x86 CPU has shipped with (Intel Core i9-14900KS, 6.2 GHz).
MAX_CLOCK_GHZ = 6.2
AMX_BF16_FLOP_PER_CYCLE = 2048  # Intel AMX: 1024 bf16 multiply-adds per cycle per core (SPR)
# NVIDIA, per SM per clock: (float32 FLOP on CUDA cores, dense bf16 FLOP on tensor cores
# with float32 accumulate), from the architecture whitepapers (V100 15.7 TFLOPS = 80 SMs x
# 1.53 GHz x 128; A100 19.5/312; RTX 3090 35.6/71; RTX 4090 82.6/165; H100 SXM 67/989).
GPU_FLOP_PER_CLOCK = {(7, 0): (128, None), (8, 0): (128, 2048), (8, 6): (256, 512), (8, 9): (256, 512),
                      (9, 0): (256, 4096)}


def cpu_clock_bound() -> tuple[float, str]:
    """(GHz, where from): the highest cpuinfo_max_freq of the CPUs, else MAX_CLOCK_GHZ."""
    freqs = []
    for f in glob.glob("/sys/devices/system/cpu/cpu[0-9]*/cpufreq/cpuinfo_max_freq"):
        try:
            freqs.append(int(Path(f).read_text()) / 1e6)
        except (OSError, ValueError):
            continue
    if freqs:
        return max(freqs), "cpufreq cpuinfo_max_freq"
    return MAX_CLOCK_GHZ, (f"clock not readable here (no cpufreq, e.g. a VM): {MAX_CLOCK_GHZ} GHz, the highest "
                           f"boost clock of any x86 CPU")


def cpu_peak(cores: int, precision: str = "fp32", facts: dict | None = None, clock=None) -> dict:
    """The theoretical GEMM peak of `cores` cores: {"gflops", "flop_per_cycle", "clock_ghz", "basis"}."""
    facts = env.cpu_facts() if facts is None else facts
    isa = set(facts.get("isa") or [])
    ghz, clock_basis = clock or cpu_clock_bound()
    width = 512 if "avx512f" in isa or "sve" in isa else 256 if isa & {"avx", "avx2", "fma"} else 128
    known = FMA_DATAPATHS.get((facts.get("vendor"), facts.get("family")))
    if known:
        units, width = known[0], min(width, known[1])
        unit_basis = f"{units} FMA units of {width} bits ({facts.get('vendor')} family {facts.get('family')})"
    else:
        units = 4 if isa & {"asimd", "sve"} else 2
        unit_basis = f"at most {units} FMA units of {width} bits (not documented here for this CPU: an upper bound)"
    fp32 = units * (width // 32) * 2  # an FMA is 2 FLOPs per lane
    if precision == "fp32":
        per_cycle, how = fp32, "float32"
    elif "amx_bf16" in isa:
        per_cycle, how = AMX_BF16_FLOP_PER_CYCLE, "bf16 on AMX"
    elif isa & {"avx512_bf16", "bf16"}:
        per_cycle, how = 2 * fp32, "bf16 dot products (2 per 32-bit lane)"
    else:
        per_cycle, how = fp32, "bf16 without bf16 instructions: computed as float32"
    return {"gflops": cores * per_cycle * ghz, "flop_per_cycle": per_cycle, "clock_ghz": ghz,
            "basis": f"{cores} core(s) x {per_cycle} FLOP/cycle ({how}; {unit_basis}) x {ghz:g} GHz ({clock_basis})"}


def cuda_device_facts(index: int = 0) -> dict | None:
    """SM count, compute capability and clock of a GPU from the driver (libcuda, no framework),
    or None without one. The clock is the driver's peak clock, else nvidia-smi's max SM clock."""
    try:
        lib = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return None
    dev = ctypes.c_int()
    if lib.cuInit(0) != 0 or lib.cuDeviceGet(ctypes.byref(dev), index) != 0:
        return None

    def attr(number):  # CUdevice_attribute
        value = ctypes.c_int()
        return value.value if lib.cuDeviceGetAttribute(ctypes.byref(value), number, dev) == 0 else None
    sms, khz, major, minor = attr(16), attr(13), attr(75), attr(76)
    mhz = khz / 1e3 if khz else None
    smi = shutil.which("nvidia-smi")
    if not mhz and smi:
        out = subprocess.run([smi, "-i", str(index), "--query-gpu=clocks.max.sm", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=30)
        mhz = float(out.stdout.strip()) if out.returncode == 0 and out.stdout.strip() else None
    return {"sms": sms, "compute_capability": (major, minor), "clock_mhz": mhz}


def gpu_peak(precision: str = "fp32", facts: dict | None = None) -> dict:
    """The theoretical GEMM peak of the GPU: {"gflops" (None where unknown), "basis"}."""
    facts = cuda_device_facts() if facts is None else facts
    if not facts or not facts.get("sms") or not facts.get("clock_mhz"):
        return {"gflops": None, "basis": "GPU not readable through libcuda: not checked"}
    cap = tuple(facts["compute_capability"])
    per_clock = GPU_FLOP_PER_CLOCK.get(cap, (None, None))[0 if precision == "fp32" else 1]
    if per_clock is None:
        return {"gflops": None, "basis": f"compute capability {cap[0]}.{cap[1]}: no published {precision} rate "
                                         f"in lmbench's table, not checked"}
    return {"gflops": facts["sms"] * per_clock * facts["clock_mhz"] / 1e3,
            "basis": f"{facts['sms']} SMs x {per_clock} {precision} FLOP/clock (compute capability "
                     f"{cap[0]}.{cap[1]}) x {facts['clock_mhz']:g} MHz"}


def theoretical_peak(device: str, precision: str = "fp32", threads: int | None = None) -> dict:
    """What no correct measurement can exceed on this machine's `device` with `threads` cores."""
    if device == "cuda":
        return gpu_peak(precision)
    return cpu_peak(min(threads or env.cpu_count(), env.cpu_count()), precision)


def check_figure(entry: dict, bound: dict) -> str | None:
    """Why a measured figure is refused (above the theoretical peak), or None."""
    if bound.get("gflops") and entry["gflops"] > bound["gflops"]:
        return (f"{entry['gflops']:,.1f} GFLOP/s is above the theoretical peak {bound['gflops']:,.1f} "
                f"({bound['basis']}): a measurement error, not a rate")
    return None


def ceiling_for(peak_data: dict, backend: str, precision: str = "fp32", device: str | None = None) -> dict | None:
    """The GEMM entry a run's utilisation divides by: its framework's, in its precision (a bf16
    run by the bf16 ceiling, never the float32 one), on its device; None where none was
    measured or the entry is above the theoretical peak recorded with it."""
    table = peak_data if precision == "fp32" else peak_data.get(precision) or {}
    entry = table.get(backend) if isinstance(table, dict) else None
    if not isinstance(entry, dict) or not entry.get("gflops"):
        return None
    if entry.get("precision", "fp32") != precision or (device and entry.get("device", device) != device):
        return None
    if entry.get("theoretical_gflops") and entry["gflops"] > entry["theoretical_gflops"]:
        return None
    return entry


def peak_file(results_dir="results") -> Path:
    return Path(results_dir) / env.machine_key() / "peak.json"


def record_machine_key(record: dict) -> str:
    """The machine key a record was filed under (lmbench.env.machine_key on its host)."""
    return env.record_machine_key(record)


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
    from ..errors import UserError as Fail

    for name, value in (("--reps", a.reps), ("--size", a.size), ("--threads", a.threads)):
        if value is not None and value < 1:
            raise Fail(f"invalid {name} {value}: must be a positive integer")
    bad = [f for f in a.frameworks if f not in available_backends()]
    if bad:
        raise Fail(f"unknown framework(s) {', '.join(bad)}: allowed: {', '.join(available_backends())}")
    if a.device == "cuda":
        from ..env import has_gpu

        if not has_gpu():
            raise Fail("--device cuda: this machine has no NVIDIA GPU; use --device cpu or auto")
    return measure_peaks(a.frameworks, a.results_dir, a.device, a.threads, a.reps, a.size, precision=a.precision)


def measure_peaks(frameworks, results_dir="results", device="auto", threads=None, reps=None, size=None,
                  say=print, precision="fp32", bound=theoretical_peak) -> int:
    """Measure each framework in its own child process and merge into peak.json; 0 if all did.
    A figure above the theoretical peak (`bound(device, precision, threads)`) is refused."""
    out = peak_file(results_dir)
    peaks = json.loads(out.read_text()) if out.is_file() else {}
    threads, reps = threads or env.cpu_count(), reps or REPS
    status = 0
    for fw in frameworks:
        cmd = [sys.executable, "-m", "lmbench.run.peak", "--child", fw, "--reps", str(reps), "--threads", str(threads),
               "--device", device, "--precision", precision] + (["--size", str(size)] if size else [])
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
        limit = bound(entry["device"], precision, threads)
        entry.update(threads=threads, reps=reps, cpu_model=env.cpu_model(), machine_key=env.machine_key(),
                     theoretical_gflops=limit.get("gflops"), theoretical_basis=limit.get("basis"),
                     utc_time=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))
        refused = check_figure(entry, limit)
        if refused:
            say(f"{fw}: {precision} GEMM peak REFUSED, not saved: {refused}")
            status = 1
            continue
        (peaks if precision == "fp32" else peaks.setdefault(precision, {}))[fw] = entry
        ceiling = f", theoretical peak {limit['gflops']:,.1f}" if limit.get("gflops") else ", theoretical peak unknown"
        say(f"{fw}: {entry['gflops']:,.1f} GFLOP/s {precision} GEMM "
            f"({entry['size']}x{entry['size']}, {entry['device']}, {threads} threads{ceiling})")
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
    p = sub.add_parser("peak", help="measure the GEMM rate per framework and precision (for utilisation)")
    p.add_argument("--precision", default="fp32", choices=PRECISIONS,
                   help="fp32 (true float32, TF32 off; default) or bf16 (the ceiling of bf16 runs)")
    p.add_argument("--frameworks", nargs="*", default=available_backends(), help="default: every backend")
    p.add_argument("--size", type=int, default=None, help="matrix size (default 2048 on CPU, 8192 on GPU)")
    p.add_argument("--reps", type=int, default=REPS, help=f"timed repetitions; the best counts (default {REPS})")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: all cores, as runs)")
    p.add_argument("--results-dir", default=os.environ.get("LMBENCH_RESULTS_DIR", "results"))
    p.set_defaults(func=cmd_peak)


def _child(argv) -> None:
    p = argparse.ArgumentParser(prog="python -m lmbench.run.peak")
    p.add_argument("--child", required=True, choices=available_backends())
    p.add_argument("--size", type=int, default=None)
    p.add_argument("--reps", type=int, default=REPS)
    p.add_argument("--threads", type=int, required=True)
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default="fp32", choices=PRECISIONS)
    a = p.parse_args(argv)
    from .lifeline import die_with_parent
    from .worker import set_thread_env

    die_with_parent()  # a killed `bench` must not leave its GEMM running

    set_thread_env(a.threads, a.child)  # before the framework import, exactly as a run does
    print(json.dumps(measure(a.child, a.size, a.reps, a.device, a.precision)))


if __name__ == "__main__":
    _child(sys.argv[1:])
