"""`lmbench verify`: every installed framework computes the same function, and verify
catches the bugs that matter -- each injected, one at a time, into a copy of the torch
backend (tests/mutants/) is named by the check that caught it."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from lmbench.backend import BackendUnavailable, available_backends, backend_layouts
from lmbench.cli import main as cli_main
from lmbench.verify.verify import FLOOR, compare, failed_checks, verify

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


def _result(grads: dict, weights: dict) -> dict:
    """An unpacked probe result: one loss_and_grads step, one training loss, the weights."""
    return {"losses": np.array([3.0]), "grads": [grads], "trained_losses": np.array([2.0]),
            "weights": weights}


def test_a_wrong_gradient_in_a_globally_tiny_tensor_is_named():
    # W_hh's gradient is 4e-6 of the global norm; 10% wrong in it is 4e-7 of the global
    # norm, which a global tolerance would pass
    ref = {"decoder.b": np.full(100, 1e5), "lstm0.w_hh": np.ones((4, 4))}
    bad = {"decoder.b": ref["decoder.b"], "lstm0.w_hh": 1.1 * ref["lstm0.w_hh"]}
    weights = {k: np.zeros_like(v) for k, v in ref.items()}
    assert failed_checks(compare(_result(ref, weights), _result(ref, weights), weights)) == []
    assert failed_checks(compare(_result(bad, weights), _result(ref, weights), weights)) == [
        "grad[lstm0.w_hh] 1.0e-01 > 1e-04"]


def test_a_tensor_with_zero_gradient_is_held_to_the_floor_not_divided_by_zero():
    ref = {"decoder.b": np.full(4, 1.0), "embedding": np.zeros((3, 2))}  # total norm 2
    weights = {k: np.zeros_like(v) for k, v in ref.items()}
    floor = FLOOR * 2
    for noise, failed in ((0.0, []), (0.5e-4 * floor, []), (2e-4 * floor, ["grad[embedding]"])):
        other = {"decoder.b": ref["decoder.b"], "embedding": np.full((3, 2), noise / np.sqrt(6))}
        got = failed_checks(compare(_result(other, weights), _result(ref, weights), weights))
        assert [g.split(" ")[0] for g in got] == failed, noise


def test_trained_weights_are_compared_to_how_far_training_moved_each_tensor():
    grads = {"decoder.w": np.ones((2, 2)), "lstm0.w_hh": np.ones((2, 2))}
    initial = {"decoder.w": np.zeros((2, 2)), "lstm0.w_hh": np.full((2, 2), 100.0)}
    ref = {"decoder.w": np.full((2, 2), 100.0), "lstm0.w_hh": np.full((2, 2), 101.0)}  # moved 100 and 1
    close = {"decoder.w": ref["decoder.w"] + 0.05, "lstm0.w_hh": ref["lstm0.w_hh"] + 0.0005}
    far = {"decoder.w": ref["decoder.w"], "lstm0.w_hh": ref["lstm0.w_hh"] + 0.02}  # 2% of its move, 2e-4 of all
    assert failed_checks(compare(_result(grads, close), _result(grads, ref), initial)) == []
    assert failed_checks(compare(_result(grads, far), _result(grads, ref), initial)) == [
        "trained_weights[lstm0.w_hh] 2.0e-02 > 1e-03"]


def test_a_backend_path_that_does_not_exist_is_a_clear_error(tmp_path):
    with pytest.raises(BackendUnavailable, match="unknown backend .*nothere.py"):
        backend_layouts(str(tmp_path / "nothere.py"))
    assert backend_layouts(str(MUTANTS_DIR / "truncated_bptt.py")) == ("padded",)


def test_verify_tiny_passes_across_all_frameworks(capsys, tmp_path):
    code = cli_main(["verify", "--preset", "tiny", "--out", str(tmp_path / "verify.json")])
    out = capsys.readouterr().out
    assert "verify: PASS" in out, out
    assert code == 0
    import json

    verdict = json.loads((tmp_path / "verify.json").read_text())  # what the report shows
    assert verdict["verdict"] == "PASS" and verdict["preset"] == "tiny"
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


@pytest.mark.slow
def test_a_backend_alone_on_the_device_is_still_held_to_the_cpu_reference(capsys):
    # one backend with one layout has nothing to be compared with on its device; the float32
    # CPU reference (what `verify --device cuda --cpu-reference torch` adds) still catches its bug
    mutant = str(MUTANTS_DIR / "truncated_bptt.py")
    assert verify("tiny", backends=[mutant], cpu_reference="torch") == 1
    out = capsys.readouterr().out
    assert re.search(r"  FAIL torch@cpu/packed vs truncated_bptt/padded: .*grad\[lstm\d\.w_hh\]", out), out
    assert verify("tiny", backends=["torch"], cpu_reference="torch") == 0
    out = capsys.readouterr().out
    assert "torch@cpu/packed vs torch/packed" in out and "verify: PASS" in out, out


def test_an_unknown_cpu_reference_fails_before_any_work(capsys):
    assert cli_main(["verify", "--backends", "torch", "--cpu-reference", "troch"]) == 2
    assert "unknown backend" in capsys.readouterr().err
