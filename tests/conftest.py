"""Shared fixtures: the real PTB (from $LMBENCH_PTB_MIRROR or the network), tokenized once."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from lmbench.data.corpus import load_corpus
from lmbench.data.download import download_ptb

REPO = Path(__file__).resolve().parent.parent


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
