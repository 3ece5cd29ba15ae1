"""What every backend module promises, checked on each one found in backends/ (so a new
framework is held to it without editing this file)."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from lmbench.backend import available_backends, backend_layouts

_BUILD = r"""
import json, sys
from lmbench.backend import available_backends, load_backend, native_layout
from lmbench.config import make_config
Backend = load_backend(sys.argv[1])
try:
    Backend(make_config("tiny"), "sideways", "cpu", 1)
except ValueError as e:
    error = f"ValueError: {e}"
else:
    error = "built"
Backend(make_config("tiny"), native_layout(sys.argv[1]), "cpu", 1)
# the built-in backends are named as their frameworks' top-level modules
loaded = [m for m in available_backends() + ["torch._dynamo", "matplotlib", "pandas"] if sys.modules.get(m) is not None]
print(json.dumps({"error": error, "loaded": loaded}))
"""


@pytest.fixture(scope="module", params=available_backends())
def built(request):
    """One process per backend: an unknown layout tried, then the native one built."""
    proc = subprocess.run([sys.executable, "-c", _BUILD, request.param], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return request.param, json.loads(proc.stdout.strip().splitlines()[-1])


def test_an_unknown_layout_is_an_error_naming_the_allowed_ones(built):
    backend, out = built
    assert out["error"].startswith("ValueError:") and "invalid layout='sideways'" in out["error"], out
    assert ", ".join(backend_layouts(backend)) in out["error"]


def test_a_backend_process_imports_its_framework_alone(built):
    # another framework imported along (TensorFlow imports JAX when installed), an eager
    # model pulling in a compiler stack (torch.optim imports torch._dynamo) or plotting and
    # data-frame libraries (Keras imports matplotlib and pandas) cost every run seconds and,
    # on the CPU, count in its peak memory (max RSS); lmbench's report runs in the parent
    backend, out = built
    assert out["loaded"] == [backend], out["loaded"]


@pytest.mark.parametrize("backend", available_backends())
def test_every_layout_says_on_each_device_whether_its_lstm_computes_padding(backend):
    from lmbench.backend import computes_padding

    for layout in backend_layouts(backend):
        for device in ("cpu", "cuda"):
            assert isinstance(computes_padding(backend, layout, device), bool), (layout, device)


def test_a_declared_refusal_is_the_first_entry_the_settings_meet():
    from lmbench.backend import declined_variant

    declared = [({"precision": ("bf16", "fp16"), "layout": "old"}, "no {precision} on {layout}"),
                ({"precision": "fp16", "device": "cpu"}, "fp16 is a GPU precision"),
                ({"compile": True}, "nothing to compile")]
    settings = dict(layout="new", device="cpu", compile=False, precision="fp32")
    assert declined_variant(declared, **settings) is None
    assert declined_variant(declared, **{**settings, "layout": "old", "precision": "fp16"}) == "no fp16 on old"
    assert declined_variant(declared, **{**settings, "precision": "fp16"}) == "fp16 is a GPU precision"
    assert declined_variant(declared, **{**settings, "precision": "fp16", "device": "cuda"}) is None
    assert declined_variant(declared, **{**settings, "compile": True}) == "nothing to compile"
    with pytest.raises(ValueError, match="DECLINED_VARIANTS names batch_size: an entry may name layout, device"):
        declined_variant([({"batch_size": 32}, "why")], **settings)


@pytest.mark.parametrize("backend", available_backends())
def test_every_declared_refusal_names_known_settings_and_says_why(backend):
    from lmbench.backend import PRECISIONS, declined

    for layout in backend_layouts(backend):
        for device in ("cpu", "cuda"):
            for compile in (False, True):
                for precision in PRECISIONS:
                    reason = declined(backend, layout, device, compile, precision)
                    assert reason is None or reason.startswith(f"{backend}: --"), reason


# imported, it fails the test: a refusal it declares must be made without importing it
_REFUSING_BACKEND = '''
LAYOUTS = ("only",)
COMPUTES_PADDING = {"only": {"cpu": True, "cuda": True}}
DECLINED_VARIANTS = [({"compile": True}, "refusing: --compile is declined on {device}")]
raise ImportError("the framework was imported for a declined variant")
'''


def test_a_declared_refusal_is_recorded_without_importing_the_framework(tmp_path):
    from lmbench.config import make_config
    from lmbench.run.probe import SKIPPED, probe
    from lmbench.run.runner import run_isolated
    from lmbench.runspec import run_spec

    backend = tmp_path / "refusing.py"
    backend.write_text(_REFUSING_BACKEND)
    cfg = make_config("tiny")
    assert probe(str(backend), "only", cfg, {}, [], [], options={"compile": True}) == \
        {"only": (SKIPPED, "refusing: --compile is declined on cpu")}
    record = run_isolated(run_spec(cfg, str(backend), device="cpu", compile=True, steps=2, warmup=1, eval="none"),
                          timeout=120)
    assert record["status"] == "skipped", record.get("error")
    assert record["reason"] == "refusing: --compile is declined on cpu"
