"""How `lmbench` talks: --version, "did you mean", help that lists what is there, the run's
phases and ETA, its last line, where its record goes, and the unreliable-run warning.
No framework process: the run's child is replaced by a canned record, the worker's phases
are driven by a stand-in backend."""
from __future__ import annotations

import io
import json
import re

import pytest
from records import record
from test_timing import SleepingBackend, batch

from lmbench import __version__

from lmbench.run import runner
from lmbench.backend import available_backends
from lmbench.cli import main as cli_main
from lmbench.console import STEP_SPREAD_LIMIT, RunDisplay, reliability_warnings, summary_line
from lmbench.run.suite import suites_dir
from lmbench.run.worker import evaluate, shape_warmup, train_pass


def test_version(capsys):
    assert cli_main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"lmbench {__version__}"


def test_the_command_line_starts_without_the_report_libraries():
    # pandas and matplotlib are the report's (0.4 s of a 0.8 s `lmbench --version` when every
    # command's parser imported them): only `lmbench report` and a suite's report load them
    import subprocess
    import sys

    code = ("import sys; from lmbench.cli import build_parser; build_parser(); "
            "print(sorted(m for m in ('pandas', 'matplotlib', 'scipy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("argv,needle", [
    (["run", "--backend", "torhc", "--preset", "tiny"], "unknown backend 'torhc' (did you mean 'torch'?)"),
    (["run", "--backend", "torch", "--preset", "smal"], "invalid choice: 'smal' (did you mean 'small'?)"),
    (["run", "--backend", "torch", "--layout", "paked"], "invalid layout='paked' for backend 'torch' "
                                                         "(did you mean 'packed'?)"),
    (["run", "--backend", "torch", "--device", "cdua"], "invalid choice: 'cdua' (did you mean 'cuda'?)"),
    (["run", "--backend", "torch", "--precision", "bf61"], "invalid choice: 'bf61' (did you mean 'bf16'?)"),
    (["bench", "--suite", "defualt"], "unknown suite 'defualt' (did you mean 'default'?)"),
])
def test_a_mistyped_value_gets_the_closest_allowed_one_before_any_work(argv, needle, capsys, monkeypatch):
    monkeypatch.setattr(runner, "run_isolated", lambda *a, **k: pytest.fail("the run started"))
    assert cli_main(argv) == 2
    assert needle in capsys.readouterr().err


