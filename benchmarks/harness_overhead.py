"""What the harness costs: `lmbench run` against the hand-written loop of each framework.

Runs, in one invocation, the hand-written loop (benchmarks/handwritten_<fw>.py) and
`lmbench run` in the backend's native (first) layout on the same preset, batches and
step count, alternating A/B `--rounds` times, the order flipped every round (AB, BA, ...)
so that drift on a shared machine and whatever the first run leaves behind hit both
alike, and prints each framework's median train words/s and the ratio harness /
hand-written (1.00 = no overhead). Frameworks: every backend with a hand-written loop.

    python benchmarks/harness_overhead.py --frameworks torch tensorflow paddle --steps 40

A run's speed varies by 10% and more from one process to the next on a shared VM, so one
ratio means little: the median of many rounds does. Both children inherit this process's
environment; a framework that compiles per batch shape spends most of a run compiling
(untimed, in both loops) and its compile cache can be shared through it, so that more
rounds fit in the same time, e.g. for JAX:

    JAX_COMPILATION_CACHE_DIR=/tmp/jax-cache JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0 \
        python benchmarks/harness_overhead.py --frameworks jax --steps 100 --rounds 10
"""
import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

from lmbench.backend import available_backends, native_layout

HERE = Path(__file__).resolve().parent
HANDWRITTEN = [b for b in available_backends() if (HERE / f"handwritten_{b}.py").is_file()]

p = argparse.ArgumentParser()
p.add_argument("--frameworks", nargs="+", default=HANDWRITTEN, choices=HANDWRITTEN)
p.add_argument("--preset", default="small")
p.add_argument("--steps", type=int, default=40)
p.add_argument("--warmup", type=int, default=5)
p.add_argument("--rounds", type=int, default=3)
args = p.parse_args()


def handwritten(fw):
    out = subprocess.run([sys.executable, str(HERE / f"handwritten_{fw}.py"), "--preset", args.preset,
                          "--steps", str(args.steps), "--warmup", str(args.warmup)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["train_words_per_sec"]


def harness(fw):
    from lmbench.config import make_config
    from lmbench.run.runner import run_isolated
    from lmbench.runspec import run_spec

    record = run_isolated(run_spec(make_config(args.preset, mode="sentence", batching="random"), fw,
                                   native_layout(fw), "cpu", steps=args.steps, warmup=args.warmup, eval="none"))
    if record["status"] != "ok":
        raise SystemExit(f"{fw}: {record['error']}")
    return record["metrics"]["train_words_per_sec"]


rows = []
for fw in args.frameworks:
    hand, harn, ratios = [], [], []
    for r in range(args.rounds):
        for run in (handwritten, harness)[::1 if r % 2 == 0 else -1]:
            (hand if run is handwritten else harn).append(run(fw))
        ratios.append(harn[-1] / hand[-1])
    rows.append({"framework": fw, "layout": native_layout(fw), "handwritten_words_per_sec": statistics.median(hand),
                 "harness_words_per_sec": statistics.median(harn), "ratio": statistics.median(ratios),
                 "ratios": ratios, "handwritten_runs": hand, "harness_runs": harn})
    print(json.dumps(rows[-1]), flush=True)
print(f"{'framework':<12}{'hand-written':>14}{'lmbench run':>14}{'ratio':>8}  rounds' ratios min-max")
for r in rows:
    print(f"{r['framework']:<12}{r['handwritten_words_per_sec']:>14,.0f}{r['harness_words_per_sec']:>14,.0f}"
          f"{r['ratio']:>8.3f}  {min(r['ratios']):.3f}-{max(r['ratios']):.3f}")
