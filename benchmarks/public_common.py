"""What the public-program scripts (benchmarks/public_*.py) share: their command line and
lmbench's stream-mode work (small preset batches and canonical initial weights)."""
import argparse
import os

from lmbench.run.worker import set_thread_env


def parse_args(doc: str, backend: str, add=None) -> argparse.Namespace:
    """--steps, --warmup, --threads, --losses (+ what `add(parser)` adds); sets the thread
    environment for `backend`: call it before the framework is imported."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=200, help="timed windows")
    p.add_argument("--warmup", type=int, default=20, help="untimed windows before them (state carried on; at least 1)")
    p.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    if add:
        add(p)
    p.add_argument("--losses", action="store_true", help="also print every window's loss (a check against lmbench's)")
    args = p.parse_args()
    if args.steps < 1 or args.warmup < 1 or args.threads < 1:  # the first step builds kernels / compiles: never timed
        p.error("--steps, --warmup and --threads must be at least 1")
    set_thread_env(args.threads, backend)
    return args


def stream_work(windows: int):
    """(cfg, the first `windows` batches, weights): what `lmbench run --mode stream --preset
    small` trains on."""
    from lmbench.config import make_config
    from lmbench.data.corpus import load_corpus, make_batches
    from lmbench.data.download import download_ptb
    from lmbench.weights import init_weights

    cfg = make_config("small", mode="stream")
    corpus = load_corpus(download_ptb(), splits=("train",))
    batches = make_batches(corpus["train"], "stream", cfg.batch_size, cfg.num_steps, cfg.batching, cfg.seed, 0)
    batches = batches[:windows]
    if len(batches) < windows or any(b.has_padding for b in batches):
        raise SystemExit("--warmup + --steps must stay within one epoch's full windows")
    return cfg, batches, init_weights(cfg)
