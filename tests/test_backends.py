"""PyTorch on its own: its layouts agree, weights round-trip, the model learns. Two probe
processes: `lmbench verify`'s case (shared with test_verify.py's by the session's probe
memo), and the round trip and training from the initial weights (a diverging torch run:
test_runner.py; TensorFlow and Paddle have their own test_tensorflow.py and test_paddle.py,
which also compare against torch's packed layout)."""
from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from lmbench.backend import backend_layouts
from lmbench.data.corpus import make_batches
from lmbench.verify.verify import TOLERANCES, build_case, differences
from lmbench.weights import shapes

from equivalence import ROUND_TRIP_AND_UNTRAINED, UNTRAINED, checks, play

TRAIN_STEPS = 30


@pytest.fixture(scope="module", params=["torch"])
def case(request, corpus):
    backend = request.param
    cfg, weights, batches, _ = build_case("tiny")
    train = make_batches(corpus["train"], "sentence", cfg.batch_size, batching="random",
                         seed=cfg.seed)[:TRAIN_STEPS]
    with ThreadPoolExecutor(2) as pool:
        verify, extras = (f.result() for f in play(pool, backend, backend_layouts(backend),
                                                   ROUND_TRIP_AND_UNTRAINED, train))
    return dict(backend=backend, layouts=backend_layouts(backend), cfg=cfg, weights=weights, batches=batches,
                train_batches=train, **checks(verify, extras, len(ROUND_TRIP_AND_UNTRAINED)))


def test_export_import_round_trips_exactly(case):
    for layout in case["layouts"]:
        got = case["roundtrip"][layout]
        assert {k: v.shape for k, v in got.items()} == shapes(case["cfg"])
        for name, w in case["weights"].items():
            assert got[name].dtype == np.float32
            assert np.array_equal(got[name], w), name


def test_layouts_give_the_same_loss_gradients_and_training(case):
    native, *others = case["layouts"]
    assert others
    for layout in others:
        d = differences(case["verify"][layout], case["verify"][native], case["weights"])
        assert all(d[k] <= TOLERANCES[k] for k in d), (layout, d)


def test_layouts_are_not_trivially_equal(case):
    # a guard on the comparison itself: different batches give clearly different losses
    losses = case["verify"][case["layouts"][0]]["losses"]
    assert len(set(np.round(losses, 3))) == len(losses)


def test_untrained_perplexity_is_near_vocabulary_size(case):
    tokens = sum(b.num_targets for b in case["batches"][:UNTRAINED])  # padded: the eval's mask at work
    for layout in case["layouts"]:
        ppl = math.exp(case["untrained"][layout] / tokens)
        assert 9_000 < ppl < 11_000, (layout, ppl)


def test_tiny_training_loss_falls_on_real_ptb(case):
    tokens = np.array([b.num_targets for b in case["train_batches"]])
    for layout in case["layouts"]:
        per_token = case["learning"][layout] / tokens
        assert per_token[-5:].mean() < per_token[:5].mean() - 0.5, per_token
