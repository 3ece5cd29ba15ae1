"""Two versions of one backend module, A/B in one process on the same batches.

For a change inside a backend's step (e.g. an op removed from the hot path), this is
the most sensitive comparison there is: the same framework process, the same weights,
the same batches, and the two versions alternating in short blocks so that any drift of
the machine hits both. Take version A from another commit with git:

    git show 33f05aa:backends/paddle.py > /tmp/paddle_before.py
    python benchmarks/ab_backend_versions.py /tmp/paddle_before.py backends/paddle.py \
        --layout padded --preset small --blocks 10 --block-steps 20

Prints each version's median words/s over its blocks and the ratio B/A with the spread
of the per-block ratios. Both modules must be versions of the same framework's backend.
"""
from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from pathlib import Path


def load_module(path: str, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("version_a")
    p.add_argument("version_b")
    p.add_argument("--layout", required=True)
    p.add_argument("--preset", default="small")
    p.add_argument("--mode", default="sentence")
    p.add_argument("--batching", default="random")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--blocks", type=int, default=10, help="timed blocks per version, alternating")
    p.add_argument("--block-steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--data-dir", default=None)
    a = p.parse_args(argv)

    from lmbench.backend import available_backends
    from lmbench.run.worker import set_thread_env

    name = Path(a.version_b).stem  # backends/<name>.py: its THREAD_ENV, if it is one of lmbench's
    set_thread_env(a.threads, name if name in available_backends() else None)
    from lmbench.config import make_config
    from lmbench.data.corpus import load_corpus, make_batches
    from lmbench.data.download import download_ptb
    from lmbench.weights import init_weights

    cfg = make_config(a.preset, mode=a.mode, batching=a.batching)
    corpus = load_corpus(download_ptb(a.data_dir), splits=("train",))
    batches = make_batches(corpus["train"], cfg.mode, cfg.batch_size, cfg.num_steps, cfg.batching, cfg.seed)
    backends = {}
    for side, path in (("A", a.version_a), ("B", a.version_b)):
        module = load_module(path, f"lmbench_ab_{side}")
        backend = module.Backend(cfg, a.layout, "cpu", a.threads)
        backend.set_weights(init_weights(cfg))
        for batch in batches[:a.warmup]:  # both versions see the same warm-up
            backend.to_floats([backend.train_step(batch, cfg.lr)])
        backends[side] = backend
    rates = {"A": [], "B": []}
    start = a.warmup
    for block in range(a.blocks):
        chunk = batches[start:start + a.block_steps]
        start += a.block_steps
        for side in ("A", "B") if block % 2 == 0 else ("B", "A"):
            backend = backends[side]
            backend.sync()
            t0 = time.perf_counter()
            handles = [backend.train_step(b, cfg.lr) for b in chunk]
            backend.to_floats(handles)
            backend.sync()
            rates[side].append(sum(b.num_targets for b in chunk) / (time.perf_counter() - t0))
    ratios = [b / a_ for a_, b in zip(rates["A"], rates["B"])]
    for side, path in (("A", a.version_a), ("B", a.version_b)):
        print(f"{side} {path}: median {statistics.median(rates[side]):,.0f} words/s over {a.blocks} blocks")
    print(f"B/A: median {statistics.median(ratios):.3f} (per-block ratios {min(ratios):.3f}..{max(ratios):.3f}, "
          f"{sum(r > 1 for r in ratios)}/{len(ratios)} blocks faster in B)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
