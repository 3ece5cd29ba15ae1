"""The torch backend's variants, in real processes: what ran, what was compiled, what was skipped."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from lmbench import env

from lmbench.run import runner
from lmbench.runspec import run_spec
from lmbench.config import make_config

pytestmark = pytest.mark.slow


def tiny(**kw):
    return run_spec(make_config("tiny"), "torch", kw.pop("layout", "padded"), device="cpu", threads=1,
                           steps=6, warmup=1, eval="none", **kw)


def test_compile_records_what_dynamo_compiled():
    record = runner.run_isolated(tiny(compile=True))
    assert record["status"] == "ok", record.get("error")
    assert record["run"]["compile"] is True
    c = record["metrics"]["compile"]
    assert c["compiler"] == "torch.compile (inductor)" and c["graph_breaks"] == 0
    # the scope is named in the record: the LSTM is not in it (a reader must not assume a whole step)
    assert c["scope"] == record["environment"]["compile_scope"] == "embedding+head"
    assert c["lstm"].startswith("eager")
    # each compiled part has one cache entry per version; every version beyond the first is a recompile
    assert set(c["versions"]) == {"embed", "head"} and all(n >= 1 for n in c["versions"].values())
    assert c["recompiles"] == sum(n - 1 for n in c["versions"].values())
    assert c["graphs"] >= 2


def test_compile_without_a_cpp_compiler_fails_clearly(monkeypatch):
    monkeypatch.setenv("CXX", "/nonexistent/c++")  # inductor's only choice (it installs no g++ unasked)
    record = runner.run_isolated(tiny(compile=True))
    assert record["status"] == "failed" and record["error_kind"] == "unavailable"
    assert "--compile on the CPU needs a C++ compiler" in record["error"] and "CXX" in record["error"]


def test_fp16_on_a_cpu_without_float16_is_skipped_with_the_reason():
    if {"avx512_fp16", "amx_fp16"} & env.cpu_flags():
        pytest.skip("this CPU has float16 arithmetic: fp16 runs here")
    record = runner.run_isolated(tiny(precision="fp16"))
    assert record["status"] == "skipped" and record["metrics"] is None
    assert record["reason"].startswith("torch: --precision fp16 on this CPU") and "bf16" in record["reason"]
    assert "SKIPPED: torch: --precision fp16" in runner.summary(record)


@pytest.fixture(scope="module")
def cpu_bf16():
    """Whether oneDNN has a bfloat16 path on this CPU (AVX-512 or better); the CI machines vary."""
    code = "import torch; print(torch.ops.mkldnn._is_mkldnn_bf16_supported())"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "True"


def test_bf16_on_a_cpu_without_a_bfloat16_path_is_skipped_with_the_reason(cpu_bf16):
    if cpu_bf16:
        pytest.skip("oneDNN has a bfloat16 path on this CPU: bf16 runs here")
    record = runner.run_isolated(tiny(precision="bf16"))
    assert record["status"] == "skipped" and record["metrics"] is None
    assert record["reason"].startswith("torch: --precision bf16 on this CPU") and "AVX-512" in record["reason"]


# Which kernels ran, seen from inside: every aten op of one training step with its tensors' dtypes.
OPS = r'''
import json, sys
from collections import Counter
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from lmbench.backends.torch import Backend
from lmbench.config import make_config
from lmbench.data.corpus import load_corpus, make_batches
from lmbench.weights import init_weights

class Ops(TorchDispatchMode):
    def __init__(self):
        super().__init__(); self.seen = Counter()
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        dtypes = sorted({str(a.dtype)[6:] for a in args if isinstance(a, torch.Tensor) and a.is_floating_point()})
        self.seen[func.overloadpacket.__name__ + ":" + ",".join(dtypes)] += 1
        return func(*args, **(kwargs or {}))

cfg = make_config("tiny", dropout=0.0)
valid = load_corpus(sys.argv[2], splits=("valid",))["valid"]
batch = make_batches(valid, "sentence", cfg.batch_size, cfg.num_steps)[0]  # sentences of unequal lengths
out = {}
for layout in ("packed", "padded"):
    be = Backend(cfg, layout, "cpu", 1, precision=sys.argv[1])
    be.set_weights(init_weights(cfg))
    ops = Ops()
    with ops:
        loss = be.train_step(batch, 1.0)
    out[layout] = {"ops": sorted(ops.seen), "loss_dtype": str(loss.dtype),
                   "weights": sorted({str(w.dtype) for w in be.get_weights().values()}),
                   "param_dtypes": sorted({str(p.dtype) for p in be.params}),
                   "env": be.environment()}
print(json.dumps(out))
'''


@pytest.fixture(scope="module")
def bf16_ops(ptb_path, cpu_bf16):
    if not cpu_bf16:
        pytest.skip("no bfloat16 path in oneDNN on this CPU: bf16 is skipped here (test above)")
    proc = subprocess.run([sys.executable, "-c", OPS, "bf16", str(ptb_path)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_bf16_padded_runs_onednns_bfloat16_lstm(bf16_ops):
    got = bf16_ops["padded"]
    assert "mkldnn_rnn_layer:bfloat16" in got["ops"] and "mkldnn_rnn_layer_backward:bfloat16" in got["ops"]
    assert "addmm:bfloat16" in got["ops"]  # the decoder
    assert "_log_softmax:float32" in got["ops"]  # the loss stays float32 (autocast's fp32 list)
    assert got["env"]["lstm_kernel"] == "onednn (bfloat16)" and got["env"]["precision"]["lstm_dtype"] == "bfloat16"
    assert got["env"]["precision"]["bf16_hardware"] == env.bf16_hardware()["bf16_hardware"]


def test_bf16_packed_runs_aten_cells_not_onednn(bf16_ops):
    got = bf16_ops["packed"]
    assert not any(op.startswith("mkldnn_rnn_layer") for op in got["ops"])
    assert "sigmoid_:bfloat16" in got["ops"] and "mm:bfloat16" in got["ops"]  # the gates, per step
    assert got["env"]["lstm_kernel"].startswith("aten native") and "bfloat16 matmuls" in got["env"]["lstm_kernel"]


def test_bf16_keeps_weights_gradients_and_loss_float32(bf16_ops):
    for layout in ("packed", "padded"):
        got = bf16_ops[layout]
        assert got["param_dtypes"] == ["torch.float32"] and got["weights"] == ["float32"]
        assert got["loss_dtype"] == "torch.float32"
        # clipping (sum of squares, a foreach scale) and the SGD update ran on float32 gradients only
        assert "_foreach_mul_:float32" in got["ops"] and "_foreach_mul_:bfloat16" not in got["ops"]


def test_verify_bf16_passes_against_eager_fp32(ptb_path, cpu_bf16):
    if not cpu_bf16:
        pytest.skip("no bfloat16 path in oneDNN on this CPU: bf16 is skipped here")
    from lmbench.verify.variants import verify_variant

    lines = []
    assert verify_variant(backends=["torch"], data_dir=ptb_path.parent, precision="bf16",
                          print_=lines.append) == 0, lines
    assert lines[-1] == "verify bf16: PASS (3 compared, 0 skipped)"
    assert sum(" bf16 vs eager fp32 " in line for line in lines) == 3
