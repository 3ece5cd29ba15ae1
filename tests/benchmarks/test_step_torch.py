"""One training step of the tiny preset per torch layout (`make benchmarks` only: imports torch)."""
from __future__ import annotations

import pytest
from stepbench import bench_train_step, layouts

BACKEND = "torch"


@pytest.mark.parametrize("layout", layouts(BACKEND))
def test_train_step(benchmark, corpus, layout):
    bench_train_step(benchmark, corpus, BACKEND, layout)
