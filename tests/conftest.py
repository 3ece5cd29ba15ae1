"""Shared fixtures: the real PTB (from $LMBENCH_PTB_MIRROR or the network), tokenized once."""
from __future__ import annotations

import importlib.abc
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lmbench.data.corpus import load_corpus
from lmbench.data.download import download_ptb

REPO = Path(__file__).resolve().parent.parent


def _frameworks() -> set[str]:
    """What the backend modules import at their top beyond the standard library, numpy and
    lmbench: the frameworks (read from source, so a new backend's framework is in the set)."""
    import ast

    names = set()
    for path in (REPO / "backends").glob("*.py"):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"numpy", "lmbench", "__future__"}


FRAMEWORKS = _frameworks()
FAST_LANE = "not in the fast lane (`make test-fast`): it starts a framework; `make test` runs it"


def pytest_addoption(parser):
    parser.addoption("--fast", action="store_true",
                     help="the inner loop: skip every test the moment it starts a Python child process or "
                          "imports a framework (make test-fast); CI and make test run everything")


class _NoFramework(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in FRAMEWORKS:
            pytest.skip(FAST_LANE, allow_module_level=True)
        return None


def _own_tmpdir_per_xdist_worker() -> None:
    """Under pytest-xdist (make test), each worker process gets a TMPDIR of its own: what
    lmbench keeps there across processes (the another-lmbench-is-timing announcements, run
    and ab temp dirs swept when their owner died) is then this worker's alone, so two tests
    running side by side never see each other's runs as "another lmbench"."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if not worker:
        return
    import tempfile

    base = Path(tempfile.gettempdir()) / f"lmbench-tests-{os.environ.get('PYTEST_XDIST_TESTRUNUID', 'run')}" / worker
    base.mkdir(parents=True, exist_ok=True)
    os.environ["TMPDIR"] = str(base)  # children inherit it
    tempfile.tempdir = None  # recomputed from TMPDIR on next use


def _test_session_environment() -> None:
    """What every framework process of one `make test` inherits (the xdist workers inherit it
    from the controller, whose pytest_configure runs before it starts them); a variable the
    user set is left as it is.

    OMP_WAIT_POLICY=PASSIVE: two xdist workers, and fixtures that start several framework
    processes at once, put more threads than cores on the machine; OpenMP's default spins a
    waiting thread for a while before it sleeps, and oversubscribed spinning burns the cores
    the others need. Measured here (2 cores, three 2-thread torch runs of test_training's at
    once): 50 s and 41 s of CPU each by default, 126 s / 118 s with ACTIVE, 12 s / 6.7 s with
    PASSIVE. lmbench's runs leave the policy to the framework: this is the tests' only.

    One compilation cache per session for every backend that declares COMPILE_CACHE_ENV: a
    program one test's process compiled is loaded, not compiled again, by the next (the tiny
    preset's shapes recur across files; `lmbench verify --preset tiny` of such a backend
    took 24 s cold, 6 s warm). The executables are the compiler's own, so what the tests
    compute is unchanged, and no test asserts a compile time. Removed when the session ends,
    as is the session's probe memo (tests/session_support.py)."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        return
    import tempfile

    from lmbench.backend import available_backends, compile_cache_env

    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ["LMBENCH_TESTS_PROBE_MEMO"] = tempfile.mkdtemp(prefix="lmbench-tests-probes-")
    cache = tempfile.mkdtemp(prefix="lmbench-tests-compile-cache-")
    os.environ["LMBENCH_TESTS_COMPILE_CACHE"] = cache
    for name in available_backends():
        for var, value in compile_cache_env(name, cache).items():
            os.environ.setdefault(var, value)


def pytest_unconfigure(config):
    import shutil
    import tempfile

    if os.environ.get("PYTEST_XDIST_WORKER"):
        shutil.rmtree(tempfile.gettempdir(), ignore_errors=True)  # this worker's own TMPDIR (above)
    else:  # the session's
        for var in ("LMBENCH_TESTS_COMPILE_CACHE", "LMBENCH_TESTS_PROBE_MEMO"):
            shutil.rmtree(os.environ.get(var, ""), ignore_errors=True)


def pytest_configure(config):
    """--fast: what makes a test slow here is a framework (an import costs 2-20 s, a run
    process more), so the fast lane skips a test where it starts a Python process or imports
    a framework, whatever the test is; everything else runs as in `make test`."""
    _own_tmpdir_per_xdist_worker()
    _test_session_environment()
    if hasattr(config.option, "loadscopereorder"):
        config.option.loadscopereorder = False  # xdist: files in session_support.LONGEST_FIRST's order, not by test count
    if os.environ.get("LMBENCH_TESTS_PROBE_MEMO"):
        from lmbench.run import probe
        from session_support import share_identical_probes

        probe._in_child = share_identical_probes(probe._in_child, Path(os.environ["LMBENCH_TESTS_PROBE_MEMO"]))
    if not config.getoption("--fast"):
        return
    if getattr(config.option, "numprocesses", None) and not os.environ.get("PYTEST_XDIST_WORKER"):
        return  # the xdist controller runs no test, and starts its workers with Popen
    sys.meta_path.insert(0, _NoFramework())
    real_init = subprocess.Popen.__init__

    def guarded(self, args, *a, **kw):
        argv = [str(x) for x in (args if isinstance(args, (list, tuple)) else [args])]
        if argv and ("python" in Path(argv[0]).name or argv[0] == sys.executable):
            pytest.skip(FAST_LANE)
        real_init(self, args, *a, **kw)

    subprocess.Popen.__init__ = guarded


def pytest_collection_modifyitems(config, items):
    from session_support import LONGEST_FIRST

    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest keep their order


@pytest.fixture(scope="session", autouse=True)
def results_stay_out_of_the_repository(tmp_path_factory):
    """`lmbench run` without --out (and `bench` without --results-dir) file records under
    $LMBENCH_RESULTS_DIR: in tests, a temp dir, never the repository's results/."""
    old = os.environ.get("LMBENCH_RESULTS_DIR")
    os.environ["LMBENCH_RESULTS_DIR"] = str(tmp_path_factory.mktemp("results"))
    yield
    if old is None:
        os.environ.pop("LMBENCH_RESULTS_DIR", None)
    else:
        os.environ["LMBENCH_RESULTS_DIR"] = old


@pytest.fixture(scope="session")
def ptb_path(tmp_path_factory) -> Path:
    """A verified PTB cache. Uses LMBENCH_DATA_DIR if set, else the repo's data/ dir."""
    data_dir = os.environ.get("LMBENCH_DATA_DIR") or REPO / "data"
    return download_ptb(data_dir, log=lambda m: None)


@pytest.fixture(scope="session")
def corpus(ptb_path):
    return load_corpus(ptb_path)
