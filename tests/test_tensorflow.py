"""TensorFlow backend: its four layouts and PyTorch compute the same function (on padded
sentence batches and on stream windows, which have no padding and take the step without
the mask), weights round-trip, the model learns, and a diverging `lmbench run` fails
cleanly with its record.

Child processes, started together since importing TensorFlow is the slow part: for the
Keras layouts (padded, padded-gather, unrolled) and for dynamic_rnn (it needs
TF_USE_LEGACY_KERAS=1 before the import) one process each plays `lmbench verify`'s case
(shared with test_verify.py's by the session's probe memo) and one more the round trip
and the untrained eval; one process 40 training steps of padded (verify shows every
layout's SGD steps are padded's: learning is the model's, tested once); torch's two
likewise; and one real run."""
from __future__ import annotations

import math
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from lmbench.backend import backend_layouts
from lmbench.config import make_config
from lmbench.data.corpus import make_batches
from lmbench.run.runner import run_isolated
from lmbench.runspec import run_spec
from lmbench.verify.verify import build_case
from lmbench.weights import comparable, shapes

from equivalence import (ROUND_TRIP_AND_UNTRAINED, UNTRAINED, assert_not_trivial, assert_same_function, checks,
                         play, play_extras)

LAYOUTS = ("padded", "padded-gather", "dynamic_rnn", "unrolled")
KERAS = ("padded", "padded-gather", "unrolled")  # one probe process; dynamic_rnn needs its own
TRAIN_STEPS = 40  # on the train split, padded only


@pytest.fixture(scope="module")
def runs(corpus):
    cfg, weights, batches, _ = build_case("tiny")
    epoch = make_batches(corpus["train"], "sentence", cfg.batch_size, cfg.num_steps, "random", cfg.seed)
    # random batches of the epoch's two commonest padded lengths: padding and the mask as in any
    # epoch, while `unrolled` (one trace per [B, T], seconds each) traces twice, not 14 times
    lengths = {n for n, _ in Counter(b.inputs.shape[1] for b in epoch).most_common(2)}
    train = [b for b in epoch if b.inputs.shape[1] in lengths][:TRAIN_STEPS]
    # the first update blows the weights up; the loss diverges a step or two later
    diverging = run_spec(make_config("tiny", lr=1e30, clip=1e30), "tensorflow", "padded", "cpu", threads=1,
                         steps=4, warmup=1, eval="none")
    with ThreadPoolExecutor(8) as pool:
        keras = play(pool, "tensorflow", KERAS, ROUND_TRIP_AND_UNTRAINED)
        learning = play_extras(pool, "tensorflow", "padded", ROUND_TRIP_AND_UNTRAINED, train)
        legacy = play(pool, "tensorflow", "dynamic_rnn", ROUND_TRIP_AND_UNTRAINED)
        torch = play(pool, "torch", backend_layouts("torch"))
        run = pool.submit(run_isolated, diverging, 900)
        verify = {**keras[0].result(), **legacy[0].result(), "torch": torch[0].result()["packed"]}
        n = len(ROUND_TRIP_AND_UNTRAINED)  # of torch's extras (EXTRAS: the other files' too), the first n
        extras = {**keras[1].result(), **legacy[1].result(), "torch": torch[1].result()["packed"][:n]}
        out = checks(verify, extras, n)
        out["learning"] = checks(verify, learning.result(), n)["learning"]
        return dict(cfg=cfg, weights=weights, batches=batches, train_batches=train, diverging=run.result(), **out)


def test_export_import_round_trips_exactly(runs):
    expected = comparable(runs["weights"])
    for layout in LAYOUTS:
        got = runs["roundtrip"][layout]
        assert {k: v.shape for k, v in got.items()} == shapes(runs["cfg"])
        assert all(v.dtype == np.float32 for v in got.values())
        # one bias per gate: exported as b_ih with b_hh = 0, so only the sum round-trips
        assert all(not got[k].any() for k in got if k.endswith(".b_hh"))
        for name, w in comparable(got).items():
            assert np.array_equal(w, expected[name]), (layout, name)


@pytest.mark.parametrize("layout", ["padded-gather", "dynamic_rnn", "unrolled"])
def test_layouts_give_the_same_loss_gradients_training_and_eval(runs, layout):
    assert_same_function(runs, layout, "padded")


@pytest.mark.parametrize("layout", LAYOUTS)
def test_tensorflow_matches_torch_packed(runs, layout):
    assert_same_function(runs, layout, "torch")


def test_the_comparison_is_not_trivial(runs):
    assert_not_trivial(runs, "padded")


def test_untrained_perplexity_is_near_vocabulary_size(runs):
    tokens = sum(b.num_targets for b in runs["batches"][:UNTRAINED])
    ppl = math.exp(runs["untrained"]["padded"] / tokens)
    assert 9_000 < ppl < 11_000, ppl


def test_tiny_training_loss_falls_on_real_ptb(runs):
    assert len({b.inputs.shape for b in runs["train_batches"]}) == 2
    assert all(b.has_padding for b in runs["train_batches"])  # the mask is at work
    per_token = runs["learning"]["padded"] / np.array([b.num_targets for b in runs["train_batches"]])
    assert len(per_token) == TRAIN_STEPS
    assert per_token[-5:].mean() < per_token[:5].mean() - 0.5, per_token


def test_diverging_run_is_a_failed_record_with_its_environment(runs):
    record = runs["diverging"]
    assert record["status"] == "failed" and record["error_kind"] == "diverged", record.get("error")
    assert "training loss became" in record["error"] and "the model diverged" in record["error"]
    assert "lr=1e+30" in record["error"]
    assert record["device"] == "cpu" and record["layout"] == "padded"
    env = record["environment"]
    assert env["framework"] == "tensorflow" and env["device_name"] == "cpu"
    assert env["framework_version"].startswith("2.") and env["keras_version"].startswith("3.")
    assert env["cuda_version"] is None and env["intra_op_threads"] == 1 and env["inter_op_threads"] == 1
