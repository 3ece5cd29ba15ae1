"""`lmbench verify`: every installed framework computes the same function, and verify
catches the bugs that matter -- each injected, one at a time, into a copy of the torch
backend (tests/mutants/) is named by the check that caught it."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from lmbench.backend import available_backends, backend_layouts
from lmbench.cli import main as cli_main
from lmbench.verify import verify

MUTANTS_DIR = Path(__file__).parent / "mutants"
# mutant module -> the check (and tensor) that must catch it
MUTANTS = {
    "gate_swap_w_hh": r"grad\[lstm\d\.w_hh\]",  # per-tensor: W_hh's gradient is small globally
    "no_b_hh": r"trained_weights\[",  # biases start at 0: only training shows it
    "per_token_mean": r"(: |; )loss \d",  # the objective itself
    "no_clipping": r"trained_weights\[",  # the script's training steps reach norms above the clip
    "truncated_bptt": r"grad\[lstm\d\.w_hh\]",  # forward unchanged, gradients through time cut
}
# bugs the loss and gradients from the initial weights cannot show (so those checks must pass)
TRAINING_ONLY = {"no_b_hh", "no_clipping"}


def test_verify_tiny_passes_across_all_three_frameworks(capsys):
    code = cli_main(["verify", "--preset", "tiny"])
    out = capsys.readouterr().out
    assert "verify: PASS" in out, out
    assert code == 0
    for pair in ("torch/packed vs tensorflow/padded", "torch/packed vs paddle/lod",
                 "tensorflow/padded vs paddle/lod", "tensorflow/padded vs tensorflow/dynamic_rnn",
                 "torch/packed vs torch/padded", "paddle/lod vs paddle/padded",
                 "paddle/lod vs paddle/lod-padded"):
        a, b = pair.split(" vs ")
        assert pair in out or f"{b} vs {a}" in out, pair  # either order: backends are listed by name
    # the parameter counts agree across every backend and layout
    counts = {line.split(": ")[1] for line in out.splitlines() if "parameters exported" in line}
    assert counts == {"666,896 parameters exported"}
    assert out.count("parameters exported") == sum(len(backend_layouts(n)) for n in available_backends())


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["tiny", "small"])
def test_verify_catches_each_injected_bug(preset, capsys):
    code = verify(preset, backends=["torch", *(str(MUTANTS_DIR / f"{m}.py") for m in MUTANTS)],
                  reference="torch")
    out = capsys.readouterr().out
    print(out)  # the table and FAIL lines, for the record (-s)
    assert code == 1 and "verify: FAIL" in out
    fails = {m.group(1): line for line in out.splitlines()
             if (m := re.match(r"  FAIL torch/packed vs (\w+)/", line))}
    assert set(fails) == set(MUTANTS), out  # every mutant fails; torch's own layouts do not
    for mutant, caught_by in MUTANTS.items():
        assert re.search(caught_by, fails[mutant]), (mutant, fails[mutant])
        if mutant in TRAINING_ONLY:
            assert not re.search(r"(: |; )(loss|grad\[)", fails[mutant]), (mutant, fails[mutant])
    assert not re.search(r"(: |; )loss ", fails["truncated_bptt"])  # its forward pass is right
