"""`lmbench peak`: the device's float32 matrix-multiply rate, per framework, once per machine.

Like a roofline's compute ceiling: a large square GEMM in the framework itself (each in
its own process), best of several repetitions. The report divides every run's achieved
model FLOP/s by its framework's figure.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from . import env

GEMM = {
    "torch": ("import torch; dev = 'cuda' if torch.cuda.is_available() else 'cpu'\n"
              "a = torch.randn(n, n, device=dev); b = torch.randn(n, n, device=dev)\n"
              "def mm():\n    (a @ b).sum().item()"),
    "tensorflow": ("import tensorflow as tf\n"
                   "a = tf.random.normal([n, n]); b = tf.random.normal([n, n])\n"
                   "def mm():\n    tf.reduce_sum(tf.linalg.matmul(a, b)).numpy()"),
    "paddle": ("import paddle\n"
               "a = paddle.randn([n, n]); b = paddle.randn([n, n])\n"
               "def mm():\n    float(paddle.matmul(a, b).sum())"),
}


def measure(framework: str, n: int, reps: int) -> float:
    """GFLOP/s of an n x n float32 GEMM (2 n^3 FLOPs), best of `reps` after a warm-up."""
    scope = {"n": n}
    exec(GEMM[framework], scope)  # noqa: S102 -- our own constant snippets
    scope["mm"]()
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        scope["mm"]()
        best = min(best, time.perf_counter() - t0)
    return 2 * n ** 3 / best / 1e9


def peak_file(results_dir="results") -> Path:
    return Path(results_dir) / env.machine_key() / "peak.json"


def load_peaks(paths=("results",)) -> dict[str, float]:
    """GFLOP/s per framework for this machine: a peak.json beside the results or above them."""
    for p in map(Path, paths):
        start = p if p.is_dir() else p.parent
        for base in (start, *start.parents):
            for f in (base / "peak.json", base / env.machine_key() / "peak.json"):
                if f.is_file():
                    return {k: v["gflops"] for k, v in json.loads(f.read_text()).items()}
    return {}


def cmd_peak(a) -> int:
    out = peak_file(a.results_dir)
    peaks = json.loads(out.read_text()) if out.is_file() else {}
    status = 0
    for fw in a.frameworks:
        proc = subprocess.run([sys.executable, "-m", "lmbench.peak", fw, str(a.size), str(a.reps),
                               str(a.threads or env.cpu_count())], capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"{fw}: failed: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode}")
            status = 1
            continue
        gflops = float(proc.stdout.strip().splitlines()[-1])
        peaks[fw] = {"gflops": gflops, "size": a.size, "threads": a.threads or env.cpu_count(),
                     "cpu_model": env.cpu_model()}
        print(f"{fw}: {gflops:,.1f} GFLOP/s float32 GEMM ({a.size}x{a.size})")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(peaks, indent=1))
    print(f"saved in {out}")
    return status


def add_parser(sub) -> None:
    p = sub.add_parser("peak", help="measure the float32 GEMM rate per framework (for utilisation)")
    p.add_argument("--frameworks", nargs="*", default=list(GEMM))
    p.add_argument("--size", type=int, default=2048)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--results-dir", default="results")
    p.set_defaults(func=cmd_peak)


if __name__ == "__main__":  # child: python -m lmbench.peak FRAMEWORK SIZE REPS THREADS
    from .worker import set_thread_env

    set_thread_env(int(sys.argv[4]))
    print(measure(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
