"""One training step of the tiny preset per tensorflow layout (`make benchmarks` only: imports tensorflow)."""
from __future__ import annotations

import pytest
from stepbench import bench_train_step, layouts

BACKEND = "tensorflow"


@pytest.mark.parametrize("layout", layouts(BACKEND))
def test_train_step(benchmark, corpus, layout):
    bench_train_step(benchmark, corpus, BACKEND, layout)
