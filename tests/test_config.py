"""Presets, overrides, validation and the learning-rate schedule."""
from __future__ import annotations

import pytest

from lmbench.config import ConfigError, make_config
from lmbench.weights import check, flops_per_token, init_weights, num_params, shapes


@pytest.mark.parametrize("preset,expected", [
    # Zaremba et al.: lr 1, divided by lr_decay every epoch after decay_after
    ("small", [1, 1, 1, 1, 0.5, 0.25, 0.125, 0.0625, 0.03125, 0.015625, 0.0078125, 0.00390625, 0.001953125]),
    ("medium", [1] * 6 + [1 / 1.2 ** k for k in range(1, 34)]),
    ("large", [1] * 14 + [1 / 1.15 ** k for k in range(1, 42)]),
])
def test_lr_schedule(preset, expected):
    cfg = make_config(preset)
    assert len(expected) == cfg.epochs
    assert [cfg.lr_at(e) for e in range(cfg.epochs)] == pytest.approx(expected, rel=1e-12)


def test_overrides_apply_and_none_is_ignored():
    cfg = make_config("medium", hidden=64, batch_size=7, lr=None)
    assert (cfg.hidden, cfg.batch_size, cfg.lr, cfg.layers) == (64, 7, 1.0, 2)


@pytest.mark.parametrize("kw,needle", [
    (dict(preset="huge"), "unknown preset 'huge': allowed: tiny, small, medium, large"),
    (dict(hiden=3), "unknown config field(s) hiden"),
    (dict(batch_size=0), "invalid batch_size=0: must be a positive integer"),
    (dict(num_steps=-1), "invalid num_steps=-1: must be a positive integer"),
    (dict(lr=0.0), "invalid lr=0.0: must be a positive finite number"),
    (dict(lr_decay=0.5), "invalid lr_decay=0.5: must be >= 1"),
    (dict(dropout=1.0), "invalid dropout=1.0: must be in [0, 1)"),
    (dict(mode="word"), "invalid mode='word': allowed: sentence, stream"),
])
def test_invalid_values_name_the_field(kw, needle):
    preset = kw.pop("preset", "small")
    with pytest.raises(ConfigError) as e:
        make_config(preset, **kw)
    assert needle in str(e.value)


def test_canonical_layout_and_init():
    cfg = make_config("tiny")
    w = init_weights(cfg)
    check(cfg, w)
    assert w["lstm0.w_ih"].shape == (4 * 32, 32) and w["decoder.w"].shape == (10_000, 32)
    assert all(not w[k].any() for k in w if k.endswith((".b_ih", ".b_hh", ".b")))  # biases 0
    assert max(abs(w["embedding"].min()), w["embedding"].max()) <= cfg.init_scale
    assert w["embedding"].std() == pytest.approx(cfg.init_scale / 3 ** 0.5, rel=0.01)  # uniform
    assert num_params(cfg) == sum(v.size for v in w.values())
    again, other = init_weights(cfg), init_weights(cfg, seed=cfg.seed + 1)
    assert all((again[k] == w[k]).all() for k in w)
    assert not (other["embedding"] == w["embedding"]).all()
    with pytest.raises(ValueError, match="lstm0.w_hh: expected float32"):
        check(cfg, {**w, "lstm0.w_hh": w["lstm0.w_hh"].astype("float64")})
    assert set(shapes(cfg)) == set(w)


def test_flops_per_token_formula():
    cfg = make_config("small")  # H=200, 2 layers, V=10k
    assert flops_per_token(cfg) == 3 * (2 * (2 * 4 * 200 * 400) + 2 * 200 * 10_000)
