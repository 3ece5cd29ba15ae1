"""PaddlePaddle: non-padded LoD-style input (flat real tokens + offsets), plus padded.

Layouts
- lod:    the batch arrives as its concatenated real tokens and offsets (the LoD view).
          Only real tokens are embedded; they are scattered by the offsets into a [B, T, H]
          buffer for paddle.nn.LSTM(sequence_length=lengths) -- which never reads past a
          sequence's length -- and the real positions are gathered back, so the decoder
          and the loss see only real tokens. Paddle 3 has no LoDTensor / dynamic_lstm; this
          is the same contract (no padded work outside the recurrence) in today's API.
- padded: the same model on the padded [B, T] batch; decoder and a masked loss on every
          position, the work a padded TensorFlow batch does.
paddle.nn.LSTM runs the fused `rnn` op (not a Python loop of LSTMCell) whenever its
parameters are the standard four per layer (`could_use_cudnn`; custom bias/weight attrs set
to False, or ROCm with sequence_length, fall back to the loop): cuDNN on GPU, on the CPU
the op's phi kernel (per layer one input GEMM, then per step a BLAS GEMM + LSTM unit).
The op drops out between layers itself; is_test (eval mode) keeps nothing for backward.
"""
from __future__ import annotations

import numpy as np
import paddle
import paddle.nn.functional as F
from paddle import nn

from lmbench.backend import Backend as BaseBackend, BackendUnavailable, StepTimer

LAYOUTS = ("lod", "padded")


class LSTMLM(nn.Layer):
    def __init__(self, vocab_size, hidden, layers, dropout):
        super().__init__()
        self.hidden = hidden
        self.embedding = nn.Embedding(vocab_size, hidden)
        self.drop = nn.Dropout(dropout)
        self.lstm = nn.LSTM(hidden, hidden, layers, direction="forward", time_major=False,
                            dropout=dropout)  # dropout between layers, inside the rnn op
        self.decoder = nn.Linear(hidden, vocab_size)

    def forward(self, batch, layout, state):
        """Summed NLL over real targets, the final (h, c), and a NaN guard for the report."""
        B, T, H = batch["B"], batch["T"], self.hidden
        lengths = batch["lengths"]
        if layout == "lod":
            # LoD (Fluid's dynamic_lstm): a batch is N real tokens + offsets, no padding. Paddle 3
            # keeps that contract around nn.LSTM: embed the N tokens, scatter them by offset into
            # [B, T, H] zeros the LSTM never reads past `lengths`, gather the N outputs back.
            emb = self.drop(self.embedding(batch["flat_inputs"]))  # [N, H]: real tokens only
            slots = batch["slots"]  # flat position of each real token in [B * T]
            padded = paddle.scatter(paddle.zeros([B * T, H], emb.dtype), slots, emb)
            out, state = self.lstm(padded.reshape([B, T, H]), state, sequence_length=lengths)
            hidden = paddle.gather(out.reshape([B * T, H]), slots)
            logits = self.decoder(self.drop(hidden))
            loss = F.cross_entropy(logits, batch["flat_targets"], reduction="sum")
        else:
            emb = self.drop(self.embedding(batch["inputs"]))
            out, state = self.lstm(emb, state, sequence_length=lengths)
            logits = self.decoder(self.drop(out.reshape([B * T, H])))
            mask = batch["mask"]
            gold = paddle.where(mask, batch["targets"], paddle.zeros_like(batch["targets"]))
            nll = F.cross_entropy(logits, gold, reduction="none").reshape([-1])
            loss = (nll * mask.astype(nll.dtype)).sum()
        # Paddle's CPU softmax (so cross_entropy) over 10,000 classes maps NaN logits to a
        # uniform distribution: a diverged model reports log(V) per token, never NaN. The
        # reported loss carries 0 * sum(logits) (one read, no backward) so NaN/inf show.
        return loss, state, 0.0 * logits.detach().sum()


class CudaEventTimer(StepTimer):
    # paddle.device.Event (Paddle 3) has record() and elapsed_time() in ms on the current
    # device; the older paddle.device.cuda.Event documents no elapsed_time.
    def start(self):
        self._starts.append(paddle.device.Event(enable_timing=True))
        self._starts[-1].record()

    def stop(self):
        self._stops.append(paddle.device.Event(enable_timing=True))
        self._stops[-1].record()

    def samples_ms(self):
        return [a.elapsed_time(b) for a, b in zip(self._starts, self._stops)]


