"""Run variants (--compile, --precision): validated, recorded, skipped honestly, reported."""
from __future__ import annotations

import copy

import pytest

from lmbench import env

from lmbench.run import runner
from lmbench.runspec import run_spec
from lmbench.regress.compare import compare_records
from lmbench.config import ConfigError, make_config
from lmbench.results import label, load_records, variant
from lmbench.runspec import record_identity
from lmbench.run.suite import SuiteError, load_suite, spec_for
from records import record


def tiny_spec(**kw):
    return run_spec(make_config("tiny"), "torch", steps=5, warmup=1, eval="none", **kw)


@pytest.mark.parametrize("kw,needle", [
    (dict(precision="fp8"), "invalid precision='fp8': allowed: fp32, bf16, fp16"),
    (dict(precision="BF16"), "invalid precision='BF16'"),
    (dict(compile="yes"), "invalid compile='yes': must be true or false"),
    (dict(compile=1), "invalid compile=1"),
])
def test_bad_variant_settings_are_rejected_before_any_work(kw, needle):
    with pytest.raises(ConfigError, match=needle.replace("(", r"\(").replace("[", r"\[")):
        tiny_spec(**kw)


def test_variant_settings_are_in_the_spec_and_default_to_eager_fp32():
    assert (tiny_spec().compile, tiny_spec().precision, tiny_spec().variant) == (False, "fp32", "eager fp32")
    spec = tiny_spec(compile=True, precision="bf16")
    assert (spec.compile, spec.precision, spec.variant) == (True, "bf16", "compile: embedding+head, bf16")
    assert {"compile", "precision"} <= set(spec.recorded())


def test_suite_cells_carry_variants_and_reject_typos(tmp_path):
    good = tmp_path / "v.toml"
    good.write_text('[defaults]\npreset = "tiny"\nsteps = 5\n[[matrix]]\nbackend = "torch"\n'
                    'compile = [false, true]\nprecision = ["fp32", "bf16"]\n')
    cells = load_suite(good)
    assert sorted((c["compile"], c["precision"]) for c in cells) == [
        (False, "bf16"), (False, "fp32"), (True, "bf16"), (True, "fp32")]
    assert {(spec_for(c).compile, spec_for(c).precision) for c in cells} == \
        {(c["compile"], c["precision"]) for c in cells}
    bad = tmp_path / "bad.toml"
    bad.write_text('[[matrix]]\nbackend = "torch"\nprecision = "half"\n')
    with pytest.raises(SuiteError, match=r"entry 1: invalid precision='half': allowed: fp32, bf16, fp16"):
        load_suite(bad)
    bad.write_text('[[matrix]]\nbackend = "torch"\ncompile = "true"\n')
    with pytest.raises(SuiteError, match="invalid compile='true'"):
        load_suite(bad)


def skipped(base: dict, reason="torch: fp16 on the CPU is not applicable") -> dict:
    r = copy.deepcopy(base)
    r.update(status="skipped", reason=reason, metrics=None, error=None, error_kind=None, environment=None)
    return r


def with_run(r: dict, **run) -> dict:
    r = copy.deepcopy(r)
    r["run"].update(run)
    return r


def test_records_before_variants_existed_are_the_eager_fp32_cell():
    old = record()  # a record without compile/precision in "run"
    assert record_identity(old) == record_identity(with_run(old, compile=False, precision="fp32"))
    assert record_identity(old) != record_identity(with_run(old, precision="bf16"))
    assert record_identity(old) != record_identity(with_run(old, compile=True))
    assert variant(old) == "eager fp32"
    assert variant(with_run(old, compile=True, precision="bf16")) == "compile: embedding+head, bf16"
    assert label(with_run(old, precision="bf16")).endswith("[bf16]") and "[" not in label(old)


def test_skipped_records_are_kept_and_need_a_reason(tmp_path):
    import json

    ok = record()
    good, no_reason = skipped(ok), skipped(ok)
    del no_reason["reason"]
    path = tmp_path / "r.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in (ok, good, no_reason)) + "\n")
    warnings = []
    got = load_records([path], warn=warnings.append)
    assert [r["status"] for r in got] == ["ok", "skipped"]
    assert got[1]["reason"] == good["reason"]
    assert len(warnings) == 1 and ":3: skipped an incomplete record (a skipped record without a 'reason')" in warnings[0]


