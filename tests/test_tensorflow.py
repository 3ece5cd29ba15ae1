"""TensorFlow backend: its four layouts and PyTorch compute the same function (on padded
sentence batches and on stream windows, which have no padding and take the step without
the mask), weights round-trip, the model learns, and a diverging `lmbench run` fails
cleanly with its record.

Four child processes, started together since importing TensorFlow is the slow part: the
Keras layouts' probe (padded, padded-gather, unrolled; it also trains 24 steps), the dynamic_rnn probe (it needs
TF_USE_LEGACY_KERAS=1 before the import), one torch probe and one real run."""
from __future__ import annotations

import math
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from lmbench.config import make_config
from lmbench.data.corpus import make_batches
from lmbench.run.probe import probe
from lmbench.run.runner import run_isolated
from lmbench.runspec import run_spec
from lmbench.verify.verify import _unpack, build_case
from lmbench.weights import comparable, shapes

from equivalence import assert_not_trivial, assert_same_function

LAYOUTS = ("padded", "padded-gather", "dynamic_rnn", "unrolled")
KERAS = ("padded", "padded-gather", "unrolled")  # one probe process; dynamic_rnn needs its own
TRAIN_STEPS = 40  # on the train split, Keras layouts only
UNTRAINED = 3  # valid batches evaluated from the initial weights


@pytest.fixture(scope="module")
def runs(corpus):
    cfg, weights, batches, verify_script = build_case("tiny")
    first_train = len(batches)
    epoch = make_batches(corpus["train"], "sentence", cfg.batch_size, cfg.num_steps, "random", cfg.seed)
    # random batches of the epoch's two commonest padded lengths: padding and the mask as in any
    # epoch, while `unrolled` (one trace per [B, T], seconds each) traces twice, not 14 times
    lengths = {n for n, _ in Counter(b.inputs.shape[1] for b in epoch).most_common(2)}
    batches = batches + [b for b in epoch if b.inputs.shape[1] in lengths][:TRAIN_STEPS]
    script = [("weights",), ("eval", list(range(UNTRAINED)))] + verify_script
    learn = [("reset",)] + [("train_step", first_train + i, cfg.lr) for i in range(TRAIN_STEPS)]
    # the first update blows the weights up; the loss diverges a step or two later
    diverging = run_spec(make_config("tiny", lr=1e30, clip=1e30), "tensorflow", "padded", "cpu", threads=1,
                         steps=4, warmup=1, eval="none")
    with ThreadPoolExecutor(4) as pool:
        keras = pool.submit(probe, "tensorflow", KERAS, cfg, weights, batches, script + learn)
        legacy = pool.submit(probe, "tensorflow", "dynamic_rnn", cfg, weights, batches, script)
        torch = pool.submit(probe, "torch", "packed", cfg, weights, batches, script)
        run = pool.submit(run_isolated, diverging, 900)
        out = {**keras.result(), **legacy.result(), "torch": torch.result()["packed"]}
        n = len(script)
        return dict(cfg=cfg, weights=weights, batches=batches, train_batches=batches[first_train:],
                    roundtrip={k: v[0] for k, v in out.items()},
                    untrained={k: v[1] for k, v in out.items()},
                    verify={k: _unpack(v[2:n]) for k, v in out.items()},
                    learning={k: np.array(v[n + 1:]) for k, v in out.items() if len(v) > n},
                    diverging=run.result())


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


@pytest.mark.parametrize("layout", KERAS)
def test_tiny_training_loss_falls_on_real_ptb(runs, layout):
    assert len({b.inputs.shape for b in runs["train_batches"]}) == 2
    assert all(b.has_padding for b in runs["train_batches"])  # the mask is at work
    per_token = runs["learning"][layout] / np.array([b.num_targets for b in runs["train_batches"]])
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