def test_help_lists_the_backends_and_the_suites_found(capsys):
    assert cli_main(["run", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert ", ".join(available_backends()) in text
    assert cli_main(["bench", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    suites = sorted(f.stem for f in suites_dir().glob("*.toml"))
    assert {"default", "check", "gpu"} <= set(suites) and ", ".join(suites) in text


def _finished(**kw) -> dict:
    r = record("torch", "packed", words_per_sec=7015.4, step_ms=62.7, spread=0.0, valid_ppl=836.834, **kw)
    r["metrics"].update(peak_memory_kind="process_rss", step_time_source="host wall clock", steps=210, warmup_steps=10,
                        warmup_seconds=1.5, first_step_ms=80.0, train_ppl=900.0, eval_words_per_sec=None,
                        step_time_ms={"median": 62.7, "p10": 54.9, "p90": 70.4, "samples": []})
    return r


def test_the_last_line_has_the_numbers_and_where_the_record_went():
    assert summary_line(_finished(), "results/m/run-1.jsonl") == (
        "7,015 words/s | step 62.7 ms [54.9–70.4] | valid ppl 836.83 | 600 MiB peak RSS; "
        "record appended to results/m/run-1.jsonl")
    failed = record(status="failed")
    assert summary_line(failed, None) == "FAILED (crash): RuntimeError: boom; record not saved (--no-save)"


def test_a_wide_step_time_spread_or_a_busy_machine_is_a_warning():
    quiet = _finished()
    assert reliability_warnings(quiet) == []
    spread = _finished()
    spread["metrics"]["step_time_ms"].update(median=50.0, p90=50.0 * STEP_SPREAD_LIMIT + 1)
    (warning,) = reliability_warnings(spread)
    assert warning.startswith(f"unreliable: step time p90/p50 = 2.02 > {STEP_SPREAD_LIMIT:g}")
    busy = _finished()
    busy["metrics"]["busy"] = {"busy": True, "why": "other processes used 40% of the machine's CPU time (> 10%)"}
    assert reliability_warnings(busy) == ["unreliable: the machine was busy during the timed window (other "
                                          "processes used 40% of the machine's CPU time (> 10%))"]
    busy["metrics"]["busy"]["busy"] = False
    assert reliability_warnings(busy) == []
    assert reliability_warnings(record(status="failed")) == []


@pytest.fixture
def canned(monkeypatch):
    """`lmbench run` whose child process returns a record with a wide step-time spread."""
    done = _finished()
    done["metrics"]["step_time_ms"].update(median=50.0, p90=150.0)

    def run_isolated(spec, timeout=None, on_progress=None):
        for event in ({"phase": "start", "pid": 1}, {"phase": "train", "step": 0, "steps": 2},
                      {"phase": "train", "step": 2, "steps": 2, "words_per_sec": 7015.4}):
            on_progress(event)
        return done
    monkeypatch.setattr(runner, "run_isolated", run_isolated)
    return done


def test_without_out_the_record_goes_to_this_machines_results_folder(canned, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LMBENCH_RESULTS_DIR", str(tmp_path))
    assert cli_main(["run", "--backend", "torch", "--preset", "tiny"]) == 0
    out = capsys.readouterr().out.splitlines()
    (saved,) = tmp_path.glob("*/run-*.jsonl")
    assert re.fullmatch(r"run-\d{8}T\d{6}Z\.jsonl", saved.name) and saved.parent.name == \
        __import__("lmbench.env", fromlist=["machine_key"]).machine_key()
    assert json.loads(saved.read_text())["run_id"] == canned["run_id"]
    assert out[-1].endswith(f"; record appended to {saved}") and out[-1].startswith("7,015 words/s | step 50.0 ms")
    assert out[-2].startswith("WARNING: unreliable: step time p90/p50 = 3.00")


def test_no_save_keeps_no_record_and_says_so(canned, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LMBENCH_RESULTS_DIR", str(tmp_path))
    assert cli_main(["run", "--backend", "torch", "--preset", "tiny", "--no-save"]) == 0
    assert capsys.readouterr().out.splitlines()[-1].endswith("; record not saved (--no-save)")
    assert not list(tmp_path.rglob("*.jsonl"))
    assert cli_main(["run", "--backend", "torch", "--out", str(tmp_path / "r.jsonl"), "--no-save"]) == 2
    assert "not allowed with argument" in capsys.readouterr().err


class EvaluatingBackend(SleepingBackend):
    def eval_step(self, batch):
        return 5.0 * batch.num_targets


def test_the_worker_reports_each_phase_with_its_step_counts():
    """Cold shapes, warm-up, timed steps and evaluation each announce themselves with
    their length, then count up to it: what the parent's bar and ETA are made of."""
    events = []
    backend = EvaluatingBackend()
    batches = [batch([5, 7, 9]), batch([4, 4, 4])] * 3 + [batch([3, 12, 2]), batch([8, 1, 1])]
    shape_warmup(backend, batches, 2, progress=lambda **e: events.append(e))
    train_pass(backend, batches, 1.0, 2, lambda **e: events.append(e))
    evaluate(backend, batches[:3], progress=lambda **e: events.append(e), split="valid")
    phases = [(e["phase"], e.get("step"), e.get("steps")) for e in events]
    assert phases[:3] == [("cold shapes", 0, 2), ("cold shapes", 1, 2), ("cold shapes", 2, 2)]
    assert phases[3] == ("warm-up", 0, 2) and phases[4] == ("train", 2, 8)
    assert phases[-2] == ("train", 8, 8) and "words_per_sec" in events[-2]
    assert events[-1] == {"phase": "evaluation", "split": "valid", "batches": 3}


def test_the_display_shows_the_phases_in_order_with_an_eta(monkeypatch):
    now = [0.0]
    monkeypatch.setattr("lmbench.console.time.monotonic", lambda: now[0])
    out = io.StringIO()
    display = RunDisplay(out, bar=False)
    for at, event in ((0, {"phase": "start", "pid": 7}), (5, {"phase": "cold shapes", "step": 0, "steps": 3}),
                      (8, {"phase": "warm-up", "step": 0, "steps": 10}),
                      (9, {"phase": "train", "step": 10, "steps": 210}),
                      (19, {"phase": "train", "step": 110, "steps": 210, "words_per_sec": 7000.0}),
                      (24, {"phase": "train", "step": 160, "steps": 210}),  # a bar's tick: no line in a log
                      (29, {"phase": "train", "step": 210, "steps": 210, "words_per_sec": 7100.0}),
                      (30, {"phase": "evaluation", "split": "valid", "batches": 50})):
        now[0] = at
        display(event)
    now[0] = 33
    display.finish()
    assert out.getvalue().splitlines() == [
        "  [0:00] start: importing the framework, loading the data",
        "  start: importing the framework, loading the data done in 5.0 s",
        "  [0:05] cold shapes: 3 shapes",
        "  cold shapes done in 3.0 s",
        "  [0:08] warm-up: 10 steps",
        "  warm-up done in 1.0 s",
        "  [0:09] timed steps: 200 steps",
        "  timed steps: 110/210 7,000 words/s, ETA 0:10",  # 100 steps in 10 s, 100 to go
        "  timed steps: 210/210 7,100 words/s",
        "  timed steps done in 21.0 s",
        "  [0:30] evaluation: 50 batches of valid",
        "  evaluation done in 3.0 s"]


@pytest.mark.parametrize("argv", [["--precision", "bf16"], ["--compile"], ["--workers", "2", "--compile"]])
def test_verify_refuses_settings_that_do_not_go_together_before_any_work(argv, capsys, monkeypatch):
    import subprocess

    monkeypatch.setattr(subprocess.Popen, "__init__", lambda *a, **k: pytest.fail("a process was started"))
    reference = [] if "--workers" in argv else ["--cpu-reference", "torch"]
    assert cli_main(["verify", *reference, *argv]) == 2
    assert "not both" in capsys.readouterr().err
