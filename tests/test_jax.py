"""JAX backend: its padded layout and PyTorch's packed layout compute the same function,
weights round-trip, carried state and the lr reach the model, the timed region waits for
the asynchronously dispatched work, dropout draws a fresh mask every step, the thread
budget reaches XLA, and `--device cuda` fails clearly without a GPU.

Child processes, started together: JAX and torch each play `lmbench verify`'s case in one
(shared with test_verify.py's by the session's probe memo) and the checks beyond it in another.
One more JAX child checks timing, dropout, threads and the device. XLA compiles per batch shape
(seconds each), so the scripts reuse build_case's tiny batches."""
from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from lmbench.backend import backend_layouts
from lmbench.verify.verify import build_case
from lmbench.weights import shapes

from equivalence import STREAM, assert_not_trivial, assert_same_function, checks, play

# the parent never imports a framework: find_spec only looks
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax not installed")]


@pytest.fixture(scope="module")
def runs():
    cfg, weights, batches, _ = build_case("tiny")
    with ThreadPoolExecutor(4) as pool:
        jax, torch = play(pool, "jax", "padded"), play(pool, "torch", backend_layouts("torch"))
        verify, extras = ({"padded": jax[i].result()["padded"], "torch": torch[i].result()["packed"]}
                          for i in (0, 1))
        return dict(cfg=cfg, weights=weights, batches=batches, **checks(verify, extras))


def test_the_test_session_keeps_what_xla_compiled_for_the_next_process(runs):
    # COMPILE_CACHE_ENV, set for the session by tests/conftest.py, reaches the probe's JAX
    from pathlib import Path

    assert any(Path(os.environ["JAX_COMPILATION_CACHE_DIR"]).iterdir())


def test_export_import_round_trips_exactly(runs):
    got = runs["roundtrip"]["padded"]
    assert {k: v.shape for k, v in got.items()} == shapes(runs["cfg"])
    for name, w in runs["weights"].items():
        assert got[name].dtype == np.float32 and np.array_equal(got[name], w), name


def test_padded_matches_torch_packed(runs):
    # loss and gradients from the same weights, 3 SGD steps per batching kind (random,
    # bucketed, stream with carried state), the stream eval sum, the trained weights
    assert_same_function(runs, "torch", "padded")
    assert_not_trivial(runs, "padded")


def test_stream_mode_carries_the_state_and_loss_and_grads_leaves_it(runs):
    s, ref = runs["stream"]["padded"], runs["stream"]["torch"]
    batch = runs["batches"][STREAM + 1]
    assert batch.carry_state
    assert abs(s["carried"] - s["zero"]) > 1e-4 * s["zero"], s
    assert math.isclose(s["carried"], ref["carried"], rel_tol=1e-5)
    assert math.isclose(s["zero"], ref["zero"], rel_tol=1e-5)
    assert math.isclose(s["objective"] * batch.batch_size, s["carried"], rel_tol=1e-5)


def test_train_step_applies_the_lr_it_is_given(runs):
    before, after = runs["lr0"]["padded"]
    for name in before:
        assert np.array_equal(after[name], before[name]), name


