"""Variants in TensorFlow, Paddle and JAX: compiled fp32 computes what eager does, bf16 is
really bf16 and stays near fp32, and a variant that cannot run says so instead of running.

One probe process per (framework, variant), started together since importing a framework
is the slow part. The script is short on purpose (XLA compiles once per batch shape): two
sentence batches of different lengths (padding and the mask), then three stream batches
(carried state); one step's loss and gradients, five SGD steps, an eval, the weights.

Tolerances: compiled fp32 against eager fp32 uses lmbench verify's (same weights, same
batches). bf16 against fp32: BF16_LOSS, the relative gap of each loss over the five SGD
steps and the eval. Measured (tiny, lmbench verify's script): TensorFlow mixed_bfloat16
8.7e-4, JAX bf16 matmuls 3.7e-4; bf16's unit roundoff is 2**-9 = 2e-3 per operation, and a
summed loss averages the per-token errors, so 1e-2 is ~10x what was measured and 5x one
bf16 rounding -- while a loss computed with wrong weights or a wrong mask is off by far
more (the untrained loss alone moves 5% over these steps). bf16 really ran when the
gradients differ from fp32's by more than BF16_RAN (float32 rounding gives ~1e-6 here;
bf16 ~1e-2), except the decoder bias's: a sum over every token, which must be float32
(Keras's mixed Dense summed it in bf16, 5.5e-2 off, and a tiny epoch ended at valid
perplexity 420 instead of 295).
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from lmbench.config import make_config
from lmbench.data.corpus import make_batches
from lmbench.run.probe import SKIPPED, probe
from lmbench.run.runner import run_isolated
from lmbench.runspec import run_spec
from lmbench.verify.verify import TOLERANCES, _unpack, compare, differences
from lmbench.weights import init_weights

pytestmark = pytest.mark.slow

BF16_LOSS = 1e-2
BF16_RAN = 1e-3

PROBES = {  # name -> (backend, layouts, options)
    "tf": ("tensorflow", ["padded", "padded-gather"], {}),
    "tf-xla": ("tensorflow", ["padded", "padded-gather"], {"compile": True}),
    "tf-bf16": ("tensorflow", ["padded", "dynamic_rnn"], {"precision": "bf16"}),
    "tf-fp16": ("tensorflow", ["padded"], {"precision": "fp16"}),
    "paddle": ("paddle", ["padded", "lod-padded"], {}),
    "paddle-static": ("paddle", ["padded", "lod-padded", "lod"], {"compile": True}),
    "paddle-bf16": ("paddle", ["padded"], {"precision": "bf16"}),
    "jax": ("jax", ["padded"], {}),
    "jax-bf16": ("jax", ["padded"], {"precision": "bf16"}),
    "jax-compile": ("jax", ["padded"], {"compile": True}),
    "jax-fp16": ("jax", ["padded"], {"precision": "fp16"}),
}


@pytest.fixture(scope="module")
def runs(corpus):
    cfg = make_config("tiny", dropout=0.0)
    valid = corpus["valid"]
    sentences = make_batches(valid, "sentence", cfg.batch_size, cfg.num_steps, "random", cfg.seed)
    sentences = [b for b in sentences if b.inputs.shape[1] != sentences[0].inputs.shape[1]][:1] + sentences[:1]
    batches = sentences + make_batches(valid, "stream", cfg.batch_size, cfg.num_steps)[:3]
    script = ([("reset",), ("loss_and_grads", 0), ("loss_and_grads", 2), ("reset",)]
              + [("train_step", i, cfg.lr) for i in range(5)] + [("reset",), ("eval", [2, 3]), ("weights",)])
    weights = init_weights(cfg)
    stream = make_config("tiny", mode="stream")  # every batch [32, 10]: one shape
    compiled_runs = {be: run_spec(stream, be, "padded", "cpu", threads=1, steps=3, warmup=1, eval="none",
                                  compile=True) for be in ("tensorflow", "paddle")}
    with ThreadPoolExecutor(4) as pool:
        futures = {name: pool.submit(probe, be, layouts, cfg, weights, batches, script, options=options)
                   for name, (be, layouts, options) in PROBES.items()}
        records = {be: pool.submit(run_isolated, spec, 900) for be, spec in compiled_runs.items()}
        out = {name: f.result() for name, f in futures.items()}
        return dict(weights=weights, batches=batches, records={be: r.result() for be, r in records.items()},
                    results={(name, layout): (r if r[0] == SKIPPED else _unpack(r))
                             for name, by_layout in out.items() for layout, r in by_layout.items()})


@pytest.mark.parametrize("compiled,eager,layout", [
    ("tf-xla", "tf", "padded"), ("tf-xla", "tf", "padded-gather"),
    ("paddle-static", "paddle", "padded"), ("paddle-static", "paddle", "lod-padded")])
def test_compiled_fp32_computes_what_eager_does(runs, compiled, eager, layout):
    d = differences(runs["results"][compiled, layout], runs["results"][eager, layout], runs["weights"])
    assert all(d[k] <= TOLERANCES[k] for k in TOLERANCES), d


@pytest.mark.parametrize("low,ref", [("tf-bf16", "tf"), ("jax-bf16", "jax")])
def test_bf16_ran_in_bf16_and_stays_near_fp32(runs, low, ref):
    a, b = runs["results"][low, "padded"], runs["results"][ref, "padded"]
    gaps = np.abs(a["trained_losses"] / b["trained_losses"] - 1)
    assert gaps.max() <= BF16_LOSS, gaps
    grad = compare(a, b, runs["weights"])["grad"]
    assert max(grad.values()) > BF16_RAN, grad  # not float32 under another name
    assert grad["decoder.b"] < BF16_RAN, grad  # summed over every token in float32


@pytest.mark.parametrize("name,layout,needle", [
    ("tf-bf16", "dynamic_rnn", "tensorflow: --precision bf16 applies to the Keras layouts"),
    ("tf-fp16", "padded", "tensorflow: --precision fp16 is a GPU precision"),
    ("paddle-bf16", "padded", "paddle: --precision bf16 has no effect on the CPU"),
    ("paddle-static", "lod", "paddle: --compile on the lod layout"),
    ("jax-compile", "padded", "jax: --compile adds nothing"),
    ("jax-fp16", "padded", "jax: --precision fp16 is not implemented"),
])
def test_variants_that_cannot_run_are_skipped_with_the_reason(runs, name, layout, needle):
    status, reason = runs["results"][name, layout]
    assert status == SKIPPED and reason.startswith(needle), reason


def test_compiled_runs_record_what_the_compiler_did(runs):
    """Stream mode, one batch shape: XLA builds one executable for the train step; SOT
    translates forward twice (the first batch starts from no state, the rest from the
    carried one) with no graph break, and no CINN on a CPU build."""
    tf_run, paddle_run = runs["records"]["tensorflow"], runs["records"]["paddle"]
    assert tf_run["status"] == paddle_run["status"] == "ok", (tf_run.get("error"), paddle_run.get("error"))
    xla = tf_run["metrics"]["compile"]
    assert (xla["compiler"], xla["traces"], xla["xla_executables"], xla["recompiles"]) == \
        ("XLA (tf.function jit_compile=True)", 1, 1, 0)
    assert xla["input_shapes"] == {"train": 1} and "compiled whole by XLA" in xla["lstm"]
    static = paddle_run["metrics"]["compile"]
    assert (static["translations"], static["recompiles"], static["graph_breaks"]) == ({"forward": 2}, 1, 0)
    assert static["backend"].startswith("static graph executor, PHI kernels (no CINN")
