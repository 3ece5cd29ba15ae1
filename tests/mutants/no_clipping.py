"""Mutant (d): SGD without clipping the global gradient norm to cfg.clip. Identical
wherever the norm is below the clip; `lmbench verify`'s clipping batch is one where the
norm is above it."""
from __future__ import annotations

from lmbench.backends.torch import Backend as TorchBackend

LAYOUTS = ("packed",)


class Backend(TorchBackend):
    def train_step(self, batch, lr):
        self.model.train()
        loss = self._forward(batch, keep_state=True)
        self.optimizer.zero_grad(set_to_none=True)
        (loss / batch.batch_size).backward()
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.step()
        return loss.detach()
