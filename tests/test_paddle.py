"""PaddlePaddle backend: its lod and padded layouts and PyTorch's packed layout compute the
same function, weights round-trip, carried state and the lr reach the model, it learns,
and a diverging `lmbench run` fails cleanly with Paddle's environment in the record.

Child processes, started together since importing a framework is the slow part: Paddle
(all three layouts) and torch each play `lmbench verify`'s case in one process (shared with
test_verify.py's by the session's probe memo) and the checks beyond it in another, and one
real run."""
from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from lmbench.backend import backend_layouts
from lmbench.config import make_config
from lmbench.data.corpus import make_batches
from lmbench.run.runner import run_isolated
from lmbench.runspec import run_spec
from lmbench.verify.verify import build_case
from lmbench.weights import shapes

from equivalence import STREAM, UNTRAINED, assert_not_trivial, assert_same_function, checks, play

LAYOUTS = ("lod", "lod-padded", "padded")
TRAIN_STEPS = 24  # on the train split: the loss must fall


@pytest.fixture(scope="module")
def runs(corpus):
    cfg, weights, batches, _ = build_case("tiny")
    train = make_batches(corpus["train"], "sentence", cfg.batch_size, cfg.num_steps, "random",
                         cfg.seed)[:TRAIN_STEPS]
    nan_cfg = make_config("tiny", lr=1e30, clip=1e30)  # the first update blows the weights up
    with ThreadPoolExecutor(5) as pool:
        paddle = play(pool, "paddle", LAYOUTS, train=train)
        torch = play(pool, "torch", backend_layouts("torch"))
        nan = pool.submit(run_isolated, run_spec(nan_cfg, "paddle", "lod", "cpu", threads=1, steps=3,
                                                 warmup=0, eval="none"), 900)
        verify, extras = ({**paddle[i].result(), "torch": torch[i].result()["packed"]} for i in (0, 1))
        return dict(cfg=cfg, weights=weights, batches=batches, train_batches=train, nan=nan.result(),
                    **checks(verify, extras))


def test_export_import_round_trips_exactly(runs):
    for layout in LAYOUTS:
        got = runs["roundtrip"][layout]
        assert {k: v.shape for k, v in got.items()} == shapes(runs["cfg"])
        for name, w in runs["weights"].items():
            assert got[name].dtype == np.float32 and got[name].flags.c_contiguous, name
            assert np.array_equal(got[name], w), (layout, name)


@pytest.mark.parametrize("other", ["lod-padded", "padded", "torch"])
def test_lod_matches_padded_and_torch_packed(runs, other):
    # one step's loss and gradients from the same weights, 3 SGD steps per batching kind
    # (random, bucketed, stream with carried state), the stream eval sum, and the trained weights
    assert_same_function(runs, other, "lod")


def test_the_comparison_is_not_trivial(runs):
    assert_not_trivial(runs, "lod")
    v = runs["verify"]["lod"]
    norms = [math.sqrt(sum(float(np.sum(np.square(g, dtype=np.float64))) for g in grads.values()))
             for grads in v["grads"]]
    assert all(n > 1.0 for n in norms), norms  # real gradients, not zeros


@pytest.mark.parametrize("layout", LAYOUTS)
def test_stream_mode_carries_the_state_and_loss_and_grads_leaves_it(runs, layout):
    s, ref = runs["stream"][layout], runs["stream"]["torch"]
    batch = runs["batches"][STREAM + 1]
    assert batch.carry_state
    # the carried state changes the loss, the same way as in torch
    assert abs(s["carried"] - s["zero"]) > 1e-4 * s["zero"], s
    assert math.isclose(s["carried"], ref["carried"], rel_tol=1e-5)
    assert math.isclose(s["zero"], ref["zero"], rel_tol=1e-5)
    # loss_and_grads saw the carried state (its objective is the same sum / B) and kept it
    assert math.isclose(s["objective"] * batch.batch_size, s["carried"], rel_tol=1e-5)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_train_step_applies_the_lr_it_is_given(runs, layout):
    before, after = runs["lr0"][layout]  # the trained weights, then after an lr=0 step
    assert set(before) == set(after)
    for name in before:
        assert np.array_equal(after[name], before[name]), name


