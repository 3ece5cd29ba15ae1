"""Run configuration: the paper's presets plus a tiny one for tests, and validation.

Loss convention (Zaremba et al. 2014 and TensorFlow's ptb_word_lm): the training
loss is the NLL *summed over time steps and averaged over the batch's sequences*.
The presets' lr 1 / clip 5 only make sense on that scale; with a per-token mean the
same recipe would need lr x num_steps and clip / num_steps. In sentence mode the same
convention applies (summed over each sentence's real tokens, averaged over sentences).
Loss and perplexity are *reported* per target token.
"""
from __future__ import annotations

from .errors import UserError

import dataclasses
from dataclasses import dataclass

VOCAB_SIZE = 10_000  # 9,999 training words + <eos>: the output layer's classes

MODES = ("sentence", "stream")
BATCHINGS = ("random", "bucketed")

# fields: hidden (=embedding size), layers, num_steps, batch_size, epochs, dropout,
# init_scale, lr, decay_after, lr_decay, clip
PRESETS: dict[str, dict] = {
    "tiny": dict(hidden=32, layers=2, num_steps=10, batch_size=32, epochs=1, dropout=0.0,
                 init_scale=0.1, lr=1.0, decay_after=1, lr_decay=2.0, clip=5.0),
    "small": dict(hidden=200, layers=2, num_steps=20, batch_size=20, epochs=13, dropout=0.0,
                  init_scale=0.1, lr=1.0, decay_after=4, lr_decay=2.0, clip=5.0),
    "medium": dict(hidden=650, layers=2, num_steps=35, batch_size=20, epochs=39, dropout=0.5,
                   init_scale=0.05, lr=1.0, decay_after=6, lr_decay=1.2, clip=5.0),
    "large": dict(hidden=1500, layers=2, num_steps=35, batch_size=20, epochs=55, dropout=0.65,
                  init_scale=0.04, lr=1.0, decay_after=14, lr_decay=1.15, clip=10.0),
}
# Validation perplexity a run must reach to count as "trained" (time-to-quality).
TARGET_PPL = {"tiny": 1000.0, "small": 125.0, "medium": 90.0, "large": 86.0}


class ConfigError(UserError, ValueError):
    """A configuration value is invalid; the message names the field and what is allowed."""


@dataclass(frozen=True)
class Config:
    preset: str
    hidden: int
    layers: int
    num_steps: int
    batch_size: int
    epochs: int
    dropout: float
    init_scale: float
    lr: float
    decay_after: int
    lr_decay: float
    clip: float
    mode: str = "sentence"
    batching: str = "random"
    seed: int = 1234
    vocab_size: int = VOCAB_SIZE

    def __post_init__(self):
        def bad(field, value, allowed):
            raise ConfigError(f"invalid {field}={value!r}: {allowed}")

        for f in ("hidden", "layers", "num_steps", "batch_size", "epochs", "decay_after"):
            v = getattr(self, f)
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                bad(f, v, "must be a positive integer")
        def number(v) -> bool:  # true/false in a suite file are not numbers
            return isinstance(v, (int, float)) and not isinstance(v, bool)

        for f in ("init_scale", "lr", "clip"):
            v = getattr(self, f)
            if not number(v) or not v > 0 or v != v or v == float("inf"):
                bad(f, v, "must be a positive finite number")
        if not number(self.lr_decay) or not self.lr_decay >= 1.0 or self.lr_decay == float("inf"):
            bad("lr_decay", self.lr_decay, "must be >= 1 (the lr is divided by it)")
        if not number(self.dropout) or not 0.0 <= self.dropout < 1.0:
            bad("dropout", self.dropout, "must be in [0, 1)")
        if self.mode not in MODES:
            bad("mode", self.mode, f"allowed: {', '.join(MODES)}")
        if self.batching not in BATCHINGS:
            bad("batching", self.batching, f"allowed: {', '.join(BATCHINGS)}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            bad("seed", self.seed, "must be a non-negative integer")

    def lr_at(self, epoch: int) -> float:
        """Learning rate for 0-based `epoch`: divided by lr_decay each epoch after decay_after."""
        return self.lr / self.lr_decay ** max(0, epoch + 1 - self.decay_after)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


FIELDS = tuple(f.name for f in dataclasses.fields(Config))


def make_config(preset: str = "small", **overrides) -> Config:
    """A preset with `overrides` applied (None values are ignored)."""
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}: allowed: {', '.join(PRESETS)}")
    unknown = set(overrides) - set(FIELDS)
    if unknown:
        raise ConfigError(f"unknown config field(s) {', '.join(sorted(unknown))}: allowed: {', '.join(FIELDS)}")
    values = dict(PRESETS[preset], preset=preset)
    values.update({k: v for k, v in overrides.items() if v is not None})
    return Config(**values)
