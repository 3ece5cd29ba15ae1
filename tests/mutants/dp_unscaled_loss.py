"""Mutant (data parallel): each worker differentiates its summed NLL / the global batch's
sequences, the objective of an engine that SUMS the workers' gradients, on DDP, which
AVERAGES them: every step moves the weights by 1/workers of the right amount (until
clipping, which rescales the norm, hides part of it)."""
from __future__ import annotations

from lmbench.backends.torch import Backend as TorchBackend

LAYOUTS = ("packed",)
DATA_PARALLEL = {"launcher": ["-m", "torch.distributed.run", "--standalone", "--nnodes=1",
                              "--nproc-per-node={workers}", "-m"],
                 "engine": "torch.distributed DistributedDataParallel"}


class Backend(TorchBackend):
    def __init__(self, cfg, layout, device, threads, **options):
        super().__init__(cfg, layout, device, threads, **options)
        self.workers_in_objective = 1  # the bug: DDP's average is not undone

    def train_step(self, batch, lr):
        workers, self.workers = self.workers, self.workers_in_objective
        try:
            return super().train_step(batch, lr)
        finally:
            self.workers = workers
