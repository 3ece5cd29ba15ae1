"""One training step of the tiny preset, in the framework's native layout (make benchmarks)."""
from __future__ import annotations

import pytest

from lmbench.config import make_config
from lmbench.corpus import make_batches
from lmbench.weights import init_weights

BACKEND = "paddle"


def test_train_step(benchmark, corpus):
    pytest.importorskip({"torch": "torch", "tensorflow": "tensorflow", "paddle": "paddle"}[BACKEND])
    from lmbench.backend import backend_layouts, load_backend

    cfg = make_config("tiny")
    backend = load_backend(BACKEND)(cfg, backend_layouts(BACKEND)[0], "cpu", 2)
    backend.set_weights(init_weights(cfg))
    batch = make_batches(corpus["train"], "sentence", cfg.batch_size, batching="bucketed", seed=1)[100]

    def step():
        backend.to_floats([backend.train_step(batch, 0.1)])

    benchmark.pedantic(step, rounds=20, warmup_rounds=3)
