"""Identical probe jobs in one test session run once (installed by tests/conftest.py)."""
from __future__ import annotations

import fcntl
import hashlib
import os
import pickle
from pathlib import Path

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
