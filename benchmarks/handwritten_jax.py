"""The simplest hand-written JAX loop for the model lmbench's jax backend trains.

Same batches and initial weights as `lmbench run --backend jax --layout padded`, none of
the harness: the yardstick the harness's overhead is measured against
(benchmarks/harness_overhead.py, and step against step in one process:
benchmarks/step_ab.py). Written from scratch (not importing backends/jax.py), as one
would: a masked lax.scan LSTM, value_and_grad, global-norm clip, SGD, one jit.
Prints one JSON line.
"""
import argparse
import json
import os
import time

from lmbench.config import make_config
from lmbench.data.corpus import load_corpus, make_batches
from lmbench.data.download import download_ptb
from lmbench.weights import init_weights
from lmbench.run.worker import set_thread_env

if __name__ == "__main__":  # the thread budget is set before jax is imported
    p = argparse.ArgumentParser()
    p.add_argument("--preset", default="small")
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    args = p.parse_args()
    set_thread_env(args.threads, "jax")
    os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:args.threads])  # what XLA's CPU pool follows

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402


def make_step(cfg):
    """The jitted SGD step: (params, inputs, targets, lengths) -> (new params, summed NLL)."""
    L, H = cfg.layers, cfg.hidden

    def loss_fn(p, x, y, lengths):
        mask = (jnp.arange(x.shape[1])[None, :] < lengths[:, None]).T  # [T, B]
        h = p["embedding"][x.T]
        for l in range(L):
            xw = h @ p[f"lstm{l}.w_ih"].T + p[f"lstm{l}.b_ih"] + p[f"lstm{l}.b_hh"]

            def cell(carry, inp, w_hh=p[f"lstm{l}.w_hh"].T):
                hp, cp = carry
                gates, m = inp
                i, f, g, o = jnp.split(gates + hp @ w_hh, 4, axis=-1)
                c = jax.nn.sigmoid(f) * cp + jax.nn.sigmoid(i) * jnp.tanh(g)
                hn = jax.nn.sigmoid(o) * jnp.tanh(c)
                return (jnp.where(m[:, None], hn, hp), jnp.where(m[:, None], c, cp)), hn

            zeros = jnp.zeros((x.shape[0], H))
            _, h = jax.lax.scan(cell, (zeros, zeros), (xw, mask))
        logits = h @ p["decoder.w"].T + p["decoder.b"]
        gold = jnp.where(mask, y.T, 0)
        nll = jax.nn.logsumexp(logits, -1) - jnp.take_along_axis(logits, gold[..., None], -1)[..., 0]
        total = jnp.sum(jnp.where(mask, nll, 0.0))
        return total / x.shape[0], total

    @jax.jit
    def step(p, x, y, lengths):
        (_, total), g = jax.value_and_grad(loss_fn, has_aux=True)(p, x, y, lengths)
        norm = jnp.sqrt(sum(jnp.sum(t * t) for t in jax.tree_util.tree_leaves(g)))
        scale = cfg.clip / jnp.maximum(norm, cfg.clip)
        return jax.tree_util.tree_map(lambda w, d: w - cfg.lr * scale * d, p, g), total

    return step


def make_trainer(cfg, weights):
    """train(batch) -> the step's summed NLL (not waited for), and sync(): what the loop below
    runs, for benchmarks/step_ab.py too."""
    step = make_step(cfg)
    params = {k: jnp.asarray(v) for k, v in weights.items()}

    def train(b):
        nonlocal params
        params, total = step(params, *(np.asarray(a, np.int32) for a in (b.inputs, b.targets, b.lengths)))
        return total

    return train, lambda: jax.block_until_ready(params)


def main(args):
    cfg = make_config(args.preset, mode="sentence", batching="random")
    corpus = load_corpus(download_ptb())
    batches = make_batches(corpus["train"], "sentence", cfg.batch_size, cfg.num_steps, "random", cfg.seed, 0)
    batches = batches[:args.warmup + args.steps]
    train, sync = make_trainer(cfg, init_weights(cfg))
    for b in batches:  # warm-up: every batch (so every shape) once, untimed
        float(train(b))
    sync()
    t0 = time.perf_counter()
    totals = [train(b) for b in batches[args.warmup:]]
    losses = [float(t) for t in totals]  # read the losses back once, as the harness does every 100 steps
    sync()
    seconds = time.perf_counter() - t0
    tokens = sum(b.num_targets for b in batches[args.warmup:])
    print(json.dumps({"framework": "jax", "layout": "padded", "train_words_per_sec": tokens / seconds,
                      "steps": args.steps, "tokens": tokens, "seconds": seconds}))


if __name__ == "__main__":
    main(args)
