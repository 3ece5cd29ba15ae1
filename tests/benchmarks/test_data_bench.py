"""Data path hot spots: tokenizing PTB (what a run pays once per data directory), reading
the kept tokens back (what every later run pays), and building one training epoch of batches."""
from __future__ import annotations

import pytest

from lmbench.data.corpus import SPLITS, Vocab, load_corpus, make_batches, tokenize


def test_tokenize_three_splits(benchmark, ptb_path):
    def tokenize_all():
        vocab = Vocab.from_file(ptb_path / "ptb.train.txt")
        return {s: tokenize(ptb_path / f"ptb.{s}.txt", vocab) for s in SPLITS}

    splits = benchmark(tokenize_all)
    assert splits["train"].num_targets == 929_589


def test_load_the_kept_tokens(benchmark, ptb_path):
    load_corpus(ptb_path)  # keeps them, if this data directory had none yet
    corpus = benchmark(load_corpus, ptb_path)
    assert corpus["train"].num_targets == 929_589


@pytest.mark.parametrize("batching", ["random", "bucketed"])
def test_build_one_training_epoch(benchmark, corpus, batching):
    batches = benchmark(make_batches, corpus["train"], "sentence", 20, 20, batching, 1, 0)
    assert sum(b.num_targets for b in batches) == 929_589
