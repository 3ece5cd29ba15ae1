"""What every backend module promises, checked on each one found in backends/ (so a new
framework is held to it without editing this file)."""
from __future__ import annotations

import subprocess
import sys

import pytest

from lmbench.backend import available_backends, backend_layouts

_BUILD = r"""
import sys
from lmbench.backend import load_backend
from lmbench.config import make_config
Backend = load_backend(sys.argv[1])
try:
    Backend(make_config("tiny"), sys.argv[2], "cpu", 1)
except ValueError as e:
    print("ValueError:", e)
else:
    print("built")
"""


@pytest.mark.parametrize("backend", available_backends())
def test_an_unknown_layout_is_an_error_naming_the_allowed_ones(backend):
    proc = subprocess.run([sys.executable, "-c", _BUILD, backend, "sideways"], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout.strip().splitlines()[-1]
    assert out.startswith("ValueError:") and "invalid layout='sideways'" in out, out
    assert ", ".join(backend_layouts(backend)) in out


@pytest.mark.parametrize("backend", available_backends())
def test_every_layout_says_on_each_device_whether_its_lstm_computes_padding(backend):
    from lmbench.backend import computes_padding

    for layout in backend_layouts(backend):
        for device in ("cpu", "cuda"):
            assert isinstance(computes_padding(backend, layout, device), bool), (layout, device)
