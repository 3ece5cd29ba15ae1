"""The simplest hand-written PyTorch loop for the model lmbench's torch backend trains.

Same batches and initial weights as `lmbench run --backend torch --layout packed`, none of
the harness: the yardstick the harness's overhead is measured against
(benchmarks/harness_overhead.py, and step against step in one process:
benchmarks/step_ab.py). Prints one JSON line.
"""
import argparse
import json
import os
import time

from lmbench.config import make_config
from lmbench.data.corpus import PAD_ID, load_corpus, make_batches
from lmbench.data.download import download_ptb
from lmbench.weights import init_weights
from lmbench.run.worker import set_thread_env

if __name__ == "__main__":  # the thread budget is set before torch is imported
    p = argparse.ArgumentParser()
    p.add_argument("--preset", default="small")
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    args = p.parse_args()
    set_thread_env(args.threads, "torch")

import torch  # noqa: E402  (after the thread environment is set)
from torch import nn  # noqa: E402
from torch.nn.utils.rnn import pack_padded_sequence  # noqa: E402


def make_trainer(cfg, weights):
    """train(batch) -> the step's summed NLL, and sync(): what the loop below runs, for
    benchmarks/step_ab.py too."""
    V, H = cfg.vocab_size, cfg.hidden
    emb, lstm, dec = nn.Embedding(V, H), nn.LSTM(H, H, cfg.layers, batch_first=True), nn.Linear(H, V)
    w = weights
    with torch.no_grad():
        emb.weight.copy_(torch.from_numpy(w["embedding"]))
        dec.weight.copy_(torch.from_numpy(w["decoder.w"]))
        dec.bias.copy_(torch.from_numpy(w["decoder.b"]))
        for l in range(cfg.layers):
            for ours, theirs in (("w_ih", "weight_ih"), ("w_hh", "weight_hh"), ("b_ih", "bias_ih"),
                                 ("b_hh", "bias_hh")):
                getattr(lstm, f"{theirs}_l{l}").copy_(torch.from_numpy(w[f"lstm{l}.{ours}"]))
    params = [*emb.parameters(), *lstm.parameters(), *dec.parameters()]
    opt = torch.optim.SGD(params, lr=cfg.lr)

    def step(b):
        lengths = torch.from_numpy(b.lengths)
        x = pack_padded_sequence(torch.from_numpy(b.inputs), lengths, batch_first=True, enforce_sorted=False)
        y = pack_padded_sequence(torch.from_numpy(b.targets), lengths, batch_first=True, enforce_sorted=False).data
        out, _ = lstm(x._replace(data=emb(x.data)))
        loss = nn.functional.cross_entropy(dec(out.data), y, ignore_index=PAD_ID, reduction="sum")
        opt.zero_grad()
        (loss / b.batch_size).backward()
        nn.utils.clip_grad_norm_(params, cfg.clip)
        opt.step()
        return loss.detach()

    return step, lambda: None  # the CPU runs each op before returning


def main(args):
    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    cfg = make_config(args.preset, mode="sentence", batching="random")
    corpus = load_corpus(download_ptb())
    batches = make_batches(corpus["train"], "sentence", cfg.batch_size, cfg.num_steps, "random", cfg.seed, 0)
    batches = batches[:args.warmup + args.steps]
    step, _ = make_trainer(cfg, init_weights(cfg))
    for b in batches:  # warm-up: every batch (so every shape) once, untimed
        step(b).item()
    t0 = time.perf_counter()
    losses = [step(b).item() for b in batches[args.warmup:]]
    seconds = time.perf_counter() - t0
    tokens = sum(b.num_targets for b in batches[args.warmup:])
    print(json.dumps({"framework": "torch", "layout": "packed", "train_words_per_sec": tokens / seconds,
                      "steps": args.steps, "tokens": tokens, "seconds": seconds}))


if __name__ == "__main__":
    main(args)