class Backend(BaseBackend):
    name = "paddle"

    def __init__(self, cfg, layout, device, threads):
        super().__init__(cfg, layout, device, threads)
        if layout not in LAYOUTS:
            raise ValueError(f"paddle: invalid layout={layout!r}: allowed: {', '.join(LAYOUTS)}")
        if device == "cuda" and not self.cuda_available():
            raise BackendUnavailable("paddle: --device cuda, but this paddle build sees no CUDA device "
                                     "(install paddlepaddle-gpu)")
        # OMP_NUM_THREADS / MKL_NUM_THREADS are set before the import; Paddle has no public
        # thread setter, core.set_num_threads is what FLAGS_paddle_num_threads feeds at init
        # (MKL_Set_Num_Threads + omp_set_num_threads, or openblas_set_num_threads).
        paddle.base.core.set_num_threads(threads)
        paddle.set_device("gpu:0" if device == "cuda" else "cpu")
        self.model = LSTMLM(cfg.vocab_size, cfg.hidden, cfg.layers, cfg.dropout)
        self.optimizer = paddle.optimizer.SGD(learning_rate=cfg.lr, parameters=self.model.parameters(),
                                              grad_clip=nn.ClipGradByGlobalNorm(cfg.clip))
        self.state = None

    @classmethod
    def cuda_available(cls):
        return paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0

    # -- weights in the canonical layout (lmbench.weights) ------------------------------
    def _named(self):
        """canonical name -> (parameter, transposed?); paddle.nn.Linear stores [in, out]."""
        m = self.model
        out = {"embedding": (m.embedding.weight, False), "decoder.w": (m.decoder.weight, True),
               "decoder.b": (m.decoder.bias, False)}
        params = dict(m.lstm.named_parameters())
        for layer in range(self.cfg.layers):
            for ours, theirs in (("w_ih", "weight_ih"), ("w_hh", "weight_hh"), ("b_ih", "bias_ih"),
                                 ("b_hh", "bias_hh")):
                out[f"lstm{layer}.{ours}"] = (params[f"{theirs}_l{layer}"], False)
        return out

    def set_weights(self, weights):
        for name, (param, transposed) in self._named().items():
            w = weights[name].T if transposed else weights[name]
            param.set_value(np.ascontiguousarray(w, dtype=np.float32))
        self.model.lstm.flatten_parameters()  # cuDNN wants the weights in one block again

    def get_weights(self):
        return {name: (p.numpy().T if t else p.numpy()).copy() for name, (p, t) in self._named().items()}

    # -- steps --------------------------------------------------------------------------
    def reset_state(self):
        self.state = None

    def _tensors(self, batch):
        B, T = batch.inputs.shape
        out = {"B": B, "T": T, "lengths": paddle.to_tensor(batch.lengths.astype(np.int32))}
        if self.layout == "lod":
            rows = np.repeat(np.arange(B), batch.lengths)
            slots = rows * T + (np.arange(len(rows)) - batch.offsets[rows])
            out.update(flat_inputs=paddle.to_tensor(batch.flat_inputs),
                       flat_targets=paddle.to_tensor(batch.flat_targets), slots=paddle.to_tensor(slots))
        else:
            out.update(inputs=paddle.to_tensor(batch.inputs), targets=paddle.to_tensor(batch.targets.reshape(-1)),
                       mask=paddle.to_tensor(batch.mask.reshape(-1)))
        return out

    def _forward(self, batch, keep_state):
        state = self.state if batch.carry_state and self.state is not None \
            and self.state[0].shape[1] == batch.batch_size else None
        loss, new_state, guard = self.model(self._tensors(batch), self.layout, state)
        if keep_state:
            self.state = tuple(s.detach() for s in new_state) if batch.carry_state else None
        return loss, guard

    def train_step(self, batch, lr):
        self.model.train()
        loss, guard = self._forward(batch, keep_state=True)
        (loss / batch.batch_size).backward()  # summed over time, averaged over sequences
        self.optimizer.set_lr(lr)
        self.optimizer.step()
        self.optimizer.clear_grad()
        return loss.detach() + guard

    def eval_step(self, batch):
        self.model.eval()
        with paddle.no_grad():
            loss, guard = self._forward(batch, keep_state=True)
            return loss + guard

    def loss_and_grads(self, batch):
        # Train mode (the fused rnn op keeps what backward needs only when not is_test),
        # with dropout switched off for the call.
        self.model.train()
        saved = self.model.drop.p, self.model.lstm.dropout
        self.model.drop.p = self.model.lstm.dropout = 0.0
        self.optimizer.clear_grad()
        try:
            loss, guard = self._forward(batch, keep_state=False)
            objective = loss / batch.batch_size
            objective.backward()
        finally:
            self.model.drop.p, self.model.lstm.dropout = saved
        grads = {name: (p.grad.numpy().T if t else p.grad.numpy()).copy()
                 for name, (p, t) in self._named().items()}
        self.optimizer.clear_grad()
        return float(objective + guard), grads

    def to_floats(self, handles):
        return paddle.stack(handles).numpy().reshape(-1).tolist() if handles else []

    # -- device -------------------------------------------------------------------------
    def sync(self):
        if self.device == "cuda":
            paddle.device.synchronize()

    def step_timer(self):
        return CudaEventTimer() if self.device == "cuda" else StepTimer()

    def peak_memory_bytes(self):
        return paddle.device.cuda.max_memory_allocated() if self.device == "cuda" else None

    def environment(self):
        cuda = self.device == "cuda"
        if not self.model.lstm.could_use_cudnn:
            kernel = "paddle.nn.RNN loop of LSTMCell"
        else:
            kernel = "fused rnn op: cudnn" if cuda else "fused rnn op: phi CPU kernel (BLAS GEMM per step)"
        return {
            "framework": "paddle", "framework_version": paddle.__version__,
            "device_name": paddle.device.cuda.get_device_name() if cuda else "cpu",
            "cuda_version": paddle.version.cuda() if cuda else None,
            "cudnn_version": paddle.version.cudnn() if cuda else None,
            "cpu_math_threads": self.threads,
            "lstm_kernel": kernel,
        }
