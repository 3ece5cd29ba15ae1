"""The simplest hand-written PaddlePaddle loop for the model lmbench's paddle backend trains.

Same batches and initial weights as `lmbench run --backend paddle --layout lod`, none of
the harness: the yardstick for benchmarks/harness_overhead.py. Prints one JSON line.
"""
import argparse
import json
import os
import time

import numpy as np

from lmbench.config import make_config
from lmbench.corpus import load_corpus, make_batches
from lmbench.download import download_ptb
from lmbench.weights import init_weights
from lmbench.worker import set_thread_env

p = argparse.ArgumentParser()
p.add_argument("--preset", default="small")
p.add_argument("--steps", type=int, default=50)
p.add_argument("--warmup", type=int, default=5)
p.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
args = p.parse_args()
set_thread_env(args.threads)

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

tokens = 0
for i, b in enumerate(batches):
    if i == args.warmup:
        t0 = time.perf_counter()
    B, T = b.inputs.shape
    rows = np.repeat(np.arange(B), b.lengths)
    slots = paddle.to_tensor(rows * T + np.arange(len(rows)) - b.offsets[rows])  # LoD -> [B*T]
    x = paddle.scatter(paddle.zeros([B * T, H]), slots, emb(paddle.to_tensor(b.flat_inputs)))
    out, _ = lstm(x.reshape([B, T, H]), sequence_length=paddle.to_tensor(b.lengths.astype("int32")))
    logits = dec(paddle.gather(out.reshape([B * T, H]), slots))
    loss = F.cross_entropy(logits, paddle.to_tensor(b.flat_targets), reduction="sum")
    (loss / B).backward()
    opt.step()
    opt.clear_grad()
    float(loss)
    if i >= args.warmup:
        tokens += b.num_targets
seconds = time.perf_counter() - t0
print(json.dumps({"framework": "paddle", "layout": "lod", "train_words_per_sec": tokens / seconds,
                  "steps": args.steps, "tokens": tokens, "seconds": seconds}))
