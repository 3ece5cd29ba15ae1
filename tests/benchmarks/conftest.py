"""pytest-benchmark hot paths. The per-backend step benchmarks import a framework, so they
run only through `make benchmarks` (one pytest process per file), never inside `make test`."""
from __future__ import annotations

import importlib.metadata
import os

collect_ignore_glob = [] if os.environ.get("LMBENCH_STEP_BENCHMARKS") else ["test_step_*.py"]


def pytest_benchmark_update_machine_info(config, machine_info):
    versions = {}
    for dist in ("torch", "tensorflow-cpu", "tensorflow", "keras", "paddlepaddle", "numpy"):
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            pass
    machine_info["frameworks"] = versions
