"""Mutant (d): SGD without clipping the global gradient norm to cfg.clip. Identical
wherever the norm is below the clip, so it shows only because `lmbench verify`'s training
steps include steps above it (the torch backend's norms at its 9 training steps,
measured: tiny 2.3, 2.8, 3.2, 6.8, 83, 30, 1.9, 2.1, 1.9; small 2.7, 4.6, 6.9, 76, 8.9, 86,
6.2, 46, 4.5; clip 5). Otherwise a copy of backends/torch.py's train_step."""
from __future__ import annotations

from lmbench.backends.torch import Backend as TorchBackend

LAYOUTS = ("packed",)


class Backend(TorchBackend):
    def train_step(self, batch, lr):
        self.model.train()
        loss = self._forward(batch, keep_state=True)
        self._zero_grad()
        (loss / batch.batch_size).backward()  # and no clipping: the bug
        self._update(lr)
        return loss.detach()
