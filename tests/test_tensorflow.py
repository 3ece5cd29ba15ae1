"""TensorFlow backend: its three layouts and PyTorch compute the same function, weights
round-trip, and `lmbench run` trains it, records it and fails cleanly when it diverges.

Five child processes, started together since importing TensorFlow is the slow part: two
TF probes (dynamic_rnn needs TF_USE_LEGACY_KERAS=1 before the import), one torch probe,
and two real runs (the learning check uses the successful run's per-step losses)."""
from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from lmbench.config import make_config
from lmbench.corpus import make_batches
from lmbench.probe import probe
from lmbench.runner import run_isolated, run_spec
from lmbench.verify import TOLERANCES, _unpack, build_case, differences
from lmbench.weights import comparable, shapes

LAYOUTS = ("padded", "padded-gather", "dynamic_rnn")
TRAIN_STEPS, WARMUP = 24, 2  # of the real run
UNTRAINED = 3  # valid batches evaluated from the initial weights


@pytest.fixture(scope="module")
def runs(corpus):
    cfg, weights, batches, verify_script = build_case("tiny")
    script = [("weights",), ("eval", list(range(UNTRAINED)))] + verify_script
    tiny = make_config("tiny")
    # the batches `lmbench run` trains on: epoch 0 of the train split
    train = make_batches(corpus["train"], "sentence", tiny.batch_size, tiny.num_steps, "random", tiny.seed, 0)
    nan_cfg = make_config("tiny", lr=1e30, clip=1e30)  # the first update blows the weights up
    with ThreadPoolExecutor(5) as pool:
        keras = pool.submit(probe, "tensorflow", LAYOUTS[:2], cfg, weights, batches, script)
        legacy = pool.submit(probe, "tensorflow", LAYOUTS[2:], cfg, weights, batches, script)
        torch = pool.submit(probe, "torch", "packed", cfg, weights, batches, script)
        ok = pool.submit(run_isolated, run_spec(tiny, "tensorflow", "padded", "cpu", threads=1,
                                                steps=TRAIN_STEPS - WARMUP, warmup=WARMUP, eval="none"), 900)
        nan = pool.submit(run_isolated, run_spec(nan_cfg, "tensorflow", "padded", "cpu", threads=1,
                                                 steps=4, warmup=1, eval="none"), 900)
        out = {**keras.result(), **legacy.result(), "torch": torch.result()["packed"]}
        return dict(cfg=cfg, weights=weights, batches=batches, train_batches=train[:TRAIN_STEPS],
                    roundtrip={k: v[0] for k, v in out.items()},
                    untrained={k: v[1] for k, v in out.items()},
                    verify={k: _unpack(v[2:]) for k, v in out.items()},
                    ok=ok.result(), nan=nan.result())


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


@pytest.mark.parametrize("layout", ["padded-gather", "dynamic_rnn"])
def test_layouts_give_the_same_loss_gradients_training_and_eval(runs, layout):
    d = differences(runs["verify"][layout], runs["verify"]["padded"], runs["weights"])
    assert all(d[k] <= TOLERANCES[k] for k in d), d
    assert math.isclose(runs["untrained"][layout], runs["untrained"]["padded"], rel_tol=1e-5)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_tensorflow_matches_torch_packed(runs, layout):
    d = differences(runs["verify"][layout], runs["verify"]["torch"], runs["weights"])
    assert all(d[k] <= TOLERANCES[k] for k in d), d
    assert math.isclose(runs["untrained"][layout], runs["untrained"]["torch"], rel_tol=1e-5)


def test_the_comparison_is_not_trivial(runs):
    # different batches give clearly different losses, and training moved the weights
    v = runs["verify"]["padded"]
    assert len(set(np.round(v["losses"], 3))) == len(v["losses"])
    assert len(v["trained_losses"]) == 10  # 3 SGD steps x 3 batching kinds + the eval sum
    moved = max(float(np.abs(v["weights"][k] - w).max()) for k, w in comparable(runs["weights"]).items())
    assert moved > 0.1


def test_untrained_perplexity_is_near_vocabulary_size(runs):
    tokens = sum(b.num_targets for b in runs["batches"][:UNTRAINED])
    ppl = math.exp(runs["untrained"]["padded"] / tokens)
    assert 9_000 < ppl < 11_000, ppl


def test_run_records_the_tensorflow_environment(runs):
    record = runs["ok"]
    assert record["status"] == "ok", record.get("error")
    assert record["device"] == "cpu" and record["layout"] == "padded"
    env = record["environment"]
    assert env["framework"] == "tensorflow" and env["device_name"] == "cpu"
    assert env["framework_version"].startswith("2.") and env["keras_version"].startswith("3.")
    assert env["cuda_version"] is None and env["intra_op_threads"] == 1 and env["inter_op_threads"] == 1
    m = record["metrics"]
    assert m["steps"] == TRAIN_STEPS and m["warmup_steps"] == WARMUP and m["train_words_per_sec"] > 0
    # throughput counts real target tokens only
    assert m["tokens"] == sum(b.num_targets for b in runs["train_batches"])
    assert m["timed_tokens"] == sum(b.num_targets for b in runs["train_batches"][WARMUP:])


def test_tiny_training_loss_falls_on_real_ptb(runs):
    # the padded layout, in the real run: per-token loss of its 24 steps on the train split
    losses = np.array(runs["ok"]["metrics"]["train_losses"])
    per_token = losses / np.array([b.num_targets for b in runs["train_batches"]])
    assert len(per_token) == TRAIN_STEPS
    assert abs(per_token[0] - math.log(10_000)) < 0.1  # untrained: ~uniform over the vocabulary
    assert per_token[-5:].mean() < per_token[:5].mean() - 0.5, per_token


def test_diverging_run_fails_with_a_non_finite_loss(runs):
    record = runs["nan"]
    assert record["status"] == "failed" and record["error_kind"] == "non_finite_loss", record.get("error")
    assert "training loss became" in record["error"] and "the model diverged" in record["error"]
    assert "lr=1e+30" in record["error"]
