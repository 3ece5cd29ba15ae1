"""Data path hot spots: tokenizing PTB and building one training epoch of batches."""
from __future__ import annotations

import pytest

from lmbench.data.corpus import load_corpus, make_batches


def test_tokenize_three_splits(benchmark, ptb_path):
    corpus = benchmark(load_corpus, ptb_path)
    assert corpus["train"].num_targets == 929_589


@pytest.mark.parametrize("batching", ["random", "bucketed"])
def test_build_one_training_epoch(benchmark, corpus, batching):
    batches = benchmark(make_batches, corpus["train"], "sentence", 20, 20, batching, 1, 0)
    assert sum(b.num_targets for b in batches) == 929_589
