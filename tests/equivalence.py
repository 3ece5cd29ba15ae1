"""Shared checks of the per-framework tests: two backend layouts computed the same function."""
from __future__ import annotations

import math

import numpy as np

from lmbench.verify.verify import TOLERANCES, differences
from lmbench.weights import comparable


def assert_same_function(runs: dict, a: str, b: str) -> None:
    """Loss, gradients, training and the untrained eval of `a` match `b` within tolerance."""
    d = differences(runs["verify"][a], runs["verify"][b], runs["weights"])
    assert all(d[k] <= TOLERANCES[k] for k in d), (a, b, d)
    assert math.isclose(runs["untrained"][a], runs["untrained"][b], rel_tol=1e-5)


def assert_not_trivial(runs: dict, layout: str) -> None:
    """Different batches give clearly different losses, and training moved the weights."""
    v = runs["verify"][layout]
    assert len(set(np.round(v["losses"], 3))) == len(v["losses"]) == 3
    assert len(v["trained_losses"]) == 10  # 3 SGD steps x 3 batching kinds + the eval sum
    assert all(np.isfinite(v["trained_losses"]))
    moved = max(float(np.abs(v["weights"][k] - w).max()) for k, w in comparable(runs["weights"]).items())
    assert moved > 0.1
