"""`lmbench bench`: suite files, a failing cell that does not stop the rest, resume."""
from __future__ import annotations

import json

import pytest

from lmbench.bench import SuiteError, has_gpu, load_suite, run_suite, suite_path


def suite(tmp_path, text, name="s.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_shipped_suites_load():
    cells = load_suite(suite_path("default"))
    natives = {(c["backend"], c["layout"]) for c in cells}
    assert {("torch", "packed"), ("tensorflow", "padded"), ("paddle", "lod"), ("torch", "padded"),
            ("paddle", "padded")} <= natives
    assert {c["mode"] for c in cells} == {"sentence", "stream"}
    assert {c.get("batching") for c in cells if c["mode"] == "sentence"} == {"random", "bucketed"}
    assert all(c.get("eval") == "valid" for c in cells if c["mode"] == "stream")
    assert len(load_suite(suite_path("gpu"))) > len(cells)
    assert len(load_suite(suite_path("check"))) == 2


@pytest.mark.parametrize("text,needle", [
    ('[[matrix]]\nbackend = "jax"\n', "entry 1: unknown backend 'jax': available: paddle, tensorflow, torch"),
    ('[[matrix]]\nbackend = "torch"\nhiden = 3\n', "entry 1: unknown field(s) ['hiden']"),
    ('[[matrix]]\nbackend = "torch"\nmode = "sentense"\n', "entry 1: invalid mode='sentense': allowed: sentence, stream"),
    ('[[matrix]]\nbackend = "torch"\n[[matrix]]\nbackend = "torch"\nlayout = "lod"\n',
     "entry 2: backend 'torch' has no layout 'lod'"),
    ('[[matrix]]\nbackend = "torch"\nsteps = 0\n', "entry 1: invalid steps=0"),
    ('[matrix\n', "not valid TOML"),
    ('[defaults]\nsteps = 3\n', "no cells"),
])
def test_bad_suite_files_name_file_entry_and_problem(tmp_path, text, needle):
    path = suite(tmp_path, text)
    with pytest.raises(SuiteError) as e:
        load_suite(path)
    assert str(path) in str(e.value) and needle in str(e.value)


def test_unknown_suite_name_lists_the_known_ones():
    with pytest.raises(SuiteError, match="unknown suite 'nightly': known suites: check, default, gpu"):
        suite_path("nightly")


@pytest.mark.skipif(has_gpu(), reason="this machine has a GPU")
def test_cuda_without_gpu_fails_before_any_cell(tmp_path):
    path = suite(tmp_path, '[[matrix]]\nbackend = "torch"\npreset = "tiny"\nsteps = 1\n')
    with pytest.raises(SuiteError, match="no NVIDIA GPU"):
        run_suite(str(path), device="cuda", results_dir=tmp_path / "results", report=False)
    assert not (tmp_path / "results").exists()


def test_failing_cell_is_recorded_and_resume_picks_up(tmp_path):
    path = suite(tmp_path, """
[defaults]
preset = "tiny"
steps = 3
warmup = 0
eval = "none"
[[matrix]]
backend = "torch"
layout = "packed"
[[matrix]]
backend = "torch"
layout = "padded"
lr = 1e30
clip = 1e30
init_scale = 50.0
""")
    results = tmp_path / "results"
    assert run_suite(str(path), device="cpu", results_dir=results) == 1  # one cell failed
    files = sorted(results.glob("*/*.jsonl"))
    assert len(files) == 1
    records = [json.loads(line) for line in files[0].read_text().splitlines()]
    assert [(r["layout"], r["status"]) for r in records] == [("packed", "ok"), ("padded", "failed")]
    assert "training loss became" in records[1]["error"]
    assert (results / "report" / "report.html").exists()  # the report ran despite the failure
    # an interrupted or failed suite: --resume re-runs only what has no ok record yet
    assert run_suite(str(path), device="cpu", results_dir=results, resume=True, report=False) == 1
    files = sorted(results.glob("*/*.jsonl"))
    assert len(files) == 2  # records are never rewritten: the resumed run has its own file
    resumed = [json.loads(line) for line in files[1].read_text().splitlines()]
    assert [r["layout"] for r in resumed] == ["padded"]
