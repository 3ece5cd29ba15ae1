"""Realistic run records for report/compare tests, built the way lmbench.run.runner builds them."""
from __future__ import annotations

import copy

import numpy as np

from lmbench.config import make_config
from lmbench.run.runner import SCHEMA_VERSION


def record(backend="torch", layout="packed", batching="random", words_per_sec=1000.0, step_ms=100.0,
           spread=5.0, n=40, seed=0, mode="sentence", valid_ppl=None, padding=0.4, epoch_log=None,
           cpu="Test CPU", batch_size=20, status="ok", load_average=None, test_ppl=None,
           time_to_target=None, busy=False):
    """`busy`: False (a quiet window, as lmbench.env.busy_entry records it), True (busy) or
    None (an older record, without the measurement)."""
    rng = np.random.default_rng(seed)
    samples = list(np.round(rng.normal(step_ms, spread, n).clip(1), 4))
    cfg = make_config("small", mode=mode, batching=batching, batch_size=batch_size).to_dict()
    r = {"schema_version": SCHEMA_VERSION, "run_id": f"id{seed}", "utc_time": "2026-11-22T10:00:00+00:00",
         "backend": backend, "layout": layout, "config": cfg,
         "run": {"steps": n, "epochs": None, "warmup": 2, "eval": "none", "eval_batches": None,
                 "epoch_batches": None, "device": "auto", "threads": 2},
         "threads": 2, "load_average": load_average, "git_commit": "abc123", "git_dirty": False, "hostname": "h", "cpu_model": cpu,
         "cpu_count": 2, "python_version": "3.11.7", "platform": "linux", "status": status,
         "error": None if status == "ok" else "RuntimeError: boom\nTraceback ...",
         "error_kind": None if status == "ok" else "crash", "device": "cpu",
         "environment": {"framework": backend, "framework_version": "1.0", "device_name": "cpu",
                         "cuda_version": None, "cudnn_version": None}}
    r["metrics"] = None if status != "ok" else {
        "train_words_per_sec": words_per_sec, "step_time_ms": {
            "median": float(np.median(samples)), "p10": float(np.percentile(samples, 10)),
            "p90": float(np.percentile(samples, 90)), "samples": samples},
        "eval_words_per_sec": 3 * words_per_sec, "valid_ppl": valid_ppl, "test_ppl": test_ppl, "peak_memory_bytes": 600 * 2 ** 20,
        "padding_fraction": padding, "achieved_flops_per_sec": words_per_sec * 15.8e6, "flops_per_token": 15.8e6,
        "epoch_log": epoch_log, "target_ppl": 125.0 if epoch_log else None,
        "time_to_target_seconds": time_to_target, "tokens": 1000, "timed_tokens": 900, "train_seconds": 1.0}
    if r["metrics"] is not None and busy is not None:
        r["metrics"]["busy"] = {"load_average": [0.2, 0.3], "steal_share": 0.0 if not busy else 0.01,
                                "other_cpu_share": 0.4 if busy else 0.02, "busy": busy,
                                "why": "other processes used 40% of the machine's CPU time (> 10%)" if busy
                                else "quiet: others 2%, steal 0% of the CPU time"}
    return r


def slower(r, factor, seed):
    """The same run, `factor` times slower, with fresh noise."""
    s = copy.deepcopy(r)
    st = r["metrics"]["step_time_ms"]
    fresh = record(step_ms=st["median"] * factor, n=len(st["samples"]), seed=seed,
                   spread=np.std(st["samples"]) * factor)
    s["metrics"]["step_time_ms"] = fresh["metrics"]["step_time_ms"]
    s["metrics"]["train_words_per_sec"] = r["metrics"]["train_words_per_sec"] / factor
    return s
