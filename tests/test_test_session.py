"""The test session itself: its probe memo (tests/session_support.py: an identical probe job runs
once, anything that can change its result runs it again, and a failure is never kept) and
the order its files start in."""
from __future__ import annotations

import time
from pathlib import Path
from concurrent.futures import ThreadPoolExecutor

import pytest

from lmbench.run.probe import ProbeError

from session_support import LONGEST_FIRST, share_identical_probes

JOB = dict(backend="torch", layouts=["packed"], config={"preset": "tiny"}, weights={}, batches=[],
           script=[("weights",)], device="cpu", threads=1, options={})


def counting_probe():
    calls = []

    def run(job, timeout):
        calls.append(job)
        time.sleep(0.2)  # a second caller arrives while the first one's process plays
        return {"packed": [len(calls)]}
    return run, calls


def test_an_identical_job_asked_for_twice_at_once_runs_once(tmp_path):
    run, calls = counting_probe()
    shared = share_identical_probes(run, tmp_path)
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: shared(dict(JOB), 60), range(2)))
    assert len(calls) == 1 and results == [{"packed": [1]}, {"packed": [1]}]


def test_another_script_environment_or_backend_source_runs_again(tmp_path, monkeypatch):
    run, calls = counting_probe()
    shared = share_identical_probes(run, tmp_path)
    shared(JOB, 60)
    shared({**JOB, "script": [("reset",)]}, 60)
    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    shared(JOB, 60)
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw9")  # which xdist worker asks changes nothing
    shared(JOB, 60)
    assert len(calls) == 3
    backend = tmp_path / "mutant.py"
    backend.write_text("# one bug\n")
    shared({**JOB, "backend": str(backend)}, 60)
    shared({**JOB, "backend": str(backend)}, 60)
    backend.write_text("# another bug\n")
    shared({**JOB, "backend": str(backend)}, 60)
    assert len(calls) == 5


def test_a_failed_job_fails_again_for_the_next_test_that_plays_it(tmp_path):
    def failing(job, timeout):
        raise ProbeError("torch ['packed'] probe failed (exit 1)")

    with pytest.raises(ProbeError):
        share_identical_probes(failing, tmp_path)(JOB, 60)
    run, calls = counting_probe()
    assert share_identical_probes(run, tmp_path)(JOB, 60) == {"packed": [1]} and len(calls) == 1


def test_every_file_named_to_start_first_exists():
    # a renamed file would silently fall back to collection order
    tests = Path(__file__).parent
    assert [name for name in LONGEST_FIRST if not (tests / name).exists()] == []
