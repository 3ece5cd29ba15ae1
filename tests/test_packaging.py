"""A non-editable `pip install .` carries everything `lmbench bench` needs: the suites and
the backends, found through the installed package, not through the source tree."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# Run with -S (no site: the editable install's import hook stays out), the installed copy
# first on the path, then the venv's site-packages for numpy and friends.
_PROBE = r"""
import json, sys
sys.path[:0] = sys.argv[1:]
import lmbench, lmbench.run.suite as suite, lmbench.backend as backend
cells = suite.load_suite(suite.suite_path("default"))
print(json.dumps({"lmbench": lmbench.__file__, "suite": str(suite.suite_path("default")),
                  "cells": len(cells), "backends": backend.available_backends(),
                  "known": sorted(f.stem for f in suite.suites_dir().glob("*.toml"))}))
"""


@pytest.mark.slow
def test_wheel_install_has_the_suites_and_backends(tmp_path):
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path / "dist"),
                            str(REPO)], capture_output=True, text=True, timeout=600)
    if build.returncode != 0 and "No matching distribution" in build.stderr:
        pytest.skip(f"cannot fetch the build backend (setuptools) here: {build.stderr[-300:]}")
    assert build.returncode == 0, build.stderr[-2000:]
    wheel = next((tmp_path / "dist").glob("lmbench-*.whl"))
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as z:  # what `pip install --no-deps` would lay down
        z.extractall(site)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    probe = subprocess.run([sys.executable, "-S", "-c", _PROBE, str(site), sysconfig.get_paths()["purelib"],
                            sysconfig.get_paths()["platlib"]], capture_output=True, text=True, env=env,
                           cwd=tmp_path, timeout=120)
    assert probe.returncode == 0, probe.stderr[-2000:]
    got = json.loads(probe.stdout)
    assert got["lmbench"].startswith(str(site)) and got["suite"].startswith(str(site)), got
    assert {"default", "check", "gpu", "train"} <= set(got["known"]), got
    assert got["cells"] > 0
    assert {p.stem for p in (REPO / "backends").glob("*.py") if not p.stem.startswith("_")} <= set(got["backends"])


def _runtime_requirements() -> list[str]:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return project["dependencies"]


def test_every_declared_dependency_is_imported():
    """A runtime dependency nobody imports only slows the install (tabulate was one): each
    one's import name appears in an import statement of the harness or a backend."""
    import re

    sources = "\n".join(p.read_text() for p in [*REPO.glob("lmbench/**/*.py"), *REPO.glob("backends/*.py")])
    imported = set(re.findall(r"^\s*(?:import|from)\s+([A-Za-z_]\w*)", sources, re.M))
    names = {re.split(r"[<>=!~;\[ ]", req, maxsplit=1)[0].replace("-", "_") for req in _runtime_requirements()}
    assert names, "no dependencies read from pyproject.toml"
    assert sorted(names - imported) == []
