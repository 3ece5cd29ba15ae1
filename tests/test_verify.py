"""`lmbench verify --preset tiny`: every installed framework computes the same function."""
from __future__ import annotations

from lmbench.cli import main as cli_main


def test_verify_tiny_passes_across_all_three_frameworks(capsys):
    code = cli_main(["verify", "--preset", "tiny"])
    out = capsys.readouterr().out
    assert "verify: PASS" in out, out
    assert code == 0
    for pair in ("torch/packed vs tensorflow/padded", "torch/packed vs paddle/lod",
                 "tensorflow/padded vs paddle/lod", "tensorflow/padded vs tensorflow/dynamic_rnn",
                 "torch/packed vs torch/padded", "paddle/lod vs paddle/padded"):
        a, b = pair.split(" vs ")
        assert pair in out or f"{b} vs {a}" in out, pair  # either order: backends are listed by name
    # the parameter counts agree across every backend and layout
    counts = {line.split(": ")[1] for line in out.splitlines() if "parameters exported" in line}
    assert counts == {"666,896 parameters exported"}
    assert out.count("parameters exported") == 8  # torch 3 layouts, tensorflow 3, paddle 2
