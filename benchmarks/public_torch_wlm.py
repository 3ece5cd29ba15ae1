"""PyTorch's own public word-level language model example, on lmbench's stream-mode work.

Follows pytorch/examples, `word_language_model/` (main.py's train() loop and model.py's
RNNModel; read at commit 77f55b91, 2025-08), written here from that program's description
and structure, not copied:

kept from it
- RNNModel: nn.Embedding ("encoder") -> nn.Dropout -> nn.LSTM (sequence-first: inputs
  [T, B], one multi-layer module) -> nn.Dropout -> nn.Linear ("decoder"), the decoder's
  output flattened to [T*B, V] and turned into log-probabilities with F.log_softmax; the
  loss is nn.NLLLoss on those against the flattened [T*B] targets;
- the train loop: init_hidden() once (zeros), then per window `model.zero_grad()`,
  `repackage_hidden` (the carried (h, c) detached from the last window's graph), forward,
  `loss.backward()`, `torch.nn.utils.clip_grad_norm_(model.parameters(), clip)`, and the
  hand-written SGD update `p.data.add_(p.grad, alpha=-lr)` over model.parameters() (no
  torch.optim, the program's default); `loss.item()` read back every window (its
  `total_loss += loss.item()`).

changed to do exactly the work of `lmbench run --backend torch --mode stream --preset small`
- data, order and windows: lmbench's stream batches of PTB (lmbench.data.corpus), B = 20
  streams cut into 20-step windows (the example: its own batchify of WikiText-2 and bptt
  35); each [B, T] window is transposed to the example's [T, B] layout in the loop;
- the config of Zaremba et al.'s small model: emsize = nhid = 200, 2 layers, dropout 0
  (the modules stay, as identities), lr 1, clip 5 (the example: lr 20, clip 0.25,
  dropout 0.2), no lr schedule over the few hundred steps timed;
- the loss: the summed NLL over the window's targets divided by the batch size (lmbench's
  objective), not NLLLoss's per-token mean -- so what is clipped at 5 is the gradient of
  that objective, as in lmbench;
- the initial weights: lmbench.weights.init_weights copied into encoder, rnn and decoder
  (the example's init_weights draws its own);
- threads: torch.set_num_threads(--threads) and set_num_interop_threads(1), as lmbench's
  torch backend sets them, with OMP/MKL variables set before the import.

What still differs from lmbench's step, by design (it is the example's way):
- lmbench's native torch layout is `packed` (pack_padded_sequence: aten's per-step cells
  on the CPU); the example feeds a dense [T, B, H] tensor, which on the CPU takes
  PyTorch's oneDNN LSTM kernel;
- clip_grad_norm_ divides by (norm + 1e-6) and takes a norm of per-tensor norms, where
  lmbench scales by clip / max(norm, clip) from one sum of squares: last-bit differences;
- the update is a Python loop of add_ over the 12 parameters, lmbench's torch.optim.SGD
  (foreach) one fused call.

Prints one JSON line: {"program", "framework", "train_words_per_sec", "steps", "tokens",
"seconds", "first_loss" (the first window's summed NLL / B), "first_nll_sum", "threads"}.

    python benchmarks/public_torch_wlm.py --steps 200 --warmup 20 --threads 2
"""
import json
import time

import numpy as np

from public_common import parse_args, stream_work

PROGRAM = "pytorch/examples word_language_model (main.py + model.py RNNModel)"

args = parse_args(__doc__, "torch")  # before torch is imported

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

torch.set_num_threads(args.threads)
torch.set_num_interop_threads(1)


class RNNModel(nn.Module):
    """encoder -> LSTM (sequence-first) -> decoder, log-probabilities out (the example's LSTM case)."""

    def __init__(self, ntoken, ninp, nhid, nlayers, dropout):
        super().__init__()
        self.ntoken, self.nhid, self.nlayers = ntoken, nhid, nlayers
        self.drop = nn.Dropout(dropout)
        self.encoder = nn.Embedding(ntoken, ninp)
        self.rnn = nn.LSTM(ninp, nhid, nlayers, dropout=dropout)
        self.decoder = nn.Linear(nhid, ntoken)

    def forward(self, input, hidden):
        emb = self.drop(self.encoder(input))
        output, hidden = self.rnn(emb, hidden)
        decoded = self.decoder(self.drop(output)).view(-1, self.ntoken)
        return F.log_softmax(decoded, dim=1), hidden

    def init_hidden(self, bsz):
        weight = next(self.parameters())
        return (weight.new_zeros(self.nlayers, bsz, self.nhid), weight.new_zeros(self.nlayers, bsz, self.nhid))


def repackage_hidden(h):
    """The carried state, cut from the graph of the window that produced it."""
    return h.detach() if isinstance(h, torch.Tensor) else tuple(repackage_hidden(v) for v in h)


def load_canonical(model, w, layers):
    with torch.no_grad():
        model.encoder.weight.copy_(torch.from_numpy(w["embedding"]))
        model.decoder.weight.copy_(torch.from_numpy(w["decoder.w"]))
        model.decoder.bias.copy_(torch.from_numpy(w["decoder.b"]))
        for l in range(layers):  # canonical gate order i, f, g, o is nn.LSTM's
            for ours, theirs in (("w_ih", "weight_ih"), ("w_hh", "weight_hh"), ("b_ih", "bias_ih"),
                                 ("b_hh", "bias_hh")):
                getattr(model.rnn, f"{theirs}_l{l}").copy_(torch.from_numpy(w[f"lstm{l}.{ours}"]))


def main():
    cfg, batches, weights = stream_work(args.warmup + args.steps)
    model = RNNModel(cfg.vocab_size, cfg.hidden, cfg.hidden, cfg.layers, cfg.dropout)
    load_canonical(model, weights, cfg.layers)
    criterion = nn.NLLLoss(reduction="sum")  # summed NLL; divided by the batch size below
    lr, clip = cfg.lr, cfg.clip

    model.train()
    hidden = model.init_hidden(cfg.batch_size)

    def train_window(b):
        nonlocal hidden
        data = torch.from_numpy(np.ascontiguousarray(b.inputs.T))  # [T, B], the example's layout
        targets = torch.from_numpy(np.ascontiguousarray(b.targets.T)).view(-1)
        model.zero_grad()
        hidden = repackage_hidden(hidden)
        output, hidden = model(data, hidden)
        loss = criterion(output, targets) / b.batch_size
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        for q in model.parameters():
            q.data.add_(q.grad, alpha=-lr)
        return loss.item()

    losses = [train_window(b) for b in batches[:args.warmup]]
    t0 = time.perf_counter()
    losses += [train_window(b) for b in batches[args.warmup:]]
    seconds = time.perf_counter() - t0
    tokens = sum(b.num_targets for b in batches[args.warmup:])
    out = {"program": PROGRAM, "framework": "torch", "framework_version": torch.__version__,
           "train_words_per_sec": tokens / seconds, "steps": args.steps, "tokens": tokens, "seconds": seconds,
           "first_loss": losses[0], "first_nll_sum": losses[0] * cfg.batch_size, "threads": args.threads}
    print(json.dumps({**out, "losses": losses} if args.losses else out))


if __name__ == "__main__":
    main()
