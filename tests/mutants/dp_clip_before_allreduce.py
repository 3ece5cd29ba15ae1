"""Mutant (data parallel): each worker clips ITS OWN gradient to the norm limit, then the
workers' gradients are averaged -- what Keras 3's optimizer does under tf.distribute. The
average of clipped gradients is not the clipped average: wrong whenever a worker's norm
exceeds the limit (the verify script's steps reach norms above it)."""
from __future__ import annotations

import torch
import torch.distributed as dist

from lmbench.backends.torch import Backend as TorchBackend

LAYOUTS = ("packed",)
DATA_PARALLEL = {"launcher": ["-m", "torch.distributed.run", "--standalone", "--nnodes=1",
                              "--nproc-per-node={workers}", "-m"],
                 "engine": "torch.distributed DistributedDataParallel"}


class Backend(TorchBackend):
    def train_step(self, batch, lr):
        if self.workers == 1:  # one process: nothing to aggregate
            return super().train_step(batch, lr)
        self.model.train()
        with self.trained.no_sync():  # the bug: clip the local gradient, then average
            loss = self._forward(batch, keep_state=True, module=self.trained)
            self._zero_grad()
            (loss * self.workers / batch.loss_sequences).backward()
        grads = [p.grad for p in self.params]
        norm = torch.stack([torch.sum(g * g) for g in grads]).sum().sqrt()
        torch._foreach_mul_(grads, self.cfg.clip / torch.clamp(norm, min=self.cfg.clip))
        for g in grads:
            dist.all_reduce(g)
            g /= self.workers
        self._update(lr)
        return loss.detach()
