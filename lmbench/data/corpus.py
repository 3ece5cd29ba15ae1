"""PTB text -> vocabulary -> framework-neutral numpy batches, shared by every backend.

Every backend consumes exactly these `Batch` objects, so all frameworks see the same
sentences in the same order. Each batch carries the padded view (`inputs`/`targets`
[B, T] + `lengths`) and the LoD view (`flat_inputs`/`flat_targets` of the concatenated
real tokens + `offsets`), so packed, padded and non-padded backends share one object.
"""
from __future__ import annotations

from ..errors import UserError

import hashlib
import io
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..config import BATCHINGS, MODES, VOCAB_SIZE, ConfigError

EOS = "<eos>"
# Padding in `targets` uses an id outside the 10,000 predicted classes, so a loss that
# forgets the mask fails loudly instead of training on padding. Padding in `inputs`
# holds <eos>'s id instead: any embedding can look it up, and `lengths` masks it out.
PAD_ID = VOCAB_SIZE


class CorpusError(UserError, ValueError):
    """Bad corpus input; the message names the file/value and what is allowed."""


class Vocab:
    """Training-file word types plus <eos>, ordered by descending count, ties by word."""

    def __init__(self, words: list[str]):
        self.words = list(words)
        self.index = {w: i for i, w in enumerate(self.words)}
        self.eos_id = self.index[EOS]

    def __len__(self) -> int:
        return len(self.words)

    @classmethod
    def from_file(cls, path: Path) -> "Vocab":
        text = Path(path).read_text(encoding="ascii")
        counts = Counter(text.split())
        counts[EOS] = text.count("\n")
        vocab = cls(sorted(counts, key=lambda w: (-counts[w], w)))
        if len(vocab) != VOCAB_SIZE:
            raise CorpusError(f"{path}: vocabulary has {len(vocab)} types, expected {VOCAB_SIZE} "
                              f"(9,999 words + <eos>); is this Mikolov's PTB training file?")
        return vocab


@dataclass
class Split:
    """One tokenized split: `stream` = [<eos>, line1 words, <eos>, line2 words, <eos>, ...].

    Sentence i spans targets stream[starts[i]+1 : starts[i]+1+lengths[i]] (its words and
    its <eos>) with inputs shifted one to the left (starting with the previous <eos>).
    """
    name: str
    stream: np.ndarray  # int64 [num_targets + 1]
    starts: np.ndarray  # int64 [num_sentences]
    lengths: np.ndarray  # int64 [num_sentences]: words + 1 (<eos>)

    @property
    def num_targets(self) -> int:
        return len(self.stream) - 1

    @property
    def num_sentences(self) -> int:
        return len(self.lengths)


def tokenize(path: Path, vocab: Vocab) -> Split:
    path = Path(path)
    lines = path.read_text(encoding="ascii").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    index = vocab.index
    ids = [vocab.eos_id]
    lengths = np.empty(len(lines), dtype=np.int64)
    for n, line in enumerate(lines):
        words = line.split()
        try:
            ids.extend([index[w] for w in words])
        except KeyError:
            unknown = next(w for w in words if w not in index)
            raise CorpusError(f"{path}: line {n + 1} has the word {unknown!r}, which is not in the "
                              f"training vocabulary; PTB splits must use the training file's 10,000 "
                              f"types (rare words as <unk>)") from None
        ids.append(vocab.eos_id)
        lengths[n] = len(words) + 1
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    return Split(path.stem.split(".")[-1], np.asarray(ids, dtype=np.int64), starts, lengths)


@dataclass
class Corpus:
    vocab: Vocab
    splits: dict[str, Split]

    def __getitem__(self, split: str) -> Split:
        return self.splits[split]


SPLITS = ("train", "valid", "test")
# Beside the text files: the vocabulary and every split as ids, keyed by the files' sha256,
# so that a run's start reads 8 MB of arrays instead of tokenizing 1M words (0.55 s of a
# tiny run's 5.5 s here). Rebuilt whenever a file's bytes or this format change.
TOKENS_CACHE = "tokens.npz"
_TOKENS_FORMAT = "1"


def load_corpus(ptb_path: Path, splits=SPLITS) -> Corpus:
    """The vocabulary (from the training file) and `splits`, tokenized. With all three
    files present, every split is tokenized once and kept in TOKENS_CACHE for the next
    call; a cache that is missing, stale, unreadable or cannot be written (a read-only
    directory) costs only the tokenizing."""
    ptb_path = Path(ptb_path)
    files = {s: ptb_path / f"ptb.{s}.txt" for s in SPLITS}
    if not all(f.is_file() for f in files.values()):
        vocab = Vocab.from_file(files["train"])
        return Corpus(vocab, {s: tokenize(files[s], vocab) for s in splits})
    key = _TOKENS_FORMAT + "".join(f" {s}:{hashlib.sha256(f.read_bytes()).hexdigest()}" for s, f in files.items())
    cache = ptb_path / TOKENS_CACHE
    corpus = _read_tokens(cache, key)
    if corpus is None:
        vocab = Vocab.from_file(files["train"])
        corpus = Corpus(vocab, {s: tokenize(f, vocab) for s, f in files.items()})
        _write_tokens(cache, key, corpus)
    return Corpus(corpus.vocab, {s: corpus[s] for s in splits})


