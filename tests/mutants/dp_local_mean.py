"""Mutant (data parallel): each worker averages its NLL over ITS OWN shard's sequences
(the usual single-process objective) and DDP averages the workers' gradients. Exact only
when every shard has as many sequences: with 17 + 16 the shorter shard's sequences weigh
17/16 of the others'."""
from __future__ import annotations

from lmbench.backends.torch import Backend as TorchBackend

LAYOUTS = ("packed",)
DATA_PARALLEL = {"launcher": ["-m", "torch.distributed.run", "--standalone", "--nnodes=1",
                              "--nproc-per-node={workers}", "-m"],
                 "engine": "torch.distributed DistributedDataParallel"}


class Backend(TorchBackend):
    def train_step(self, batch, lr):
        batch.loss_sequences = batch.batch_size * self.workers  # the bug: local B stands for global / N
        return super().train_step(batch, lr)
