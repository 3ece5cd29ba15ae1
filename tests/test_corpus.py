"""Vocabulary, tokenization and batches on the real PTB."""
from __future__ import annotations

import numpy as np
import pytest

from lmbench.config import ConfigError
from lmbench.data.corpus import (PAD_ID, SPLITS, TOKENS_CACHE, Batch, CorpusError, Vocab, load_corpus, make_batches,
                                 padding_fraction, tokenize)

TARGETS = {"train": 929_589, "valid": 73_760, "test": 82_430}
SENTENCES = {"train": 42_068, "valid": 3_370, "test": 3_761}


def test_vocabulary(corpus):
    v = corpus.vocab
    assert len(v) == 10_000
    assert v.words[:3] == ["the", "<unk>", "<eos>"]  # by descending count
    assert PAD_ID == 10_000 and PAD_ID not in v.index.values()


@pytest.mark.parametrize("split", ["train", "valid", "test"])
def test_split_counts(corpus, split):
    s = corpus[split]
    assert s.num_targets == TARGETS[split]
    assert s.num_sentences == SENTENCES[split]


@pytest.mark.parametrize("split", ["train", "valid", "test"])
@pytest.mark.parametrize("mode,batching", [("sentence", "random"), ("sentence", "bucketed"),
                                           ("stream", "random")])
def test_every_target_counted_once(corpus, split, mode, batching):
    batches = make_batches(corpus[split], mode, 20, 20, batching, seed=1, epoch=0)
    assert sum(b.num_targets for b in batches) == TARGETS[split]
    assert all(b.lengths.min() >= 1 for b in batches)
    # the multiset of targets equals the split's tokens (after the leading <eos>)
    flat = np.concatenate([b.flat_targets for b in batches])
    assert np.array_equal(np.bincount(flat, minlength=10_000),
                          np.bincount(corpus[split].stream[1:], minlength=10_000))


def test_sentence_batches_shape_and_views(corpus):
    s = corpus["valid"]
    batches = make_batches(s, "sentence", 20, batching="random", seed=3)
    eos = corpus.vocab.eos_id
    for b in batches[:50]:
        assert b.inputs.shape == b.targets.shape == (len(b.lengths), b.lengths.max())
        assert np.all(b.inputs[:, 0] == eos)  # every sentence starts from <eos>
        assert np.all(b.targets[np.arange(len(b.lengths)), b.lengths - 1] == eos)
        assert np.all(b.targets[~b.mask] == PAD_ID) and np.all(b.targets[b.mask] < PAD_ID)
        # LoD view: concatenated real tokens + offsets, consistent with the padded view
        assert list(np.diff(b.offsets)) == list(b.lengths)
        for row in range(len(b.lengths)):
            lo, hi = b.offsets[row], b.offsets[row + 1]
            assert np.array_equal(b.flat_inputs[lo:hi], b.inputs[row, :b.lengths[row]])
            assert np.array_equal(b.flat_targets[lo:hi], b.targets[row, :b.lengths[row]])
        # input t+1 is target t within a sentence
        assert np.array_equal(b.inputs[:, 1:][b.mask[:, 1:]], b.targets[:, :-1][b.mask[:, 1:]])


@pytest.mark.parametrize("batching", ["random", "bucketed"])
def test_every_sentence_once_per_epoch_and_reshuffled(corpus, batching):
    from lmbench.data.corpus import sentence_order

    s = corpus["train"]
    e0 = sentence_order(s, 20, batching, seed=7, epoch=0)
    e1 = sentence_order(s, 20, batching, seed=7, epoch=1)
    for order in (e0, e1):
        ids = np.concatenate(order)
        assert len(ids) == s.num_sentences and len(np.unique(ids)) == s.num_sentences
    assert not np.array_equal(np.concatenate(e0), np.concatenate(e1))


def test_deterministic_for_a_seed(corpus):
    s = corpus["valid"]
    a = make_batches(s, "sentence", 20, batching="bucketed", seed=5, epoch=2)
    b = make_batches(s, "sentence", 20, batching="bucketed", seed=5, epoch=2)
    c = make_batches(s, "sentence", 20, batching="bucketed", seed=6, epoch=2)
    assert all(np.array_equal(x.inputs, y.inputs) for x, y in zip(a, b))
    assert not all(np.array_equal(x.inputs, y.inputs) for x, y in zip(a, c))


def test_bucketed_pads_far_less(corpus):
    s = corpus["train"]
    rand = padding_fraction(make_batches(s, "sentence", 20, batching="random", seed=1))
    buck = padding_fraction(make_batches(s, "sentence", 20, batching="bucketed", seed=1))
    assert rand > 0.3  # PTB sentence lengths vary a lot
    assert buck < 0.02 and buck < rand / 10


