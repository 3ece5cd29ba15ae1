"""One training step of the tiny preset per jax layout (`make benchmarks` only: imports jax)."""
from __future__ import annotations

import pytest
from stepbench import bench_train_step, layouts

BACKEND = "jax"


@pytest.mark.parametrize("layout", layouts(BACKEND))
def test_train_step(benchmark, corpus, layout):
    bench_train_step(benchmark, corpus, BACKEND, layout)