# In a JAX child: (1) a plain step's dispatch returns long before the step is done, so
# the clock really needs the sync; (2) a backend whose every update passes through a host
# callback that sleeps SLEEP: the harness's timed region must hold steps x SLEEP. Then the
# thread budget and the device check.
SLEEP = 0.2
_TIMING = r"""
import json, os, sys, time
from lmbench.run.worker import set_thread_env
set_thread_env(1, "jax")  # as a worker does: the backend's THREAD_ENV, before the import
import jax
import lmbench.backends.jax as jb
at_import = sorted(os.sched_getaffinity(0))  # narrowed by the import itself, no Backend built yet
from lmbench.backend import BackendUnavailable
from lmbench.config import make_config
from lmbench.data.corpus import load_corpus, make_batches
from lmbench.weights import init_weights
from lmbench.run.worker import train_pass

SLEEP = float(sys.argv[2])
cfg = make_config("tiny", mode="stream")
valid = load_corpus(sys.argv[1], splits=("valid",))["valid"]
batches = make_batches(valid, "stream", cfg.batch_size, cfg.num_steps, "random", cfg.seed)[:6]

def backend():
    be = jb.Backend(cfg, "padded", "cpu", 1)
    be.set_weights(init_weights(cfg))
    be.to_floats([be.train_step(batches[0], 0.0)])  # compile
    be.sync()
    return be

be = backend()
t0 = time.perf_counter()
be.train_step(batches[1], 0.0)
dispatch = time.perf_counter() - t0
be.sync()
step = time.perf_counter() - t0
env = be.environment()

def same_step_twice(dropout):  # the same batch and state, weights unchanged (lr 0)
    be = jb.Backend(make_config("tiny", mode="stream", dropout=dropout), "padded", "cpu", 1)
    be.set_weights(init_weights(cfg))
    losses = []
    for _ in range(2):
        be.reset_state()
        losses += be.to_floats([be.train_step(batches[0], 0.0)])
    return losses
masks = {"dropout": same_step_twice(0.5), "none": same_step_twice(0.0)}

plain = jb.clip_and_update
def sleepy_update(params, grads, lr, clip):
    new = plain(params, grads, lr, clip)
    b = new["decoder.b"]
    new["decoder.b"] = jax.pure_callback(lambda x: (time.sleep(SLEEP), x)[1],
                                         jax.ShapeDtypeStruct(b.shape, b.dtype), b)
    return new
jb.clip_and_update = sleepy_update  # read when the step is traced, at its first call
out = train_pass(backend(), batches, cfg.lr, 1, lambda **e: None)
try:
    jb.Backend(cfg, "padded", "cuda", 1)
    cuda = None
except BackendUnavailable as e:
    cuda = str(e)
print(json.dumps({"dispatch": dispatch, "step": step, "timed_seconds": out["timed_seconds"],
                  "timed_steps": len(batches) - 1, "affinity": sorted(os.sched_getaffinity(0)), "at_import": at_import, "env": env,
                  "cuda": cuda, "samples": out["step_ms"], "source": out["step_time_source"], "masks": masks}))
"""


@pytest.fixture(scope="module")
def timing(ptb_path):
    proc = subprocess.run([sys.executable, "-c", _TIMING, str(ptb_path), str(SLEEP)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_timed_region_counts_the_asynchronous_work(timing):
    # a step's dispatch returns long before the step is done: a clock stopped without the
    # sync would hold little more than the dispatches
    assert timing["dispatch"] < timing["step"] / 5, timing
    # every timed step sleeps SLEEP on the device side: the timed region holds all of it
    assert timing["timed_seconds"] >= timing["timed_steps"] * SLEEP, timing
    assert timing["samples"] == [] and timing["source"].startswith("none: JAX dispatches"), timing


def test_dropout_draws_a_fresh_mask_every_step(timing):
    # the step splits its PRNG key only when there is dropout: a key that is not carried
    # forward would repeat the mask, and two identical steps would give the same loss
    first, second = timing["masks"]["dropout"]
    assert first != second, timing["masks"]
    first, second = timing["masks"]["none"]
    assert first == second, timing["masks"]


def test_thread_budget_narrows_the_cpu_affinity_and_is_recorded(timing):
    # set_thread_env(1, "jax") reaches XLA through the module's THREAD_ENV: the process is
    # down to one CPU at the import, before the XLA client (which sizes its pool once) exists
    assert len(timing["at_import"]) == 1 or len(os.sched_getaffinity(0)) == 1, timing
    assert len(timing["affinity"]) == 1 or len(os.sched_getaffinity(0)) == 1, timing
    env = timing["env"]
    assert env["intra_op_threads"] == 1 and env["cpu_affinity"] == timing["affinity"]
    assert env["framework"] == "jax" and env["precision"]["dtype"] == "float32"
    assert env["precision"]["jax_default_matmul_precision"] == "highest"


def test_cuda_without_a_gpu_is_a_clear_error(timing):
    if timing["cuda"] is None:
        pytest.skip("this machine has a GPU that JAX can use")
    assert "jax: --device cuda" in timing["cuda"] and "GPU install" in timing["cuda"], timing["cuda"]
