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
loaded = [m for m in available_backends() + ["torch._dynamo"] if sys.modules.get(m) is not None]
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
    # another framework imported along (TensorFlow imports JAX when installed) or an eager
    # model pulling in a compiler stack (torch.optim imports torch._dynamo) costs every run
    # seconds and, on the CPU, counts in its peak memory (max RSS)
    backend, out = built
    assert out["loaded"] == [backend], out["loaded"]


@pytest.mark.parametrize("backend", available_backends())
def test_every_layout_says_on_each_device_whether_its_lstm_computes_padding(backend):
    from lmbench.backend import computes_padding

    for layout in backend_layouts(backend):
        for device in ("cpu", "cuda"):
            assert isinstance(computes_padding(backend, layout, device), bool), (layout, device)