def test_compare_ignores_skipped_unless_the_baseline_ran_it():
    base = [record(seed=i) for i in range(5)]
    # skipped in the baseline too: not a number on either side, nothing to compare, no failure
    result = compare_records(base + [skipped(with_run(base[0], precision="fp16"))],
                             [record(seed=10 + i) for i in range(5)]
                             + [skipped(with_run(base[0], precision="fp16"))])
    assert result["code"] == 0 and not result["missing"]
    # ran in the baseline, skipped in the candidate: the candidate lost a measurement
    result = compare_records(base, [skipped(r) for r in base])
    assert result["code"] == 1 and "SKIPPED in the candidate: torch: fp16 on the CPU" in result["missing"][0][1]


def test_bf16_hardware_is_read_from_the_cpu_flags():
    assert env.bf16_hardware({"avx2", "avx512f", "avx512_bf16"}) == {
        "bf16_hardware": True, "cpu_bf16_flags": ["avx512_bf16"]}
    assert env.bf16_hardware({"avx2", "avx512f", "amx_bf16", "amx_tile"})["bf16_hardware"]
    assert env.bf16_hardware({"avx2", "avx512f", "avx512bw"}) == {"bf16_hardware": False, "cpu_bf16_flags": []}
    assert env.bf16_hardware(set())["bf16_hardware"] is False  # no /proc/cpuinfo: no claim
    # this machine's answer is the one its /proc/cpuinfo gives, and every record carries it
    assert env.host()["bf16_hardware"] == bool({"avx512_bf16", "amx_bf16"} & env.cpu_flags())


def test_report_sets_each_variant_against_eager_fp32_and_shows_skips(tmp_path):
    import json

    from lmbench.report.document import write_report

    eager = record(layout="padded", words_per_sec=1000.0, step_ms=100.0)
    compiled = with_run(record(layout="padded", words_per_sec=1500.0, step_ms=66.0, seed=1), compile=True)
    compiled["metrics"].update(first_step_ms=4200.0, compile={"compiler": "torch.compile (inductor)", "graphs": 4,
                                                               "graph_breaks": 0, "recompiles": 2})
    bf16 = with_run(record(layout="padded", words_per_sec=800.0, seed=2), precision="bf16")
    fp16 = skipped(with_run(eager, precision="fp16"), reason="torch: fp16 on this CPU: no float16 arithmetic")
    path = tmp_path / "r.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in (eager, compiled, bf16, fp16)) + "\n")
    md = write_report([path], tmp_path / "out")[0].read_text()
    table = md.split("## Variants")[1].split("\n\n")[1]
    rows = {line.split(" | ")[1]: line for line in table.splitlines()[2:]}
    assert set(rows) == {"eager fp32", "compile: embedding+head", "bf16", "fp16"}
    assert "1.00× (baseline)" in rows["eager fp32"]
    compiled_row = rows["compile: embedding+head"]
    assert "| 1.50× | 4,200 |" in compiled_row and "| 2 | graphs 4, graph breaks 0 |" in compiled_row
    assert "| 0.80× |" in rows["bf16"]
    assert "skipped: torch: fp16 on this CPU: no float16 arithmetic" in rows["fp16"]
    # the headline keeps variants apart: three cells, not three repeats of one
    headline = md.split("## Headline")[1].split("\n## ")[0]
    assert sum(line.startswith("| torch | padded |") for line in headline.splitlines()) == 3 and "| Variant |" in headline


def test_a_compile_variant_names_what_its_framework_compiled():
    from lmbench.backend import compile_scope

    # declared in each backend's source, read without importing the framework
    assert compile_scope("torch") == "embedding+head" and compile_scope("tensorflow") == "whole step"
    assert compile_scope("jax") is None  # every JAX step is one jit program: no compile variant
    assert tiny_spec(compile=True).label.endswith("[compile: embedding+head]")
    tf = with_run(record(backend="tensorflow", layout="padded"), compile=True)
    assert variant(tf) == "compile: whole step"
    # the record's own scope wins over today's declaration (a record is what ran)
    tf["environment"]["compile_scope"] = "embedding only"
    assert variant(tf) == "compile: embedding only"
    # a backend this checkout does not have: the plain label, not an error
    assert variant(with_run(record(backend="gone"), compile=True)) == "compile"
