"""What tests/conftest.py gives the test session: the order its files start in, and one
probe process for every test that plays an identical probe job."""
from __future__ import annotations

import fcntl
import hashlib
import os
import pickle
from pathlib import Path

# The files that take longest (seconds under `make test`, 2 workers, AMD EPYC Zen 2, 2026-12-06),
# run first, longest first; every other file after them, in collection order. The xdist
# workers take one file at a time (--dist loadfile), so a long file started last ran alone
# at the end (test_ab.py: 110 s, mostly its slow side's sleeps, 55 s of a 600 s run with
# one worker idle), and the short files fill the last minutes instead.
LONGEST_FIRST = ("test_distributed.py",  # 214
                 "test_tensorflow.py",  # 134
                 "test_ab.py",  # 110
                 "test_variants_backends.py",  # 110
                 "test_verify.py",  # 104
                 "test_faults.py",  # 88
                 "test_paddle.py",  # 70
                 "test_bench.py",  # 48
                 "test_variants_torch.py",  # 43
                 "test_jax.py",  # 42
                 "test_training.py",  # 35
                 "test_runner.py",  # 30
                 "test_faults_round3.py")  # 22

# what differs between the xdist workers' environments and reaches no probe's result
_WORKER_ONLY_ENV = {"PYTEST_CURRENT_TEST", "PYTEST_XDIST_WORKER", "TMPDIR", "LMBENCH_RESULTS_DIR"}


def share_identical_probes(run, memo: Path):
    """`run` (lmbench.run.probe._in_child: one probe process, job in, results out) with its
    results shared by every test of the session: a job identical to one already played --
    the same backend (and its source, where it is given by path), layouts, config, weights,
    batches, script, device, threads and options, under the same environment -- returns
    what that process returned instead of starting another. Per-framework tests play
    `lmbench verify`'s own case, and verify's tests play it again on the same backends: one
    process computes it once. A job in progress in another worker is waited for, not
    started twice (a lock per job); a failed job is not kept, so it fails for each test
    that plays it."""
    def shared(job: dict, timeout: float) -> dict:
        source = Path(job["backend"]).read_bytes() if job["backend"].endswith(".py") else b""
        env = sorted((k, v) for k, v in os.environ.items() if k not in _WORKER_ONLY_ENV)
        key = hashlib.sha256(pickle.dumps((job, source, env))).hexdigest()
        done = memo / f"{key}.pkl"
        with open(memo / f"{key}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
            if done.exists():
                return pickle.loads(done.read_bytes())
            out = run(job, timeout)
            partial = memo / f"{key}.partial"
            partial.write_bytes(pickle.dumps(out))
            partial.rename(done)
            return out

    return shared
