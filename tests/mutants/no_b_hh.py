"""Mutant (b): a backend with one LSTM bias that imports b_ih + b_hh into it (as Keras
does) but trains it as a plain parameter. The canonical model's two biases each get the
gradient g, so their sum moves by 2·lr·g per step; this one moves by lr·g (and leaves
the bias out of the clipping norm once). Every bias starts at 0, so the loss and the
gradients from the initial weights are right: only training shows the bug."""
from __future__ import annotations

import numpy as np

from lmbench.backends.torch import Backend as TorchBackend

LAYOUTS = ("packed",)


class Backend(TorchBackend):
    def __init__(self, cfg, layout, device, threads, **options):
        super().__init__(cfg, layout, device, threads, **options)
        hidden_biases = {id(getattr(self.model.lstm, f"bias_hh_l{l}")) for l in range(cfg.layers)}
        self.params = [p for p in self.params if id(p) not in hidden_biases]  # never clipped or stepped

    def set_weights(self, weights):
        one_bias = dict(weights)
        for l in range(self.cfg.layers):
            one_bias[f"lstm{l}.b_ih"] = weights[f"lstm{l}.b_ih"] + weights[f"lstm{l}.b_hh"]
            one_bias[f"lstm{l}.b_hh"] = np.zeros_like(weights[f"lstm{l}.b_hh"])
        super().set_weights(one_bias)

    def loss_and_grads(self, batch):
        self.model.zero_grad(set_to_none=True)  # _zero_grad no longer clears b_hh's gradient
        return super().loss_and_grads(batch)
