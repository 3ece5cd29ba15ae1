"""`lmbench run`: isolation, failure records, determinism, the record itself."""
from __future__ import annotations

import json
import math
import stat
import sys
import threading

import pytest

from lmbench import env

from lmbench.run import runner
from lmbench.runspec import run_spec
from lmbench.cli import main as cli_main
from lmbench.config import ConfigError, make_config

TINY_RUN = ["run", "--backend", "torch", "--preset", "tiny", "--steps", "12", "--warmup", "2",
            "--eval", "valid", "--eval-batches", "3", "--quiet"]


def wrapper(tmp_path, body: str) -> str:
    """A stand-in for the worker's python that misbehaves in a given way."""
    path = tmp_path / "python"
    path.write_text(f"#!{sys.executable}\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(path)


def tiny_spec(**kw):
    return run_spec(make_config("tiny"), "torch", steps=5, warmup=1, eval="none", **kw)


def test_worker_crash_is_a_failed_record(tmp_path):
    python = wrapper(tmp_path, "import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)")
    record = runner.run_isolated(tiny_spec(), python=python)
    assert record["status"] == "failed" and record["error_kind"] == "crash"
    assert "SIGSEGV" in record["error"]


def test_worker_hang_is_killed_at_the_timeout(tmp_path):
    python = wrapper(tmp_path, "import time\ntime.sleep(600)")
    record = runner.run_isolated(tiny_spec(), timeout=2, python=python)
    assert record["status"] == "failed" and record["error_kind"] == "timeout"
    assert "timed out after 2 s" in record["error"]


def test_missing_framework_is_a_failed_record(tmp_path):
    # the framework import fails exactly as it does where torch is not installed
    python = wrapper(tmp_path, "import sys, runpy\nsys.modules['torch'] = None\n"
                               "sys.argv = ['worker'] + sys.argv[3:]  # drop '-m lmbench.run.worker'\n"
                               "runpy.run_module('lmbench.run.worker', run_name='__main__')")
    record = runner.run_isolated(tiny_spec(), python=python)
    assert record["status"] == "failed" and record["error_kind"] == "unavailable"
    assert "backend 'torch' cannot be imported" in record["error"]
    assert "pip install" in record["error"]


@pytest.mark.parametrize("kw,needle", [
    (dict(layout="sideways"), "invalid layout='sideways' for backend 'torch': allowed: native, packed, padded, padded-gather"),
    (dict(device="tpu"), "invalid device='tpu'"),
    (dict(steps=0), "invalid steps=0"),
    (dict(eval="train"), "invalid eval='train'"),
])
def test_bad_run_arguments(kw, needle):
    args = dict(steps=5) | kw
    with pytest.raises(ConfigError) as e:
        run_spec(make_config("tiny"), "torch", **args)
    assert needle in str(e.value)


@pytest.mark.parametrize("argv,needle", [
    (["--hidden", "0"], "invalid hidden=0: must be a positive integer"),
    (["--dropout", "1.5"], "invalid dropout=1.5: must be in [0, 1)"),
    (["--mode", "words"], "argument --mode: invalid choice: 'words' (choose from 'sentence', 'stream')"),
    (["--batching", "sorted"], "argument --batching: invalid choice: 'sorted'"),
    (["--backend", "nosuchframework"], "unknown backend 'nosuchframework'"),
])
def test_cli_rejects_bad_values_before_any_work(argv, needle, capsys):
    base = ["run", "--backend", "torch", "--preset", "tiny"]
    if "--backend" in argv:
        base = ["run", "--preset", "tiny"]
    assert cli_main(base + argv) == 2
    assert needle in capsys.readouterr().err


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """Two identical real runs (same seed, CPU) appended to one results file."""
    out = tmp_path_factory.mktemp("runs") / "results.jsonl"
    codes = [cli_main(TINY_RUN + ["--out", str(out)]) for _ in range(2)]
    return codes, [json.loads(line) for line in out.read_text().splitlines()]


def test_same_seed_gives_identical_losses(two_runs):
    codes, (a, b) = two_runs
    assert codes == [0, 0] and a["status"] == b["status"] == "ok"
    assert len(a["metrics"]["train_losses"]) == 14
    assert a["metrics"]["train_losses"] == b["metrics"]["train_losses"]
    assert a["metrics"]["valid_ppl"] == b["metrics"]["valid_ppl"]
    assert a["run_id"] != b["run_id"]


def test_record_holds_what_the_issue_lists(two_runs, corpus):
    from lmbench.data.corpus import make_batches

    r = two_runs[1][0]
    for key in ("schema_version", "run_id", "utc_time", "git_commit", "git_dirty", "config", "backend",
                "layout", "device", "environment", "cpu_model", "threads", "python_version", "status",
                "error"):
        assert key in r, key
    assert r["config"]["preset"] == "tiny" and r["config"]["batch_size"] == 32
    assert r["environment"]["framework"] == "torch" and r["environment"]["framework_version"].startswith("2.")
    assert r["environment"]["cuda_version"] is None and r["device"] == "cpu"
    m = r["metrics"]
    for key in ("train_words_per_sec", "eval_words_per_sec", "valid_ppl", "peak_memory_bytes",
                "padding_fraction", "tokens", "train_seconds", "warmup_seconds", "flops_per_token",
                "achieved_flops_per_sec"):
        assert m[key] is not None and m[key] > 0, key
    st = m["step_time_ms"]
    assert len(st["samples"]) == 12 and st["p10"] <= st["median"] <= st["p90"]
    assert m["steps"] == 14 and m["warmup_steps"] == 2
    assert m["timed_tokens"] < m["tokens"]
    # every timed batch shape was run once before the window (tests/test_timing.py shows how)
    assert m["first_time_shapes_timed"] == 0 and m["cold_shapes"]["count"] > 0
    assert m["step_time_source"] == "host wall clock"
    assert 0.1 < m["padding_fraction"] < 0.9
    valid = make_batches(corpus["valid"], "sentence", 32, 10, "random", 1234, 0, shuffle=False)[:3]
    assert m["valid_tokens"] == sum(b.num_targets for b in valid)  # --eval-batches 3, said so
    # the machine kind and how busy it was around the timed window (lmbench.env)
    assert r["machine_key"] == env.machine_key() and r["cpu_facts"] == env.cpu_facts()
    busy = m["busy"]
    assert len(busy["load_average"]) == 2 and isinstance(busy["busy"], bool) and busy["why"]
    assert 0 <= busy["other_cpu_share"] <= 1 and 0 <= busy["steal_share"] <= 1


def test_diverging_loss_is_a_failed_record(tmp_path, capsys):
    out = tmp_path / "r.jsonl"
    code = cli_main(["run", "--backend", "torch", "--preset", "tiny", "--steps", "8", "--warmup", "0",
                     "--lr", "1e30", "--clip", "1e30", "--init-scale", "50", "--eval", "none",
                     "--quiet", "--out", str(out)])
    assert code == 1
    record = json.loads(out.read_text())
    assert record["status"] == "failed" and record["error_kind"] == "diverged"
    assert "training loss became" in record["error"] and "lower --lr" in record["error"]
    assert "FAILED" in capsys.readouterr().out


def test_append_is_atomic_under_concurrency(tmp_path):
    path = tmp_path / "r.jsonl"
    big = {"pad": "x" * 200_000}

    def writer(i):
        for j in range(10):
            runner.append_record(path, {"i": i, "j": j, **big})

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lines = path.read_text().splitlines()
    assert len(lines) == 40
    assert sorted((r["i"], r["j"]) for r in map(json.loads, lines)) == [(i, j) for i in range(4) for j in range(10)]


def test_divergence_rule_and_perplexity_overflow():
    from lmbench.run.worker import Diverged, _check, perplexity

    assert perplexity(2 * 9.21, 2) == pytest.approx(math.exp(9.21))
    assert perplexity(1e6, 10) == float("inf")  # exp(1e5) overflows: reported, not a crash
    assert math.isnan(perplexity(float("nan"), 10))
    limit = 3 * math.log(10_000)
    _check([9.3 * 20, limit * 20 - 1], [20, 20], 0, 1.0, 10_000)  # a sane and a borderline step
    for bad, shown in ((float("nan"), "nan"), (float("inf"), "inf"), (limit * 20 + 1, "nats per token")):
        with pytest.raises(Diverged, match=f"training loss became .*{shown}.* at step 7 .*lower --lr"):
            _check([9.3 * 20, bad], [20, 20], 6, 1.0, 10_000)
