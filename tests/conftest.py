"""Shared fixtures: the real PTB (from $LMBENCH_PTB_MIRROR or the network), tokenized once."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from lmbench.corpus import load_corpus
from lmbench.download import download_ptb

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def ptb_path(tmp_path_factory) -> Path:
    """A verified PTB cache. Uses LMBENCH_DATA_DIR if set, else the repo's data/ dir."""
    data_dir = os.environ.get("LMBENCH_DATA_DIR") or REPO / "data"
    return download_ptb(data_dir, log=lambda m: None)


@pytest.fixture(scope="session")
def corpus(ptb_path):
    return load_corpus(ptb_path)