def _read_tokens(path: Path, key: str) -> Corpus | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["key"]) != key:
                return None
            return Corpus(Vocab(z["vocab"].tolist()),
                          {s: Split(s, z[f"{s}.stream"], z[f"{s}.starts"], z[f"{s}.lengths"]) for s in SPLITS})
    except Exception:  # noqa: BLE001 -- missing, truncated, another format: tokenize instead
        return None


def _write_tokens(path: Path, key: str, corpus: Corpus) -> None:
    from ..files import write_atomic

    arrays = {"key": np.array(key), "vocab": np.array(corpus.vocab.words)}
    for s in SPLITS:
        arrays |= {f"{s}.stream": corpus[s].stream, f"{s}.starts": corpus[s].starts,
                   f"{s}.lengths": corpus[s].lengths}
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    try:
        write_atomic(path, buffer.getvalue())  # whole or not at all: two processes may race here
    except OSError:
        pass  # a read-only data directory: the next run tokenizes again


@dataclass
class Batch:
    inputs: np.ndarray  # int64 [B, T], padding = <eos> id
    targets: np.ndarray  # int64 [B, T], padding = PAD_ID
    lengths: np.ndarray  # int64 [B], every length >= 1
    carry_state: bool = False  # stream mode: start from the previous batch's final state
    # sequences the training objective averages over: the whole (global) batch's, also on one
    # data-parallel worker's shard of it (see `shard`); 0 = this batch's own
    loss_sequences: int = 0
    flat_inputs: np.ndarray = field(init=False)  # int64 [sum(lengths)]: LoD view
    flat_targets: np.ndarray = field(init=False)
    offsets: np.ndarray = field(init=False)  # int64 [B + 1]: sequence b is flat[offsets[b]:offsets[b+1]]

    def __post_init__(self):
        mask = self.mask
        self.flat_inputs = self.inputs[mask]
        self.flat_targets = self.targets[mask]
        self.offsets = np.concatenate([[0], np.cumsum(self.lengths)]).astype(np.int64)
        self.loss_sequences = self.loss_sequences or len(self.lengths)

    @property
    def mask(self) -> np.ndarray:
        return np.arange(self.inputs.shape[1])[None, :] < self.lengths[:, None]

    @property
    def num_targets(self) -> int:
        return int(self.offsets[-1])

    @property
    def batch_size(self) -> int:
        return len(self.lengths)

    @property
    def padded_positions(self) -> int:
        return self.inputs.size

    @property
    def has_padding(self) -> bool:
        """Whether any position is padding. A backend may run a batch without it (every
        stream window but perhaps the last) without the mask: the same function."""
        return self.num_targets < self.inputs.size


def _sentence_batch(split: Split, ids: np.ndarray) -> Batch:
    lengths = split.lengths[ids]
    steps = np.arange(lengths.max())
    mask = steps[None, :] < lengths[:, None]
    pos = np.minimum(split.starts[ids][:, None] + steps[None, :], len(split.stream) - 2)
    eos = split.stream[0]
    inputs = np.where(mask, split.stream[pos], eos)
    targets = np.where(mask, split.stream[pos + 1], PAD_ID)
    return Batch(inputs, targets, lengths)


def sentence_order(split: Split, batch_size: int, batching: str, seed: int, epoch: int,
                   shuffle: bool = True) -> list[np.ndarray]:
    """Sentence ids per batch. Every sentence exactly once; deterministic per (seed, epoch)."""
    rng = np.random.default_rng([seed, epoch])
    n = split.num_sentences
    if batching == "random":
        order = rng.permutation(n) if shuffle else np.arange(n)
        return [order[i:i + batch_size] for i in range(0, n, batch_size)]
    # bucketed: sort by length (random tie-break), cut, shuffle the batch order
    tie = rng.random(n) if shuffle else np.arange(n)
    order = np.lexsort((tie, split.lengths))
    chunks = [order[i:i + batch_size] for i in range(0, n, batch_size)]
    if shuffle:
        chunks = [chunks[i] for i in rng.permutation(len(chunks))]
    return chunks


