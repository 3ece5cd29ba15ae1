"""Mutant (e): the LSTM state detached from the graph at every time step, so gradients
flow back one step only (truncated BPTT of length 1). The forward pass -- so every loss
from the same weights -- is unchanged; the gradients of the LSTM weights are not."""
from __future__ import annotations

import torch

from lmbench.backends.torch import LSTMLM, Backend as TorchBackend
from lmbench.data.corpus import PAD_ID

LAYOUTS = ("padded",)


class TruncatedLSTMLM(LSTMLM):
    def forward(self, inputs, targets, lengths, layout, state):
        x = self.drop(self.embedding(inputs))
        outputs = []
        for t in range(x.shape[1]):
            out, state = self.lstm(x[:, t:t + 1], state)
            outputs.append(out)
            state = tuple(s.detach() for s in state)  # the bug
        out = torch.cat(outputs, dim=1)
        logits = self.decoder(self.drop(out.reshape(-1, out.shape[-1])))
        loss = torch.nn.functional.cross_entropy(logits, targets.reshape(-1), ignore_index=PAD_ID,
                                                 reduction="sum")
        return loss, state


class Backend(TorchBackend):
    def __init__(self, cfg, layout, device, threads, **options):
        super().__init__(cfg, layout, device, threads, **options)
        self.model = self.trained = TruncatedLSTMLM(cfg.vocab_size, cfg.hidden, cfg.layers, cfg.dropout).to(self.dev)
        self.params = list(self.model.parameters())
