"""The canonical, framework-independent weight layout, documented once.

| name                | shape        | meaning                                            |
|---------------------|--------------|----------------------------------------------------|
| embedding           | [V, E]       | row v is the embedding of token id v               |
| lstm{l}.w_ih        | [4H, in_l]   | input->gates; in_0 = E, in_l = H for l > 0          |
| lstm{l}.w_hh        | [4H, H]      | hidden->gates                                      |
| lstm{l}.b_ih        | [4H]         | input bias                                         |
| lstm{l}.b_hh        | [4H]         | hidden bias (frameworks with one bias use the sum) |
| decoder.w           | [V, H]       | output projection, logits = h @ decoder.w.T + b    |
| decoder.b           | [V]          |                                                    |

Gates are stacked in the order i, f, g, o (input, forget, cell candidate, output) along
the 4H axis -- PyTorch's, Paddle's and Keras 3's order. Keras stores kernels transposed
([in, 4H]) and one bias: import uses b_ih + b_hh, export puts the bias in b_ih and zeros
in b_hh, so comparisons of biases use the sum (see `comparable`).

Initialisation (Zaremba et al. 2014 / ptb_word_lm): every matrix uniform in
[-init_scale, init_scale], every bias 0 (forget gate included: no +1).
"""
from __future__ import annotations

import numpy as np

from .config import Config


def shapes(cfg: Config) -> dict[str, tuple[int, ...]]:
    V, H = cfg.vocab_size, cfg.hidden
    out = {"embedding": (V, H)}
    for layer in range(cfg.layers):
        out[f"lstm{layer}.w_ih"] = (4 * H, H)  # E == H in every preset
        out[f"lstm{layer}.w_hh"] = (4 * H, H)
        out[f"lstm{layer}.b_ih"] = (4 * H,)
        out[f"lstm{layer}.b_hh"] = (4 * H,)
    out["decoder.w"] = (V, H)
    out["decoder.b"] = (V,)
    return out


def init_weights(cfg: Config, seed: int | None = None) -> dict[str, np.ndarray]:
    """The initial weights every backend imports: drawn once, in numpy, from the seed."""
    rng = np.random.default_rng(cfg.seed if seed is None else seed)
    out = {}
    for name, shape in shapes(cfg).items():
        if len(shape) == 1:
            out[name] = np.zeros(shape, dtype=np.float32)
        else:
            out[name] = rng.uniform(-cfg.init_scale, cfg.init_scale, size=shape).astype(np.float32)
    return out


def num_params(cfg: Config) -> int:
    """Parameter count of the model as frameworks count it (two LSTM biases per layer)."""
    return int(sum(np.prod(s) for s in shapes(cfg).values()))


def check(cfg: Config, weights: dict[str, np.ndarray]) -> None:
    """Raise ValueError unless `weights` has exactly the canonical names, shapes and float32."""
    expected = shapes(cfg)
    if set(weights) != set(expected):
        raise ValueError(f"weights differ from the canonical layout: missing "
                         f"{sorted(set(expected) - set(weights))}, unexpected {sorted(set(weights) - set(expected))}")
    for name, shape in expected.items():
        w = weights[name]
        if tuple(w.shape) != shape or w.dtype != np.float32:
            raise ValueError(f"{name}: expected float32 {shape}, got {w.dtype} {tuple(w.shape)}")


def comparable(weights: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """What two backends must agree on: the two LSTM biases enter only as their sum."""
    out = {}
    for name, w in weights.items():
        if name.endswith(".b_hh"):
            continue
        if name.endswith(".b_ih"):
            out[name.replace(".b_ih", ".bias")] = w + weights[name.replace(".b_ih", ".b_hh")]
        else:
            out[name] = w
    return out


def flops_per_token(cfg: Config) -> int:
    """Analytic training FLOPs per target token (multiply-add = 2 FLOPs).

    Per token, LSTM layer l does 2*4H*(in_l + H) forward, the decoder 2*H*V; the backward
    pass costs about twice the forward, hence x3. The embedding (a lookup) and element-wise
    gate math are excluded.
    """
    H, V = cfg.hidden, cfg.vocab_size
    lstm = sum(2 * 4 * H * (H + H) for _ in range(cfg.layers))
    return 3 * (lstm + 2 * H * V)
