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
import tempfile
from pathlib import Path


class ProbeError(RuntimeError):
    pass


SKIPPED = "skipped"  # a layout's result is (SKIPPED, reason) when its backend declined the variant


def probe(backend: str, layouts, cfg, weights: dict, batches: list, script: list,
          device: str = "cpu", threads: int = 1, timeout: float = 900, options=None) -> dict[str, list]:
    """Run `script` on a fresh model per layout (all in one child process, since importing
    a framework is the slow part); returns {layout: [one result per script step]}, or
    {layout: (SKIPPED, reason)} where the backend declined the variant in `options`
    (compile=..., precision=...: the backend's run settings)."""
    from .backend import layout_env

    layouts = [layouts] if isinstance(layouts, str) else list(layouts)
    groups: dict[tuple, list[str]] = {}  # layouts that need the same environment share a process
    for layout in layouts:
        groups.setdefault(tuple(sorted(layout_env(backend, layout).items())), []).append(layout)
    if len(groups) > 1:
        out = {}
        for group in groups.values():
            out.update(probe(backend, group, cfg, weights, batches, script, device, threads, timeout, options))
        return {layout: out[layout] for layout in layouts}
    with tempfile.TemporaryDirectory(prefix="lmbench-probe-") as tmp:
        src, dst = Path(tmp, "in.pkl"), Path(tmp, "out.pkl")
        with open(src, "wb") as f:
            pickle.dump(dict(backend=backend, layouts=layouts, config=cfg.to_dict(), weights=weights,
                             batches=batches, script=script, device=device, threads=threads,
                             options=options or {}), f)
        proc = subprocess.run([sys.executable, "-m", "lmbench.probe", str(src), str(dst)],
                              capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
        if proc.returncode != 0 or not dst.exists():
            raise ProbeError(f"{backend} {layouts} probe failed (exit {proc.returncode}):\n"
                             f"{proc.stderr[-3000:]}")
        with open(dst, "rb") as f:
            return pickle.load(f)


def _main(src: str, dst: str) -> None:
    from .worker import set_thread_env

    with open(src, "rb") as f:
        job = pickle.load(f)
    set_thread_env(job["threads"])
    from .backend import VariantSkipped, layout_env, load_backend

    os.environ.update(layout_env(job["backend"], job["layouts"][0]))
    from .config import Config

    cfg = Config(**job["config"])
    backend_cls = load_backend(job["backend"])
    results = {}
    for layout in job["layouts"]:
        try:
            be = backend_cls(cfg, layout, job["device"], job["threads"], **job.get("options", {}))
        except VariantSkipped as e:
            results[layout] = (SKIPPED, str(e))
            continue
        be.set_weights(job["weights"])
        results[layout] = _play(be, job["batches"], job["script"])
    with open(dst, "wb") as f:
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
