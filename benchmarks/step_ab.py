"""A backend's train step against the hand-written one, in one process.

harness_overhead.py compares whole runs, each in its own process, and on a shared VM a
process's speed varies by 10% and more from one run to the next: that hides a few
percent either way. Here both run in one process on the same batches of one padded
length (compiled before timing): the backend through its train_step and sync, the
hand-written loop through the `make_trainer(cfg, weights) -> (train, sync)` of its
benchmarks/handwritten_<name>.py, in rounds of `--steps` steps whose order flips every
round. The speed ratio is taken per round (paired) and its median printed: what the
backend's step and the Python around it cost, with the process's own speed cancelled.
Frameworks: every backend whose hand-written loop has make_trainer.

    python benchmarks/step_ab.py --framework jax --rounds 50
"""
import argparse
import importlib.util
import json
import os
import statistics
import time
from pathlib import Path

from lmbench.backend import available_backends, load_backend, native_layout
from lmbench.config import make_config
from lmbench.data.corpus import load_corpus, make_batches
from lmbench.data.download import download_ptb
from lmbench.weights import init_weights
from lmbench.run.worker import set_thread_env

HERE = Path(__file__).resolve().parent
PAIRED = [b for b in available_backends()
          if "def make_trainer(" in ((HERE / f"handwritten_{b}.py").read_text()
                                     if (HERE / f"handwritten_{b}.py").is_file() else "")]

p = argparse.ArgumentParser()
p.add_argument("--framework", required=True, choices=PAIRED)
p.add_argument("--preset", default="small")
p.add_argument("--length", type=int, default=30, help="the padded length T of the batches used")
p.add_argument("--steps", type=int, default=12, help="steps per round and side")
p.add_argument("--rounds", type=int, default=50)
p.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
args = p.parse_args()
set_thread_env(args.threads, args.framework)  # before either side imports the framework

cfg = make_config(args.preset, mode="sentence", batching="random")
epoch = make_batches(load_corpus(download_ptb())["train"], "sentence", cfg.batch_size, cfg.num_steps,
                     "random", cfg.seed, 0)
batches = [b for b in epoch if b.inputs.shape == (cfg.batch_size, args.length)][:4]
if not batches:
    raise SystemExit(f"no batch of padded length {args.length} in the first epoch: pick another --length")
weights = init_weights(cfg)

backend = load_backend(args.framework)(cfg, native_layout(args.framework), "cpu", args.threads)
backend.set_weights(weights)
spec = importlib.util.spec_from_file_location("handwritten", HERE / f"handwritten_{args.framework}.py")
handwritten = importlib.util.module_from_spec(spec)
spec.loader.exec_module(handwritten)
sides = {"backend": (lambda b: backend.train_step(b, cfg.lr), backend.sync),
         "handwritten": handwritten.make_trainer(cfg, weights)}

for train, sync in sides.values():  # compile, untimed
    for b in batches:
        train(b)
    sync()
seconds = {name: [] for name in sides}
for r in range(args.rounds):
    for name in list(sides)[::1 if r % 2 == 0 else -1]:
        train, sync = sides[name]
        sync()
        t0 = time.perf_counter()
        for i in range(args.steps):
            train(batches[i % len(batches)])
        sync()
        seconds[name].append(time.perf_counter() - t0)
ratios = [h / b for b, h in zip(seconds["backend"], seconds["handwritten"])]  # backend speed / hand-written's
deciles = statistics.quantiles(ratios, n=10)
print(json.dumps({"framework": args.framework, "preset": args.preset, "batch_shape": list(batches[0].inputs.shape),
                  "rounds": args.rounds, "steps_per_round": args.steps,
                  "backend_ms_per_step": statistics.median(seconds["backend"]) / args.steps * 1e3,
                  "handwritten_ms_per_step": statistics.median(seconds["handwritten"]) / args.steps * 1e3,
                  "paired_ratio_median": statistics.median(ratios), "paired_ratio_p10_p90": [deciles[0], deciles[-1]]}))
