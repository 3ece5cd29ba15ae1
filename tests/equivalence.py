"""Shared parts of the per-framework tests: `lmbench verify`'s own case played on a
backend's layouts, what those tests check beyond it, and the two equivalence checks."""
from __future__ import annotations

import math

import numpy as np

from lmbench.config import make_config
from lmbench.run.probe import probe
from lmbench.verify.verify import PER_KIND, TOLERANCES, _unpack, build_case, differences
from lmbench.weights import comparable

STREAM = 2 * PER_KIND  # build_case's first stream-mode batch (the ones before are sentence batches)
UNTRAINED = 3  # build_case's first random-batched (padded: the mask at work) batches
# verify's SGD steps (3 per batching kind): from the initial weights, carried state barely
# moves a loss (1e-4 of the zero-state one, the tolerance of the check below)
_TRAINING = [step for first in (0, PER_KIND, STREAM)
             for step in [("reset",)] + [("train_step", first + i, make_config("tiny").lr) for i in range(3)]]
# What the per-framework tests check beyond verify: the weights' export/import round trip;
# the untrained eval of padded batches; after training, stream mode's carried state
# (batch 1 from zeros, then after batch 0's state with loss_and_grads in between, which
# must use the carried state and leave it); and a train step at lr 0, which must leave
# the weights as they were.
EXTRAS = ([("weights",), ("eval", list(range(UNTRAINED)))] + _TRAINING
          + [("reset",), ("eval", [STREAM + 1]),
             ("reset",), ("eval", [STREAM]), ("loss_and_grads", STREAM + 1), ("eval", [STREAM + 1]),
             ("weights",), ("reset",), ("train_step", 0, 0.0), ("weights",)])
_S = 2 + len(_TRAINING)  # where the stream checks start
ROUND_TRIP_AND_UNTRAINED = EXTRAS[:2]


def play(pool, backend: str, layouts, extras=EXTRAS, train=()):
    """Two probe processes of `backend`, as futures: `lmbench verify --preset tiny`'s own job
    on `layouts` -- the very job verify starts, so the test session's probe memo
    (tests/session_support.py) plays it once for this file and tests/test_verify.py -- and, in
    another process from the same initial weights, `extras` then one SGD step on each
    batch of `train`."""
    cfg, weights, batches, script = build_case("tiny")
    return (pool.submit(probe, backend, layouts, cfg, weights, batches, script),
            play_extras(pool, backend, layouts, extras, train))


def play_extras(pool, backend: str, layouts, extras=EXTRAS, train=()):
    """play()'s second process alone, as a future."""
    cfg, weights, batches, _ = build_case("tiny")
    steps = [("train_step", len(batches) + i, cfg.lr) for i in range(len(train))]
    return pool.submit(probe, backend, layouts, cfg, weights, batches + list(train), extras + steps)


def checks(verify: dict, extras: dict, n_extras: int = len(EXTRAS)) -> dict:
    """{what: {layout: value}} from play()'s two results ({layout: results} each)."""
    out = dict(verify={k: _unpack(v) for k, v in verify.items()},
               roundtrip={k: x[0] for k, x in extras.items()},
               untrained={k: x[1] for k, x in extras.items()},
               learning={k: np.array(x[n_extras:]) for k, x in extras.items()})
    if n_extras == len(EXTRAS):
        out["stream"] = {k: dict(zero=x[_S + 1], carried=x[_S + 5], objective=x[_S + 4][0])
                         for k, x in extras.items()}
        out["lr0"] = {k: (x[_S + 6], x[_S + 9]) for k, x in extras.items()}
    return out


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
