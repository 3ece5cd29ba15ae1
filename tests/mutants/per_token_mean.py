"""Mutant (c): the objective is the NLL averaged over real target tokens instead of
summed and divided by the number of sequences B (Zaremba et al.'s, and every backend's)."""
from __future__ import annotations

from torch import nn

from lmbench.backends.torch import Backend as TorchBackend

LAYOUTS = ("packed",)


class Backend(TorchBackend):
    def train_step(self, batch, lr):
        self.model.train()
        loss = self._forward(batch, keep_state=True)
        self.optimizer.zero_grad(set_to_none=True)
        (loss / batch.num_targets).backward()
        nn.utils.clip_grad_norm_(self.params, self.cfg.clip)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.step()
        return loss.detach()

    def loss_and_grads(self, batch):
        self.model.eval()
        self.optimizer.zero_grad(set_to_none=True)
        objective = self._forward(batch, keep_state=False) / batch.num_targets
        objective.backward()
        grads = {name: p.grad.detach().cpu().numpy().copy() for name, p in self._named().items()}
        self.optimizer.zero_grad(set_to_none=True)
        return float(objective), grads
