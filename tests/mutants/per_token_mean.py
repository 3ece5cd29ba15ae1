"""Mutant (c): the objective is the NLL averaged over real target tokens instead of
summed and divided by the number of sequences B (Zaremba et al.'s, and every backend's).
Otherwise a copy of backends/torch.py's train_step and loss_and_grads."""
from __future__ import annotations

import torch
from torch import nn

from lmbench.backends.torch import Backend as TorchBackend

LAYOUTS = ("packed",)


class Backend(TorchBackend):
    def train_step(self, batch, lr):
        self.model.train()
        loss = self._forward(batch, keep_state=True)
        self._zero_grad()
        (loss / batch.num_targets).backward()  # the bug (and again in loss_and_grads)
        grads = [p.grad for p in self.params]
        norm = nn.utils.get_total_norm(grads)
        torch._foreach_mul_(grads, self.cfg.clip / torch.clamp(norm, min=self.cfg.clip))
        self._update(lr)
        return loss.detach()

    def loss_and_grads(self, batch):
        self.model.eval()
        self._zero_grad()
        objective = self._forward(batch, keep_state=False) / batch.num_targets
        objective.backward()
        grads = {name: p.grad.detach().cpu().numpy().copy() for name, p in self._named().items()}
        self._zero_grad()
        return float(objective.detach()), grads
