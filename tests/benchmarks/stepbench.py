"""Shared body of the per-backend step benchmarks (each backend file runs in its own process)."""
from __future__ import annotations

import pytest

from lmbench import env
from lmbench.backend import BackendUnavailable, backend_layouts, layout_env
from lmbench.run.worker import set_thread_env

THREADS = env.cpu_count()


def layouts(backend: str) -> list[str]:
    """Layouts that need no environment set before the framework import (one process holds
    them all); tensorflow's dynamic_rnn needs TF_USE_LEGACY_KERAS and is left to `lmbench run`."""
    return [lay for lay in backend_layouts(backend) if not layout_env(backend, lay)]


def bench_train_step(benchmark, corpus, backend: str, layout: str) -> None:
    """One tiny-preset SGD step (loss read back, as a training loop that logs would)."""
    set_thread_env(THREADS, backend)  # before the framework import, as lmbench.run.worker does
    from lmbench.backend import load_backend
    from lmbench.config import make_config
    from lmbench.data.corpus import make_batches
    from lmbench.weights import init_weights

    try:
        backend_cls = load_backend(backend)
    except BackendUnavailable as e:  # framework not installed
        pytest.skip(str(e))
    cfg = make_config("tiny")
    model = backend_cls(cfg, layout, "cpu", THREADS)
    model.set_weights(init_weights(cfg))
    batches = make_batches(corpus["train"], "sentence", cfg.batch_size, cfg.num_steps, "bucketed", seed=1)
    batch = batches[len(batches) // 2]

    def step():
        return model.to_floats([model.train_step(batch, 0.1)])[0]

    loss = benchmark.pedantic(step, rounds=20, warmup_rounds=3)
    assert loss == loss and loss > 0  # a finite, positive summed NLL