def test_stream_batches_follow_the_streams(corpus):
    s = corpus["valid"]
    batches = make_batches(s, "stream", 20, 20)
    assert all(b.carry_state for b in batches)
    assert all(b.inputs.shape == (20, 20) for b in batches[:-1])
    assert padding_fraction(batches[:-1]) == 0.0
    # row r of window w+1 continues row r of window w
    for a, b in zip(batches[:-2], batches[1:-1]):
        assert np.array_equal(a.targets[:, -1], b.inputs[:, 0])
    # rows are contiguous slices of the token stream
    row0 = np.concatenate([b.targets[0, :b.lengths[0]] for b in batches])
    assert np.array_equal(row0, s.stream[1:1 + len(row0)])


def test_only_batches_with_a_padded_position_have_padding(corpus):
    windows = make_batches(corpus["valid"], "stream", 20, 20)
    assert not any(b.has_padding for b in windows[:-1])
    sentences = make_batches(corpus["valid"], "sentence", 20, batching="random", seed=1)
    assert all(b.has_padding == (b.lengths.min() < b.inputs.shape[1]) for b in sentences)
    assert sum(b.has_padding for b in sentences) > len(sentences) / 2
    ids = np.arange(6).reshape(2, 3)
    assert not Batch(ids, ids, np.array([3, 3])).has_padding
    assert Batch(ids, ids, np.array([3, 2])).has_padding


@pytest.mark.parametrize("kwargs,needle", [
    (dict(mode="words"), "invalid mode='words': allowed: sentence, stream"),
    (dict(batching="sorted"), "invalid batching='sorted': allowed: random, bucketed"),
    (dict(batch_size=0), "invalid batch_size=0"),
    (dict(batch_size=-3), "invalid batch_size=-3"),
    (dict(num_steps=0), "invalid num_steps=0"),
])
def test_bad_batch_arguments(corpus, kwargs, needle):
    args = dict(mode="sentence", batch_size=20, num_steps=20, batching="random") | kwargs
    with pytest.raises(ConfigError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        make_batches(corpus["valid"], **args)


def test_unknown_word_is_named(corpus, tmp_path):
    bad = tmp_path / "ptb.valid.txt"
    bad.write_text(" the cat sat \n the zyzzyva ran \n")
    with pytest.raises(CorpusError, match=r"line 2 has the word 'zyzzyva'.*not in the training vocabulary"):
        tokenize(bad, corpus.vocab)


def test_wrong_training_file(tmp_path):
    (tmp_path / "ptb.train.txt").write_text(" a b c \n")
    with pytest.raises(CorpusError, match="vocabulary has 4 types, expected 10000"):
        Vocab.from_file(tmp_path / "ptb.train.txt")


@pytest.fixture
def ptb_copy(ptb_path, tmp_path):
    """The three verified PTB files in a directory of their own, no token cache yet."""
    import shutil

    for split in SPLITS:
        shutil.copy(ptb_path / f"ptb.{split}.txt", tmp_path)
    return tmp_path


def _same(a, b) -> bool:
    return a.vocab.words == b.vocab.words and all(
        np.array_equal(getattr(a[s], f), getattr(b[s], f)) for s in a.splits for f in ("stream", "starts", "lengths"))


def test_a_second_load_reads_the_tokens_the_first_one_kept(ptb_copy, corpus, monkeypatch):
    from lmbench.data import corpus as corpus_module

    first = load_corpus(ptb_copy)  # tokenized: there was no cache
    assert (ptb_copy / TOKENS_CACHE).is_file() and _same(first, corpus)
    monkeypatch.setattr(corpus_module, "tokenize", lambda *a: pytest.fail("tokenized again"))
    again = load_corpus(ptb_copy)
    assert _same(again, first) and again.vocab.eos_id == first.vocab.eos_id
    assert again["valid"].stream.dtype == np.int64 and again["train"].name == "train"
    assert list(load_corpus(ptb_copy, splits=("valid",)).splits) == ["valid"]


def test_a_changed_split_file_is_tokenized_again(ptb_copy):
    load_corpus(ptb_copy)
    valid = ptb_copy / "ptb.valid.txt"
    valid.write_text("".join(valid.read_text().splitlines(keepends=True)[:-1]))  # its last sentence gone
    assert load_corpus(ptb_copy)["valid"].num_sentences == SENTENCES["valid"] - 1


def test_a_corrupt_or_unwritable_token_cache_costs_only_the_tokenizing(ptb_copy, corpus):
    cache = ptb_copy / TOKENS_CACHE
    cache.write_bytes(b"PK\x03\x04 half a zip")  # a write cut short by a crash
    assert _same(load_corpus(ptb_copy), corpus)
    assert _same(load_corpus(ptb_copy), corpus) and cache.stat().st_size > 1_000_000  # written whole since
    cache.unlink()
    cache.mkdir()  # neither readable nor replaceable as a file, as in a read-only data directory
    assert _same(load_corpus(ptb_copy), corpus) and cache.is_dir()
