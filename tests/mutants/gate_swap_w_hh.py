"""Mutant (a): the f and g gate blocks of W_hh swapped on import and export -- the kind of
slip a hand-written weight conversion makes (TF's legacy cell stores i, g, f, o). The
round trip is exact, so only the function computed is wrong: at initialisation the
recurrent gradients are ~1e-4 (tiny) to ~1e-5 (small) of the global norm."""
from __future__ import annotations

import numpy as np

from lmbench.backends.torch import Backend as TorchBackend

LAYOUTS = ("packed",)


def _swap_f_g(w: np.ndarray) -> np.ndarray:
    """Rows [H:2H] (f) and [2H:3H] (g) exchanged; its own inverse."""
    h = w.shape[0] // 4
    return np.concatenate([w[:h], w[2 * h:3 * h], w[h:2 * h], w[3 * h:]])


def _convert(tensors: dict) -> dict:
    return {k: _swap_f_g(v) if k.endswith(".w_hh") else v for k, v in tensors.items()}


class Backend(TorchBackend):
    def set_weights(self, weights):
        super().set_weights(_convert(weights))

    def get_weights(self):
        return _convert(super().get_weights())

    def loss_and_grads(self, batch):
        loss, grads = super().loss_and_grads(batch)
        return loss, _convert(grads)
