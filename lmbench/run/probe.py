"""Drive one backend through a scripted sequence of calls in its own process.

`lmbench verify` and the tests use this to feed every framework the very same numpy
batches and weights, and to compare what comes back in the parent, on numpy arrays.

Script steps (each returns one entry of the result list):
    ("loss_and_grads", i)      -> (objective, {name: grad})
    ("train_step", i, lr)      -> summed NLL of batch i before the update
    ("eval", [i, ...])         -> summed NLL over those batches (state carried if stream)
    ("weights",)               -> {name: array} in the canonical layout
    ("reset",)                 -> None (forget the carried state)
"""
from __future__ import annotations

import os
import pickle
import subprocess
import sys
import time
from pathlib import Path

from .lifeline import owned_temp_dir


class ProbeError(RuntimeError):
    pass


SKIPPED = "skipped"  # a layout's result is (SKIPPED, reason) when its backend declined the variant


def probe(backend: str, layouts, cfg, weights: dict, batches: list, script: list,
          device: str = "cpu", threads: int = 1, timeout: float = 900, options=None, workers: int = 1):
    """Run `script` on a fresh model per layout (all in one child process, since importing
    a framework is the slow part); returns {layout: [one result per script step]}, or
    {layout: (SKIPPED, reason)} where the backend declined the variant in `options`
    (compile=..., precision=...: the backend's run settings).

    With `workers` > 1, one layout, as a data-parallel job started the way `lmbench run
    --workers` starts one (lmbench.run.launch): every worker plays the script on its shard of
    each batch (lmbench.data.corpus.shard), `threads` threads each; returns one result list per
    rank ("loss_and_grads" and "eval" are single-process steps: not allowed)."""
    from ..backend import declined, layout_env

    if workers > 1:
        return _probe_workers(backend, layouts, cfg, weights, batches, script, device, threads, timeout, workers)

    layouts = [layouts] if isinstance(layouts, str) else list(layouts)
    options = options or {}
    out = {}  # the variants the backend declares it declines: no process, no framework import
    for layout in layouts:
        reason = declined(backend, layout, device, options.get("compile", False), options.get("precision", "fp32"))
        if reason:
            out[layout] = (SKIPPED, reason)
    groups: dict[tuple, list[str]] = {}  # layouts that need the same environment share a process
    for layout in layouts:
        if layout not in out:
            groups.setdefault(tuple(sorted(layout_env(backend, layout).items())), []).append(layout)
    if out or len(groups) > 1:
        for group in groups.values():
            out.update(probe(backend, group, cfg, weights, batches, script, device, threads, timeout, options))
        return {layout: out[layout] for layout in layouts}
    return _in_child(dict(backend=backend, layouts=layouts, config=cfg.to_dict(), weights=weights,
                          batches=batches, script=script, device=device, threads=threads,
                          options=options or {}), timeout)


def _in_child(job: dict, timeout: float) -> dict:
    """One probe process: `job` (what _main reads) in, {layout: results} out. Everything the
    child computes comes from `job`, the code and the environment (the tests share the
    result of an identical job within one session on that basis: tests/session_support.py)."""
    with owned_temp_dir("lmbench-probe-") as tmp:  # a killed verify's is swept by the next one
        src, dst = Path(tmp, "in.pkl"), Path(tmp, "out.pkl")
        with open(src, "wb") as f:
            pickle.dump(job, f)
        proc = subprocess.run([sys.executable, "-m", "lmbench.run.probe", str(src), str(dst)],
                              capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
        if proc.returncode != 0 or not dst.exists():
            raise ProbeError(f"{job['backend']} {job['layouts']} probe failed (exit {proc.returncode}):\n"
                             f"{proc.stderr[-3000:]}")
        with open(dst, "rb") as f:
            return pickle.load(f)


def _probe_workers(backend, layout, cfg, weights, batches, script, device, threads, timeout, workers):
    from . import launch

    layout = layout if isinstance(layout, str) else layout[0]
    if any(step[0] in ("loss_and_grads", "eval") for step in script):
        raise ValueError("a data-parallel probe plays train_step, weights and reset steps only")
    with owned_temp_dir("lmbench-probe-") as tmp:
        src, dst, output = Path(tmp, "in.pkl"), Path(tmp, "out.pkl"), Path(tmp, "output.txt")
        with open(src, "wb") as f:
            pickle.dump(dict(backend=backend, layouts=[layout], config=cfg.to_dict(), weights=weights,
                             batches=batches, script=script, device=device, threads=threads,
                             workers=workers), f)
        with open(output, "wb") as out:
            job = launch.start("lmbench.run.probe", [src, dst], backend, workers, Path(tmp), out)
        deadline = time.monotonic() + timeout
        try:
            while not job.poll():
                if time.monotonic() > deadline:
                    job.kill()
                    raise ProbeError(f"{backend} {layout} probe with {workers} workers timed out after "
                                     f"{timeout:g} s:\n{output.read_text(errors='replace')[-3000:]}")
                time.sleep(0.2)
        except BaseException:
            job.kill()
            raise
        paths = [launch.result_path(dst, rank, workers) for rank in range(workers)]
        if not all(p.exists() for p in paths):
            missing = [str(r) for r, p in enumerate(paths) if not p.exists()]
            raise ProbeError(f"{backend} {layout} probe with {workers} workers failed: no result from worker "
                             f"rank {', '.join(missing)} ({job.exits()}):\n{output.read_text(errors='replace')[-3000:]}")
        out = []
        for p in paths:
            with open(p, "rb") as f:
                out.append(pickle.load(f)[layout])
        return out


def _main(src: str, dst: str) -> None:
    from .lifeline import die_with_parent
    from .worker import set_thread_env

    die_with_parent(os.path.dirname(os.path.abspath(src)))  # a killed verify must not leave its probe running

    with open(src, "rb") as f:
        job = pickle.load(f)
    set_thread_env(job["threads"], job["backend"])
    from ..backend import VariantSkipped, layout_env, load_backend

    os.environ.update(layout_env(job["backend"], job["layouts"][0]))
    from ..config import Config
    from ..data.corpus import shard
    from .launch import result_path

    cfg = Config(**job["config"])
    backend_cls = load_backend(job["backend"])
    workers = job.get("workers", 1)
    rank = backend_cls.join(workers, job["device"]) if workers > 1 else 0
    batches = [shard(b, rank, workers) for b in job["batches"]] if workers > 1 else job["batches"]
    results = {}
    for layout in job["layouts"]:
        try:
            be = backend_cls(cfg, layout, job["device"], job["threads"], workers=workers, **job.get("options", {}))
        except VariantSkipped as e:
            results[layout] = (SKIPPED, str(e))
            continue
        be.set_weights(job["weights"])
        results[layout] = _play(be, batches, job["script"])
        be.leave()
    with open(result_path(dst, rank, workers), "wb") as f:
        pickle.dump(results, f)


def _play(be, batches, script) -> list:
    out = []
    for step in script:
        op = step[0]
        if op == "loss_and_grads":
            loss, grads = be.loss_and_grads(batches[step[1]])
            out.append((float(loss), grads))
        elif op == "train_step":
            out.append(float(be.to_floats([be.train_step(batches[step[1]], step[2])])[0]))
        elif op == "eval":
            out.append(float(sum(be.to_floats([be.eval_step(batches[i]) for i in step[1]]))))
        elif op == "weights":
            out.append(be.get_weights())
        elif op == "reset":
            be.reset_state()
            out.append(None)
        else:
            raise ValueError(f"unknown probe step {step!r}")
    return out


if __name__ == "__main__":
    _main(*sys.argv[1:3])
