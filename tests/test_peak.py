"""`lmbench peak`: a figure above the device's theoretical peak is refused; precision pinned and
recorded; a bf16 run's ceiling is the bf16 GEMM's."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from lmbench import env

from lmbench.run import peak
from lmbench.cli import main as cli_main

ZEN4 = {"vendor": "AuthenticAMD", "family": 25, "model": 17, "stepping": 1,
        "isa": ["avx", "avx2", "avx512_bf16", "avx512f", "fma"]}
SPR = {"vendor": "GenuineIntel", "family": 6, "model": 143, "stepping": 8,
       "isa": ["avx", "avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "fma"]}


def test_a_zen4_core_peaks_at_two_256_bit_fma_units_even_with_avx512():
    bound = peak.cpu_peak(2, "fp32", ZEN4, clock=(3.0, "test clock"))
    assert bound["flop_per_cycle"] == 32 and bound["gflops"] == pytest.approx(192.0)
    assert "2 FMA units of 256 bits (AuthenticAMD family 25)" in bound["basis"]


def test_an_undocumented_cpu_gets_an_upper_bound_from_its_widest_vectors():
    intel = peak.cpu_peak(1, "fp32", {**SPR, "isa": ["avx", "avx2", "avx512f", "fma"]}, clock=(2.0, "c"))
    assert intel["flop_per_cycle"] == 64 and "an upper bound" in intel["basis"]  # 2 x 16 lanes x 2
    avx2 = peak.cpu_peak(1, "fp32", {"vendor": "GenuineIntel", "family": 6, "isa": ["avx", "avx2", "fma"]},
                         clock=(2.0, "c"))
    assert avx2["flop_per_cycle"] == 32


def test_the_bf16_ceiling_follows_the_bf16_instructions():
    clock = (2.0, "c")
    assert peak.cpu_peak(1, "bf16", ZEN4, clock)["flop_per_cycle"] == 64  # dot products: 2 per lane
    assert peak.cpu_peak(1, "bf16", SPR, clock)["flop_per_cycle"] == peak.AMX_BF16_FLOP_PER_CYCLE
    emulated = peak.cpu_peak(1, "bf16", {**ZEN4, "isa": ["avx", "avx2", "fma"]}, clock)
    assert emulated["flop_per_cycle"] == 32 and "computed as float32" in emulated["basis"]


def test_without_a_readable_clock_the_bound_takes_the_fastest_shipped_clock(monkeypatch):
    monkeypatch.setattr(peak.glob, "glob", lambda pattern: [])
    ghz, basis = peak.cpu_clock_bound()
    assert ghz == peak.MAX_CLOCK_GHZ and "clock not readable here" in basis


def test_the_example_tensorflow_figure_is_impossible_on_two_zen4_cores():
    """docs/report-example/peak.json: TensorFlow 471.8 GFLOP/s on 2 threads of this project's
    Zen 4 machine kind, above even the bound at the fastest clock any x86 CPU ships with."""
    bound = peak.cpu_peak(2, "fp32", ZEN4, clock=(peak.MAX_CLOCK_GHZ, "max"))
    why = peak.check_figure({"gflops": 471.84644626882107}, bound)
    assert why.startswith("471.8 GFLOP/s is above the theoretical peak 396.8 (2 core(s) x 32 FLOP/cycle")
    assert peak.check_figure({"gflops": 218.4}, bound) is None  # what the same code measures today


def test_gpu_bound_from_sms_and_clock_and_unknown_capabilities_are_not_checked():
    h100 = {"sms": 132, "compute_capability": (9, 0), "clock_mhz": 1980.0}
    assert peak.gpu_peak("fp32", h100)["gflops"] == pytest.approx(66908.16)
    assert peak.gpu_peak("bf16", h100)["gflops"] == pytest.approx(132 * 4096 * 1.98)
    unknown = peak.gpu_peak("fp32", {**h100, "compute_capability": (12, 1)})
    assert unknown["gflops"] is None and "compute capability 12.1" in unknown["basis"]
    assert peak.gpu_peak("bf16", {**h100, "compute_capability": (7, 0)})["gflops"] is None  # V100: no bf16


def fake_child(gflops, device="cpu", precision="fp32"):
    def run(cmd, **kw):
        assert cmd[cmd.index("--precision") + 1] == precision
        out = {"gflops": gflops, "device": device, "size": 2048, "framework_version": "1.0",
               "precision": precision, "tf32": False if precision == "fp32" else None}
        return subprocess.CompletedProcess(cmd, 0, json.dumps(out) + "\n", "")
    return run


def test_a_measured_figure_above_the_theoretical_peak_is_refused_and_not_saved(tmp_path, monkeypatch):
    monkeypatch.setattr(peak.subprocess, "run", fake_child(471.8))
    said = []
    bound = lambda device, precision, threads: {"gflops": 396.8, "basis": "2 cores x 32 x 6.2"}  # noqa: E731
    assert peak.measure_peaks(["torch"], tmp_path, "cpu", 2, say=said.append, bound=bound) == 1
    assert said == ["torch: fp32 GEMM peak REFUSED, not saved: 471.8 GFLOP/s is above the theoretical peak "
                    "396.8 (2 cores x 32 x 6.2): a measurement error, not a rate"]
    assert not peak.peak_file(tmp_path).exists()


def test_a_possible_figure_is_saved_with_its_precision_and_bound_and_bf16_apart(tmp_path, monkeypatch):
    bound = lambda device, precision, threads: {"gflops": 400.0 * (1 + (precision == "bf16")), "basis": "b"}  # noqa: E731
    monkeypatch.setattr(peak.subprocess, "run", fake_child(210.0))
    assert peak.measure_peaks(["torch"], tmp_path, "cpu", 2, say=lambda m: None, bound=bound) == 0
    monkeypatch.setattr(peak.subprocess, "run", fake_child(300.0, precision="bf16"))
    assert peak.measure_peaks(["torch"], tmp_path, "cpu", 2, say=lambda m: None, bound=bound, precision="bf16") == 0
    data = json.loads(peak.peak_file(tmp_path).read_text())
    assert data["torch"]["precision"] == "fp32" and data["torch"]["tf32"] is False
    assert data["torch"]["theoretical_gflops"] == 400.0 and data["torch"]["machine_key"] == env.machine_key()
    assert data["bf16"]["torch"]["gflops"] == 300.0 and data["bf16"]["torch"]["precision"] == "bf16"
    # a bf16 run divides by the bf16 ceiling, a float32 run by the float32 one
    assert peak.ceiling_for(data, "torch", "bf16", "cpu")["gflops"] == 300.0
    assert peak.ceiling_for(data, "torch", "fp32", "cpu")["gflops"] == 210.0
    assert peak.ceiling_for(data, "torch", "bf16", "cuda") is None and peak.ceiling_for(data, "jax", "bf16") is None


def test_no_ceiling_from_an_entry_above_its_recorded_theoretical_peak_or_without_a_bf16_one():
    data = {"tensorflow": {"gflops": 471.8, "device": "cpu", "theoretical_gflops": 396.8},
            "torch": {"gflops": 212.0, "device": "cpu"}}  # an older entry: float32, no bound recorded
    assert peak.ceiling_for(data, "tensorflow") is None
    assert peak.ceiling_for(data, "torch")["gflops"] == 212.0
    assert peak.ceiling_for(data, "torch", "bf16") is None  # never the float32 figure for a bf16 run


def test_peak_takes_the_gpu_scripts_interface(capsys):
    if peak.cuda_device_facts() is not None or __import__("lmbench.env").env.has_gpu():
        pytest.skip("a GPU is here: this checks the refusal on a CPU-only machine")
    assert cli_main(["peak", "--device", "cuda", "--precision", "bf16"]) == 2
    assert "--device cuda: this machine has no NVIDIA GPU" in capsys.readouterr().err


def test_every_backend_gemm_pins_true_float32():
    """torch and TensorFlow switch TF32 off in gemm() itself, not only in Backend.__init__
    (one child process: the test process imports neither framework)."""
    code = ("import torch; from lmbench.backends import torch as t; torch.backends.cuda.matmul.allow_tf32 = True; "
            "t.gemm(8, 'cpu'); print(torch.backends.cuda.matmul.allow_tf32, torch.get_float32_matmul_precision())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.stdout.split() == ["False", "highest"], out.stderr[-2000:]
    code = ("import tensorflow as tf; from lmbench.backends import tensorflow as t; "
            "tf.config.experimental.enable_tensor_float_32_execution(True); t.gemm(8, 'cpu'); "
            "print(tf.config.experimental.tensor_float_32_execution_enabled())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.stdout.split()[-1:] == ["False"], out.stderr[-2000:]
