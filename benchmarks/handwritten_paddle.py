"""The simplest hand-written PaddlePaddle loop for the model lmbench's paddle backend trains.

Same batches and initial weights as `lmbench run --backend paddle --layout lod` (the LSTM
on a batch that shrinks as sequences end), none of the harness: the yardstick for
benchmarks/harness_overhead.py. Prints one JSON line.
"""
import argparse
import json
import os
import time

import numpy as np

from lmbench.config import make_config
from lmbench.data.corpus import load_corpus, make_batches
from lmbench.data.download import download_ptb
from lmbench.weights import init_weights
from lmbench.run.worker import set_thread_env

p = argparse.ArgumentParser()
p.add_argument("--preset", default="small")
p.add_argument("--steps", type=int, default=50)
p.add_argument("--warmup", type=int, default=5)
p.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
args = p.parse_args()
set_thread_env(args.threads, "paddle")

import paddle  # noqa: E402  (after the thread environment is set)
import paddle.nn.functional as F  # noqa: E402
from paddle import nn  # noqa: E402

paddle.base.core.set_num_threads(args.threads)  # MKL/OpenMP math threads (no public setter)
paddle.set_device("cpu")
cfg = make_config(args.preset, mode="sentence", batching="random")
corpus = load_corpus(download_ptb())
batches = make_batches(corpus["train"], "sentence", cfg.batch_size, cfg.num_steps, "random", cfg.seed, 0)
batches = batches[:args.warmup + args.steps]
V, H = cfg.vocab_size, cfg.hidden
emb, lstm, dec = nn.Embedding(V, H), nn.LSTM(H, H, cfg.layers), nn.Linear(H, V)
w = init_weights(cfg)
emb.weight.set_value(w["embedding"])
dec.weight.set_value(np.ascontiguousarray(w["decoder.w"].T))
dec.bias.set_value(w["decoder.b"])
for l in range(cfg.layers):
    for ours, theirs in (("w_ih", "weight_ih"), ("w_hh", "weight_hh"), ("b_ih", "bias_ih"), ("b_hh", "bias_hh")):
        getattr(lstm, f"{theirs}_l{l}").set_value(w[f"lstm{l}.{ours}"])
params = [*emb.parameters(), *lstm.parameters(), *dec.parameters()]
opt = paddle.optimizer.SGD(learning_rate=cfg.lr, parameters=params, grad_clip=nn.ClipGradByGlobalNorm(cfg.clip))



def step(b):
    # Fluid's sequence2batch: rows by length, the LSTM over a batch that shrinks as they end;
    # the tokens in that order (segment by segment, row-major) are embedded, run, decoded
    order, t, segments, flat = np.argsort(-b.lengths, kind="stable"), 0, [], []
    for end in sorted(set(b.lengths.tolist())):
        rows = int(np.sum(b.lengths >= end))
        segments.append((rows, end - t))
        flat.append((b.offsets[order[:rows], None] + np.arange(t, end)[None, :]).reshape(-1))
        t = end
    flat = np.concatenate(flat)
    x, state, outputs, start = emb(paddle.to_tensor(b.flat_inputs[flat])), None, [], 0
    for rows, steps in segments:
        state = None if state is None else tuple(s[:, :rows] for s in state)
        out, state = lstm(x[start:start + rows * steps].reshape([rows, steps, H]), state)
        outputs.append(out.reshape([-1, H]))
        start += rows * steps
    loss = F.cross_entropy(dec(paddle.concat(outputs)), paddle.to_tensor(b.flat_targets[flat]), reduction="sum")
    (loss / b.batch_size).backward()
    opt.step()
    opt.clear_grad()
    return float(loss)


for b in batches:  # warm-up: every batch (so every shape) once, untimed
    step(b)
t0 = time.perf_counter()
losses = [step(b) for b in batches[args.warmup:]]
seconds = time.perf_counter() - t0
tokens = sum(b.num_targets for b in batches[args.warmup:])
print(json.dumps({"framework": "paddle", "layout": "lod", "train_words_per_sec": tokens / seconds,
                  "steps": args.steps, "tokens": tokens, "seconds": seconds}))