def test_untrained_perplexity_is_near_vocabulary_size(runs):
    tokens = sum(b.num_targets for b in runs["batches"][:UNTRAINED])
    for layout in LAYOUTS:
        ppl = math.exp(runs["untrained"][layout] / tokens)
        assert 9_000 < ppl < 11_000, (layout, ppl)


def test_tiny_training_loss_falls_on_real_ptb(runs):
    tokens = np.array([b.num_targets for b in runs["train_batches"]])
    per_token = runs["learning"]["lod"] / tokens
    assert len(per_token) == TRAIN_STEPS and np.all(np.isfinite(per_token))
    assert per_token[-5:].mean() < per_token[:5].mean() - 0.5, per_token


def test_diverging_run_is_a_failed_record_with_paddles_environment(runs):
    record = runs["nan"]
    assert record["status"] == "failed" and record["error_kind"] == "diverged", record.get("error")
    # step 0 from the initial weights is sane; step 1 runs on weights blown up to ~1e30, where
    # Paddle's CPU cross entropy saturates at a finite value far above ln(V) per token
    assert "training loss became" in record["error"] and "at step 1 " in record["error"], record["error"]
    assert "the model diverged" in record["error"] and "lr=1e+30" in record["error"]
    assert record["device"] == "cpu" and record["layout"] == "lod"
    env = record["environment"]
    assert env["framework"] == "paddle" and env["framework_version"].startswith("3.")
    assert env["device_name"] == "cpu" and env["cuda_version"] is None and env["cudnn_version"] is None
    assert env["lstm_kernel"].startswith("fused rnn op") and env["cpu_math_threads"] == 1


# Counts, in a Paddle child process, the LSTM rows x time steps the rnn op is handed during
# one training step on a random-batched (so heavily padded) batch, per layout.
_COUNT_WORK = r"""
import json, sys
import numpy as np
from lmbench.config import make_config
from lmbench.data.corpus import load_corpus, make_batches
from lmbench.weights import init_weights
from lmbench.backends.paddle import Backend

cfg = make_config("tiny", dropout=0.0)
valid = load_corpus(sys.argv[1], splits=("valid",))["valid"]
batch = make_batches(valid, "sentence", cfg.batch_size, cfg.num_steps, "random", cfg.seed)[0]
out = {"real": int(batch.lengths.sum()), "B": batch.batch_size, "T": int(batch.inputs.shape[1]),
       "distinct_lengths": len(set(batch.lengths.tolist()))}
for layout in sys.argv[2:]:
    backend = Backend(cfg, layout, "cpu", 1)
    backend.set_weights(init_weights(cfg))
    calls = []
    backend.model.lstm.register_forward_pre_hook(
        lambda layer, inputs: calls.append(list(inputs[0].shape[:2])))
    backend.train_step(batch, cfg.lr)
    out[layout] = calls
print(json.dumps(out))
"""


def test_lod_layout_runs_the_lstm_on_real_tokens_only(ptb_path):
    import json
    import os
    import subprocess
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", _COUNT_WORK, str(ptb_path), "lod", "lod-padded", "padded"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    B, T, real = got["B"], got["T"], got["real"]
    assert real < 0.8 * B * T, got  # the batch really is padded
    # lod: the rnn op sees exactly the real tokens, one call per run of equal batch size,
    # each call on fewer rows than the last
    assert sum(rows * steps for rows, steps in got["lod"]) == real
    assert len(got["lod"]) == got["distinct_lengths"]
    assert [rows for rows, _ in got["lod"]] == sorted({r for r, _ in got["lod"]}, reverse=True)
    # the padded schemes hand it every row for every step
    assert got["lod-padded"] == [[B, T]] and got["padded"] == [[B, T]]