def stream_batches(split: Split, batch_size: int, num_steps: int) -> list[Batch]:
    """Zaremba et al.'s layout: `batch_size` contiguous streams cut into windows of num_steps.

    Every target is kept: streams get q or q+1 targets (q = N // B) and the last window
    absorbs the remainder, so it may be shorter than num_steps (or one longer for the
    longer streams) -- the batch's `lengths` say so, and no length is ever 0.
    """
    n = split.num_targets
    q, rem = divmod(n, batch_size)
    if q == 0:
        raise CorpusError(f"split {split.name!r} has {n} targets, fewer than batch_size={batch_size}")
    row_len = np.full(batch_size, q, dtype=np.int64)
    row_len[:rem] += 1
    row_start = np.concatenate([[0], np.cumsum(row_len)[:-1]])
    windows = -(-q // num_steps)
    batches = []
    for w in range(windows):
        begin = w * num_steps
        last = w == windows - 1
        lengths = (row_len - begin) if last else np.full(batch_size, num_steps, dtype=np.int64)
        steps = np.arange(lengths.max())
        mask = steps[None, :] < lengths[:, None]
        pos = np.minimum(row_start[:, None] + begin + steps[None, :], n - 1)
        inputs = np.where(mask, split.stream[pos], split.stream[0])
        targets = np.where(mask, split.stream[pos + 1], PAD_ID)
        batches.append(Batch(inputs, targets, lengths.astype(np.int64), carry_state=True))
    return batches


def make_batches(split: Split, mode: str, batch_size: int, num_steps: int = 20,
                 batching: str = "random", seed: int = 0, epoch: int = 0,
                 shuffle: bool = True) -> list[Batch]:
    """All batches of one epoch over `split`, in the order every backend will see them."""
    if mode not in MODES:
        raise ConfigError(f"invalid mode={mode!r}: allowed: {', '.join(MODES)}")
    if batching not in BATCHINGS:
        raise ConfigError(f"invalid batching={batching!r}: allowed: {', '.join(BATCHINGS)}")
    if not isinstance(batch_size, (int, np.integer)) or batch_size <= 0:
        raise ConfigError(f"invalid batch_size={batch_size!r}: must be a positive integer")
    if not isinstance(num_steps, (int, np.integer)) or num_steps <= 0:
        raise ConfigError(f"invalid num_steps={num_steps!r}: must be a positive integer")
    if mode == "stream":
        return stream_batches(split, batch_size, num_steps)
    return [_sentence_batch(split, ids)
            for ids in sentence_order(split, batch_size, batching, seed, epoch, shuffle)]


def shard(batch: Batch, rank: int, workers: int) -> Batch:
    """Worker `rank`'s share of a global batch for data-parallel training.

        global batch (B=5, 2 workers)      rank 0: rows 0-2        rank 1: rows 3-4,
        row 0  a a a a a .                 a a a a a .             trimmed to its own
        row 1  b b b . . .        ->       b b b . . .             longest sequence:
        row 2  c c c c c c                 c c c c c c             d d d d
        row 3  d d d d . .                                         e e . .
        row 4  e e . . . .
    Contiguous rows, sizes as np.array_split (the first B mod N workers get one more), so a
    stream always goes to the same worker, which carries its state. Uneven shards stay exact:
    every shard keeps `loss_sequences` = B, and each worker's objective is its summed NLL
    over B (scaled for its engine's reduction, see lmbench.backend.Backend.join), so the
    reduced gradient is the global batch's. A batch with fewer rows than workers cannot be
    split (a worker would have nothing to run): `shard_batches` drops it.
    """
    rows = np.array_split(np.arange(batch.batch_size), workers)[rank]
    if len(rows) == 0:
        raise ValueError(f"a batch of {batch.batch_size} sequences cannot be split over {workers} workers")
    steps = int(batch.lengths[rows].max())
    return Batch(batch.inputs[rows, :steps], batch.targets[rows, :steps], batch.lengths[rows],
                 batch.carry_state, loss_sequences=batch.loss_sequences)


def shard_shapes(batch: Batch, workers: int) -> list[tuple[int, int]]:
    """The [B, T] shape of every worker's shard of `batch` (what `shard` would make, without
    copying a row): each worker can tell what every other one will run."""
    if workers == 1:
        return [tuple(batch.inputs.shape)]
    return [(len(rows), int(batch.lengths[rows].max()) if len(rows) else 0)
            for rows in np.array_split(np.arange(batch.batch_size), workers)]


def shard_batches(batches: list[Batch], rank: int, workers: int) -> list[Batch]:
    """Worker `rank`'s shards of `batches`, dropping the batches (in practice only an epoch's
    last, short one) with fewer sequences than workers; every worker drops the same ones."""
    if workers == 1:
        return list(batches)
    return [shard(b, rank, workers) for b in batches if b.batch_size >= workers]


def padding_fraction(batches: list[Batch]) -> float:
    """Pad positions / all positions of the padded view."""
    total = sum(b.padded_positions for b in batches)
    return 1.0 - sum(b.num_targets for b in batches) / total if total else 0.0
