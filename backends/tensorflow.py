"""TensorFlow 2 + Keras 3 on padded batches, plus the historical tf.compat.v1 dynamic_rnn.

Layouts
- padded:        Keras 3 LSTM layers over the whole [B, T] batch with its right-padded mask
                 (the dynamic_rnn contract in today's API); decoder and a masked loss on
                 every position.
- padded-gather: the same LSTM stack, then only real positions are gathered
                 (tf.boolean_mask) into the decoder and the loss.
- dynamic_rnn:   tf.compat.v1.nn.dynamic_rnn(sequence_length=...) over a MultiRNNCell of
                 legacy LSTMCells, as ptb_word_lm wrote it. Keras 3 has no legacy cells, so
                 this layout runs with tf-keras routed in by TF_USE_LEGACY_KERAS=1 (set by
                 the harness before TensorFlow is imported, see LAYOUT_ENV); this module
                 imports cleanly either way.
- unrolled:      padded's variables and maths, the LSTM cell written out and looped in
                 Python over the batch's T inside the tf.function, so the graph is statically
                 unrolled (as TF1 programs built it with static_rnn / a Python loop): no
                 while_loop, each layer's input projection one [B*T, in] matmul. T must be
                 known when tracing: one trace per distinct [B, T] (stream windows: one; the
                 harness warms each new sentence length untimed). For fixed-length stream
                 windows and bucketed batches; benchmarks/tensorflow_stream_ab.py measures it.
Every step is one tf.function traced once (input_signature with None for B and T, lr a
tensor argument; unrolled: once per shape); carried state goes in and out as [layers, B, H]
tensors. Returned tensors are not on any tape, so the carried state is detached between
windows. A batch without padding (every stream window) takes a second trace of the step
built without the mask: the same function (a mask of all ones selects every new state and
every position's loss), without its per-step selects.

Variants (DECLINED_VARIANTS: what is refused; Backend._variant_settings):
- --compile: every step is also jit_compile=True: XLA compiles the whole step, the LSTM's
  while_loop included (all three layouts; tf.boolean_mask becomes a dynamic dimension
  bounded by B * T). XLA wants static shapes: one executable per distinct [B, T], which
  compile_report() counts. cuDNN's LSTM op has no XLA kernel (Keras marks such layers
  supports_jit=False), so on GPU a compiled run takes the generic loop (unverified here).
- --precision bf16 / fp16: a Keras mixed policy on the Keras layouts (float32 variables,
  bf16/fp16 matmuls and LSTM), logits cast to float32 for softmax and loss, gradients and
  clipping in float32; fp16 (GPU only) with dynamic loss scaling by hand.

Keras and the legacy cell keep one bias per gate where the canonical model (and PyTorch,
Paddle) keep two, b_ih and b_hh, that enter only as their sum. SGD on two biases moves
that sum by 2 * lr * g and counts g twice in the global norm; the update here does the
same to the one bias, so training follows the same trajectory as the other frameworks.
"""
from __future__ import annotations

import functools
import os

import numpy as np
import tensorflow as tf
import keras

from lmbench.backend import Backend as BaseBackend, BackendUnavailable, StepTimer
from lmbench.env import bf16_hardware

LAYOUTS = ("padded", "padded-gather", "dynamic_rnn", "unrolled")
# does the LSTM run over padded positions (lmbench.backend)? On the CPU the Keras LSTM is a
# tf.while_loop over all T steps that applies the mask with tf.where. On a GPU, Keras hands a
# right-padded mask to cuDNN as sequence lengths and cuDNN skips the padded steps (read from
# keras/src/backend/tensorflow/rnn.py, not measured here). dynamic_rnn runs every row's cell
# for every step up to the batch's longest and copies state through (legacy cells: no cuDNN).
# --compile on a GPU takes the generic loop again (Backend.lstm_computes_padding).
# --compile: XLA compiles the whole train step (forward, backward, clipping, update)
COMPILE_SCOPE = "whole step"
COMPUTES_PADDING = {"padded": {"cpu": True, "cuda": False}, "padded-gather": {"cpu": True, "cuda": False},
                    "dynamic_rnn": {"cpu": True, "cuda": True},
                    # unrolled: the cell runs every step of every row, the mask holds the state
                    "unrolled": {"cpu": True, "cuda": True}}
LAYOUT_ENV = {"dynamic_rnn": {"TF_USE_LEGACY_KERAS": "1"}}
# refused on any machine, before TensorFlow is imported (lmbench.backend.declined)
DECLINED_VARIANTS = [
    ({"precision": ("bf16", "fp16"), "layout": "dynamic_rnn"},
     "tensorflow: --precision {precision} applies to the Keras layouts; dynamic_rnn reproduces "
     "ptb_word_lm's float32 tf.compat.v1 graph, whose legacy cells take no mixed-precision policy"),
    ({"precision": "fp16", "device": "cpu"},
     "tensorflow: --precision fp16 is a GPU precision: on the CPU TensorFlow has no float16 matmul kernels "
     "worth measuring (it converts to float32 and back); use bf16 on the CPU"),
]
# set before the import (lmbench.run.worker.set_thread_env); "{threads}" is the thread budget
THREAD_ENV = {"TF_NUM_INTRAOP_THREADS": "{threads}", "TF_NUM_INTEROP_THREADS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
# --workers N: TensorFlow has no launcher; lmbench starts the N processes and tells each its
# rank and a port per worker (lmbench.run.launch), from which join() writes TF_CONFIG. The
# engine is MultiWorkerMirroredStrategy's cross-replica all-reduce (RING over gRPC on the
# CPU, NCCL on GPUs), called inside strategy.run in the step: aggregate, then clip by the
# global norm, then update -- not a Keras optimizer, which clips each worker's gradient
# before the sum (keras/src/optimizers/base_optimizer.py, Keras 3.15). One machine only
# (no launcher_nodes): across machines TF_CONFIG would list every machine's host:port.
DATA_PARALLEL = {"launcher": None, "engine": "tf.distribute.MultiWorkerMirroredStrategy"}
# optional imports no layout uses, each tried under `except ImportError` when installed:
# `import tensorflow` imports JAX (tensorflow/lite/python/util.py, for its converter), Keras
# matplotlib.pyplot (keras/src/visualization/plot_image_gallery.py) and pandas
# (keras/src/trainers/data_adapters/array_slicing.py). Measured here: the import 5.3 -> 4.3 s
# and its RSS 609 -> 553 MiB without matplotlib and pandas, another 106 MiB without JAX
BLOCKED_IMPORTS = ("jax", "matplotlib", "pandas")


def _masked_nll_sum(logits, labels, mask):
    """Summed NLL over positions where `mask`; padding labels (PAD_ID) never reach the op."""
    labels = tf.where(mask, labels, tf.zeros_like(labels))
    nll = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    return tf.reduce_sum(tf.where(mask, nll, tf.zeros_like(nll)))


class KerasLM:
    """Embedding -> L x keras.layers.LSTM -> Dense, for the padded, padded-gather and unrolled
    layouts (unrolled: the same LSTM variables, run by _unrolled_lstm instead of the layer).

    LSTM settings and why (Keras 3.15 picks cuDNN at trace time in
    keras/src/backend/tensorflow/rnn.py: cudnn_ok() and a visible GPU, else the generic
    tf.while_loop; it never silently changes the maths):
    - activation tanh, recurrent_activation sigmoid, use_bias True, unroll False: the
      arguments cudnn_ok() requires (and the standard LSTM);
    - recurrent_dropout 0: any recurrent dropout sends the layer to the generic loop;
    - dropout 0 on the layer: Keras 3's `dropout=` keeps cuDNN but draws one mask per
      sequence for every step and only on the input -- not Zaremba's per-position dropout
      on all non-recurrent connections. That is applied by separate Dropout layers;
    - the mask is right-padded and no row is fully masked (every Batch length is >= 1):
      on GPU _assert_valid_mask() fails the step otherwise; cuDNN gets the lengths from it;
    - unit_forget_bias False: the forget-gate bias starts at the imported 0, not 1.
    `policy` is a Keras dtype policy: "float32", or "mixed_bfloat16" / "mixed_float16"
    (float32 variables, layers compute in the low precision); the logits are cast back to
    float32 so that softmax and loss are float32, and so is the carried state.
    """

    def __init__(self, cfg, gather: bool, use_cudnn: bool, policy: str = "float32", unrolled: bool = False):
        V, H, L = cfg.vocab_size, cfg.hidden, cfg.layers
        self.cfg, self.gather, self.unrolled = cfg, gather, unrolled
        self.embedding = keras.layers.Embedding(V, H, dtype=policy)
        # On GPU cuDNN is asked for outright: with "auto" an ineligible layer silently takes
        # the generic loop while the record would say cuDNN; True makes that an error that
        # names the reason. On the CPU there is no cuDNN: False, the generic loop.
        self.lstms = [keras.layers.LSTM(H, return_sequences=True, return_state=True,
                                        unit_forget_bias=False, use_cudnn=use_cudnn, dtype=policy)
                      for _ in range(L)]
        # The decoder's bias is added after the logits are cast to float32: under a mixed
        # policy Dense adds it in the low precision and sums its gradient over all B * T
        # tokens in it (bf16: 5.5e-2 off float32's at init, the other tensors 8e-3)
        self.decoder = keras.layers.Dense(V, use_bias=False, dtype=policy)
        self.decoder_bias = tf.Variable(tf.zeros([V]), name="decoder_bias")
        self.drops = ([keras.layers.Dropout(cfg.dropout, seed=cfg.seed + i, dtype=policy) for i in range(L + 1)]
                      if cfg.dropout > 0 else None)
        self.embedding.build((None, None))
        for lstm in self.lstms:
            lstm.build((None, None, H))
        self.decoder.build((None, H))
        layers = [self.embedding, *(lstm.cell for lstm in self.lstms), self.decoder]
        # the tf.Variables behind the Keras variables: taped and updated directly
        self.variables = [v.value for layer in layers for v in layer.trainable_weights] + [self.decoder_bias]
        self.copies = [1] + [1, 1, 2] * L + [1, 1]  # canonical tensors each variable stands for

    def _drop(self, i, x, training):
        return self.drops[i](x, training=True) if training and self.drops else x

    def _unrolled_lstm(self, lstm, x, mask, h, c):
        """keras.layers.LSTM's maths (z = x W + h U + b, gates i, f, g, o; under a mask a
        padded step keeps the state) in a Python loop over the static T."""
        cell, dtype = lstm.cell, lstm.compute_dtype
        kernel, recurrent, bias = (tf.cast(v.value, dtype) for v in (cell.kernel, cell.recurrent_kernel, cell.bias))
        B, T, n_in = tf.shape(x)[0], x.shape[1], x.shape[2]
        proj = tf.reshape(tf.matmul(tf.reshape(x, [-1, n_in]), kernel) + bias, [B, T, 4 * self.cfg.hidden])
        # unstack, not proj[:, t]: a strided slice's gradient is a zero-filled [B, T, 4H] per
        # step, summed over T; unstack's is one stack (benchmarks/tensorflow_stream_ab.py measures both)
        h, c, outs = tf.cast(h, dtype), tf.cast(c, dtype), []
        masks = None if mask is None else tf.unstack(mask[:, :, None], T, axis=1)
        for t, proj_t in enumerate(tf.unstack(proj, T, axis=1)):
            i, f, g, o = tf.split(proj_t + tf.matmul(h, recurrent), 4, axis=1)
            c_new = tf.sigmoid(f) * c + tf.sigmoid(i) * tf.tanh(g)
            h_new = tf.sigmoid(o) * tf.tanh(c_new)
            if mask is None:
                h, c = h_new, c_new
            else:
                real = masks[t]
                h, c = tf.where(real, h_new, h), tf.where(real, c_new, c)
            outs.append(h)
        return tf.stack(outs, 1), h, c

    def __call__(self, inputs, targets, lengths, h0, c0, training, masked=True):
        """`masked` False: the batch has no padding (the caller checked), so no mask."""
        mask = tf.sequence_mask(lengths, tf.shape(inputs)[1]) if masked else None
        x = self._drop(0, self.embedding(inputs), training)
        hs, cs = [], []
        for layer, lstm in enumerate(self.lstms):
            if self.unrolled:
                x, h, c = self._unrolled_lstm(lstm, x, mask, h0[layer], c0[layer])
            else:
                x, h, c = lstm(x, initial_state=[h0[layer], c0[layer]], mask=mask, training=training)
            hs.append(h)
            cs.append(c)
            if layer + 1 < len(self.lstms):
                x = self._drop(layer + 1, x, training)
        if mask is None:
            hidden, gold, real = tf.reshape(x, [-1, self.cfg.hidden]), tf.reshape(targets, [-1]), None
        elif self.gather:
            hidden, gold, real = tf.boolean_mask(x, mask), tf.boolean_mask(targets, mask), None
        else:
            hidden = tf.reshape(x, [-1, self.cfg.hidden])
            gold, real = tf.reshape(targets, [-1]), tf.reshape(mask, [-1])
        logits = tf.cast(self.decoder(self._drop(len(self.lstms), hidden, training)), tf.float32) + self.decoder_bias
        if real is None:
            loss = tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=gold, logits=logits))
        else:
            loss = _masked_nll_sum(logits, gold, real)
        return loss, tf.cast(tf.stack(hs), tf.float32), tf.cast(tf.stack(cs), tf.float32)

    # Keras: kernel = w_ih.T [in, 4H], recurrent_kernel = w_hh.T, one bias = b_ih + b_hh;
    # gate order i, f, c, o is the canonical one.
    def to_native(self, w):
        out = [w["embedding"]]
        for l in range(self.cfg.layers):
            out += [w[f"lstm{l}.w_ih"].T, w[f"lstm{l}.w_hh"].T, w[f"lstm{l}.b_ih"] + w[f"lstm{l}.b_hh"]]
        return out + [w["decoder.w"].T, w["decoder.b"]]

    def to_canonical(self, arrays, grads=False):
        """Weights (the bias exported as b_ih, b_hh = 0) or gradients (the one bias
        gradient reported for both b_ih and b_hh, since d/db_ih = d/db_hh)."""
        out = {"embedding": arrays[0], "decoder.w": arrays[-2].T, "decoder.b": arrays[-1]}
        for l in range(self.cfg.layers):
            kernel, recurrent, bias = arrays[1 + 3 * l: 4 + 3 * l]
            out.update({f"lstm{l}.w_ih": kernel.T, f"lstm{l}.w_hh": recurrent.T, f"lstm{l}.b_ih": bias,
                        f"lstm{l}.b_hh": bias if grads else np.zeros_like(bias)})
        return out


# The legacy LSTMCell's layout, documented once. One kernel [in + H, 4H] applied to
# concat([x, h]) (rows :in are w_ih.T, rows in: are w_hh.T), one bias [4H], and the gates
# split as i, j, f, o with j the cell candidate (= g): blocks 1 and 2 of the canonical
# i, f, g, o swap. The permutation is its own inverse. forget_bias=0 keeps the maths
# identical (the cell adds forget_bias to f at every step; the default is 1).
LEGACY_GATES = [0, 2, 1, 3]


def _legacy_order(x):
    """Swap gate blocks along axis 0 ([4H] or [4H, X]) between i,f,g,o and i,g,f,o."""
    return x.reshape(4, -1, *x.shape[1:])[LEGACY_GATES].reshape(x.shape)


class LegacyLM:
    """ptb_word_lm's model: embedding variable, MultiRNNCell of LSTMCells run by
    tf.compat.v1.nn.dynamic_rnn, softmax_w/softmax_b; dropout via DropoutWrapper on every
    cell's output (between layers and on the last output) plus on the embedding output."""

    def __init__(self, cfg):
        try:
            rnn_cell = tf.compat.v1.nn.rnn_cell
            make = lambda: rnn_cell.LSTMCell(cfg.hidden, forget_bias=0.0, state_is_tuple=True)  # noqa: E731
            self.cells = [make() for _ in range(cfg.layers)]
        except (AttributeError, ImportError) as e:
            raise BackendUnavailable(
                f"tensorflow layout 'dynamic_rnn' needs the legacy LSTMCell ({e}); install tf-keras "
                f"and set TF_USE_LEGACY_KERAS=1 before TensorFlow is imported (lmbench does this "
                f"for you in `lmbench run`)") from e
        V, H = cfg.vocab_size, cfg.hidden
        self.cfg = cfg
        self.cell = rnn_cell.MultiRNNCell(self.cells, state_is_tuple=True)
        self.train_cell = self.cell
        if cfg.dropout > 0:
            self.train_cell = rnn_cell.MultiRNNCell(
                [rnn_cell.DropoutWrapper(c, output_keep_prob=1 - cfg.dropout, seed=cfg.seed + i)
                 for i, c in enumerate(self.cells)],
                state_is_tuple=True)
        self.embedding = tf.Variable(tf.zeros([V, H]), name="embedding")
        self.softmax_w = tf.Variable(tf.zeros([H, V]), name="softmax_w")
        self.softmax_b = tf.Variable(tf.zeros([V]), name="softmax_b")
        self.cell(tf.zeros([1, H]), self.cell.zero_state(1, tf.float32))  # create the variables once, eagerly
        self.variables = [self.embedding]
        for c in self.cells:
            self.variables += [c._kernel, c._bias]  # noqa: SLF001 -- the cell exposes no public names
        self.variables += [self.softmax_w, self.softmax_b]
        self.copies = [1] + [1, 2] * cfg.layers + [1, 1]  # canonical tensors each variable stands for

    def __call__(self, inputs, targets, lengths, h0, c0, training, masked=True):
        rnn_cell = tf.compat.v1.nn.rnn_cell
        x = tf.nn.embedding_lookup(self.embedding, inputs)
        if training and self.cfg.dropout > 0:
            x = tf.nn.dropout(x, rate=self.cfg.dropout)
        state = tuple(rnn_cell.LSTMStateTuple(c0[l], h0[l]) for l in range(self.cfg.layers))
        # no padding: no sequence_length, as ptb_word_lm ran its fixed windows
        out, final = tf.compat.v1.nn.dynamic_rnn(self.train_cell if training else self.cell, x,
                                                 sequence_length=tf.cast(lengths, tf.int32) if masked else None,
                                                 initial_state=state, dtype=tf.float32)
        logits = tf.matmul(tf.reshape(out, [-1, self.cfg.hidden]), self.softmax_w) + self.softmax_b
        if masked:
            mask = tf.reshape(tf.sequence_mask(lengths, tf.shape(inputs)[1]), [-1])
            loss = _masked_nll_sum(logits, tf.reshape(targets, [-1]), mask)
        else:
            loss = tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.reshape(targets, [-1]),
                                                                                logits=logits))
        return loss, tf.stack([s.h for s in final]), tf.stack([s.c for s in final])

    def to_native(self, w):
        out = [w["embedding"]]
        for l in range(self.cfg.layers):
            kernel = np.concatenate([_legacy_order(w[f"lstm{l}.w_ih"]).T, _legacy_order(w[f"lstm{l}.w_hh"]).T])
            out += [kernel, _legacy_order(w[f"lstm{l}.b_ih"] + w[f"lstm{l}.b_hh"])]
        return out + [w["decoder.w"].T, w["decoder.b"]]

    def to_canonical(self, arrays, grads=False):
        out = {"embedding": arrays[0], "decoder.w": arrays[-2].T, "decoder.b": arrays[-1]}
        for l in range(self.cfg.layers):
            kernel, bias = arrays[1 + 2 * l: 3 + 2 * l]
            gates = _legacy_order(np.ascontiguousarray(kernel.T))  # [4H, in + H], canonical order
            n_in = kernel.shape[0] - self.cfg.hidden
            bias = _legacy_order(bias)
            out.update({f"lstm{l}.w_ih": gates[:, :n_in], f"lstm{l}.w_hh": gates[:, n_in:],
                        f"lstm{l}.b_ih": bias, f"lstm{l}.b_hh": bias if grads else np.zeros_like(bias)})
        return out


_STRATEGY: list = []  # the MultiWorkerMirroredStrategy join() created (one per process)


def _clip_scale(norm, clip):
    """min(1, clip / norm), the global-norm clipping factor. Not tf.clip_by_global_norm: it
    computes clip * min(1 / norm, 1 / clip), and 1 / clip flushes to 0 for clip > ~8.5e37,
    which would silently stop all updates. A non-finite norm gives NaN, so a diverged step
    shows in the loss instead of freezing the weights."""
    return tf.where(tf.math.is_finite(norm), clip / tf.maximum(norm, clip), float("nan"))


class NoStepTimer(StepTimer):
    """TF has no per-step device events in Python, and timing each step on the host would
    need a device sync per step -- a stall no training loop has. On GPU the throughput
    region is bounded by syncs only; per-step samples are not taken (the record says so)."""
    source = "none: TensorFlow has no device events; throughput from the synced region"

    def start(self):
        pass

    def stop(self):
        pass


class Backend(BaseBackend):
    name = "tensorflow"

    def __init__(self, cfg, layout, device, threads, **options):
        super().__init__(cfg, layout, device, threads, **options)
        if device == "cuda" and not self.cuda_available():
            raise BackendUnavailable("tensorflow: --device cuda, but tf.config.list_physical_devices('GPU') "
                                     "is empty (tensorflow-cpu, or no CUDA driver)")
        try:  # only possible before the runtime starts; the worker also set TF_NUM_*_THREADS
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(1)
        except RuntimeError:
            pass
        # true float32: TF's default runs float32 matmuls and cuDNN (the LSTM) in TF32 on
        # Ampere and newer; this global switch is what both consult
        tf.config.experimental.enable_tensor_float_32_execution(False)
        self.dev = "/GPU:0" if device == "cuda" else "/CPU:0"
        # with workers: the strategy join() created. The variables stay plain tf.Variables,
        # one copy per worker, given the same weights by set_weights and updated alike from
        # the all-reduced gradient (the strategy's all-reduce is the only cross-worker op)
        self._strategy = _STRATEGY[0] if self.workers > 1 else None
        self._skip_sync = False
        self.policy, self.use_cudnn = self._variant_settings()
        with tf.device(self.dev):
            self.model = LegacyLM(cfg) if layout == "dynamic_rnn" else KerasLM(cfg, layout == "padded-gather",
                                                                                  self.use_cudnn, self.policy,
                                                                                  unrolled=layout == "unrolled")
            # fp16 only (GPU): dynamic loss scaling by hand, as keras LossScaleOptimizer does
            # it (start 2**15, halve and skip the update on a non-finite gradient, double
            # after 2000 good steps); the update below is by hand, so the scaling is too
            if self.precision == "fp16":
                self.loss_scale = tf.Variable(2.0 ** 15, trainable=False)
                self.good_steps = tf.Variable(0, dtype=tf.int64, trainable=False)
        self._zeros = {}
        self._shapes = {}  # compiled step -> the distinct (input shape, padded) it ran (one XLA executable each)
        L, H = cfg.layers, cfg.hidden
        ids = tf.TensorSpec([None, None], tf.int64)
        sig = [ids, ids, tf.TensorSpec([None], tf.int64), tf.TensorSpec([L, None, H], tf.float32),
               tf.TensorSpec([L, None, H], tf.float32)]
        # autograph off: no Python control flow depends on a tensor value here (the
        # recurrences are explicit while_loops inside Keras / dynamic_rnn)
        # --compile: jit_compile=True makes each step one XLA cluster (one executable per
        # distinct input shape: the signature keeps B and T unknown, XLA needs them known).
        # unrolled: no signature, so each distinct [B, T] is traced with T known.
        # Each step twice, by whether the batch has padding: {True: masked, False: no mask}
        # (traced on first use: a run that never sees one kind never traces it).
        def compile_(fn, extra=()):
            return {padded: tf.function(functools.partial(fn, masked=padded), autograph=False,
                                        input_signature=None if layout == "unrolled" else sig + list(extra),
                                        jit_compile=self.compile or None) for padded in (True, False)}
        scalar = tf.TensorSpec([], tf.float32)
        self._train = compile_(self._train_fn, [scalar, scalar])
        if self._strategy is not None:  # the same step without the all-reduce, for the A/B
            self._train_local = compile_(lambda *a, masked: self._update(*a, all_reduce=False, masked=masked),
                                         [scalar, scalar])
        self._eval = compile_(self._eval_fn)
        self._grads = compile_(self._grads_fn)

    def _variant_settings(self):
        """(Keras dtype policy, use cuDNN) for --precision / --compile."""
        policy = {"fp32": "float32", "bf16": "mixed_bfloat16", "fp16": "mixed_float16"}[self.precision]
        # cuDNN's LSTM op has no XLA kernel (XLA_GPU_JIT: CudnnRNNV3) and no bfloat16 type
        # (CudnnRNN T: half, float, double): either one takes Keras's generic while_loop
        # (unrolled runs its own cell, never the layer's kernel)
        use_cudnn = (self.device == "cuda" and not self.compile and self.precision != "bf16"
                     and self.layout != "unrolled")
        return policy, use_cudnn

    @classmethod
    def cuda_available(cls):
        return bool(tf.config.list_physical_devices("GPU"))

    @classmethod
    def join(cls, workers, device):
        import json

        from lmbench.run.launch import PORTS_ENV, RANK_ENV

        rank, ports = int(os.environ[RANK_ENV]), os.environ[PORTS_ENV].split(",")
        os.environ["TF_CONFIG"] = json.dumps({"cluster": {"worker": [f"localhost:{p}" for p in ports]},
                                              "task": {"type": "worker", "index": rank}})
        if device == "cuda":  # one GPU per worker (unverified: no GPU here), else each worker mirrors over all
            gpus = tf.config.list_physical_devices("GPU")
            if rank >= len(gpus):
                raise BackendUnavailable(f"tensorflow: {workers} workers need one GPU each; this machine has "
                                         f"{len(gpus)}: use fewer --workers")
            tf.config.set_visible_devices(gpus[rank], "GPU")
        ring = tf.distribute.experimental.CommunicationImplementation
        # before any other TF op: the strategy starts the gRPC server and configures collectives
        _STRATEGY[:] = [tf.distribute.MultiWorkerMirroredStrategy(
            communication_options=tf.distribute.experimental.CommunicationOptions(
                implementation=ring.NCCL if device == "cuda" else ring.RING))]
        if _STRATEGY[0].num_replicas_in_sync != workers:
            raise RuntimeError(f"tensorflow: joined {_STRATEGY[0].num_replicas_in_sync} replicas, expected {workers}")
        return rank

    def lstm_computes_padding(self):
        # the declared table is eager fp32's; on a GPU a Keras layout skips padded steps only
        # where it runs cuDNN (not under --compile or bf16: the generic loop, see _variant_settings)
        if self.device == "cuda" and self.layout != "dynamic_rnn":
            return not self.use_cudnn
        return super().lstm_computes_padding()

    def skip_gradient_sync(self):
        if self._strategy is None:
            return None
        import contextlib

        @contextlib.contextmanager
        def skipped():
            self._skip_sync = True
            try:
                yield
            finally:
                self._skip_sync = False
        return skipped()
    def _gradients(self, tape, objective):
        """Float32 gradients of `objective` (under fp16 through the loss scale: then also
        whether all are finite)."""
        fp16 = self.precision == "fp16"
        grads = tape.gradient(objective * self.loss_scale if fp16 else objective, self.model.variables)
        # The embedding's gradient arrives as IndexedSlices (rows looked up, repeats not
        # summed); made dense here so that TF does the work PyTorch and Paddle do with
        # their default dense embeddings: one [V, H] gradient, one dense update. The
        # sparse idiom's cost or saving is measured in docs/methodology.md (the model section).
        grads = [tf.convert_to_tensor(g) for g in grads]
        if not fp16:
            return grads, None
        grads = [g / self.loss_scale for g in grads]
        return grads, tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in grads])

    def _update_loss_scale(self, grads, finite):
        """fp16: a step whose gradients overflowed is skipped (its gradients zeroed) and the
        scale halved; 2000 good steps in a row double it."""
        good = tf.where(finite, self.good_steps + 1, tf.zeros_like(self.good_steps))
        grow = good >= 2000
        self.good_steps.assign(tf.where(grow, tf.zeros_like(good), good))
        self.loss_scale.assign(self.loss_scale * tf.where(finite, tf.where(grow, 2.0, 1.0), 0.5))
        return [tf.where(finite, g, tf.zeros_like(g)) for g in grads]

    # -- the compiled steps -------------------------------------------------------------
    def _train_fn(self, inputs, targets, lengths, h0, c0, lr, sequences, masked):
        if self._strategy is None:
            return self._update(inputs, targets, lengths, h0, c0, lr, sequences, all_reduce=False, masked=masked)
        return self._strategy.run(self._update, args=(inputs, targets, lengths, h0, c0, lr, sequences),
                                  kwargs={"all_reduce": True, "masked": masked})

    def _update(self, inputs, targets, lengths, h0, c0, lr, sequences, all_reduce, masked):
        variables = self.model.variables
        with tf.GradientTape() as tape:
            loss, h, c = self.model(inputs, targets, lengths, h0, c0, training=True, masked=masked)
            # summed over time, / the (global) batch's sequences: the all-reduce SUMS
            objective = loss / sequences
        grads, finite = self._gradients(tape, objective)
        if all_reduce:  # every worker's gradient summed, before the clipping norm is taken
            grads = tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, grads)
            if finite is not None:  # fp16: every worker skips an overflowed step alike
                finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in grads])
        if self.precision == "fp16":
            grads = self._update_loss_scale(grads, finite)
        # SGD on the canonical model, whose LSTM bias is b_ih + b_hh: both get the same
        # gradient, so the norm counts it twice and the sum moves by 2 * lr * g.
        norm = tf.linalg.global_norm([g for g, k in zip(grads, self.model.copies) for _ in range(k)])
        step = lr * _clip_scale(norm, self.cfg.clip)
        for v, g, k in zip(variables, grads, self.model.copies):
            v.assign_sub((k * step) * g)
        return loss, h, c

    def _eval_fn(self, inputs, targets, lengths, h0, c0, masked):
        return self.model(inputs, targets, lengths, h0, c0, training=False, masked=masked)

    def _grads_fn(self, inputs, targets, lengths, h0, c0, masked):
        with tf.GradientTape() as tape:
            loss, _, _ = self.model(inputs, targets, lengths, h0, c0, training=False, masked=masked)
            objective = loss / tf.cast(tf.shape(inputs)[0], tf.float32)
        return objective, self._gradients(tape, objective)[0]

    # -- weights in the canonical layout (lmbench.weights) ------------------------------
    def set_weights(self, weights):
        for v, w in zip(self.model.variables, self.model.to_native(weights)):
            v.assign(np.ascontiguousarray(w, dtype=np.float32))

    def get_weights(self):
        arrays = [v.numpy().copy() for v in self.model.variables]
        return {k: np.ascontiguousarray(v) for k, v in self.model.to_canonical(arrays).items()}

    # -- steps --------------------------------------------------------------------------
    def _masked(self, batch):
        """Whether `batch` runs the step with the mask: when it has padding, and always with
        workers -- each worker's trace holds its own collective instances, so every worker
        must run the same one, whatever its shard holds."""
        return batch.has_padding or self._strategy is not None

    def _args(self, batch, step):
        if self.compile:  # XLA compiles once per distinct input shape; the report counts them
            self._shapes.setdefault(step, set()).add((batch.inputs.shape, self._masked(batch)))
        B = batch.batch_size
        carried = self.carried_state(batch)
        if carried is not None:
            h0, c0 = carried
        else:
            if B not in self._zeros:
                zeros = tf.zeros([self.cfg.layers, B, self.cfg.hidden])
                self._zeros[B] = (zeros, zeros)
            h0, c0 = self._zeros[B]
        return (tf.constant(batch.inputs), tf.constant(batch.targets), tf.constant(batch.lengths), h0, c0)

    def _keep(self, batch, h, c):
        self.keep_state(batch, (h, c))  # returned tensors are on no tape: already detached

    def train_step(self, batch, lr):
        step = (self._train_local if self._skip_sync else self._train)[self._masked(batch)]
        with tf.device(self.dev):
            loss, h, c = step(*self._args(batch, "train"), tf.constant(lr, tf.float32),
                              tf.constant(batch.loss_sequences, tf.float32))
        self._keep(batch, h, c)
        return loss

    def eval_step(self, batch):
        with tf.device(self.dev):
            loss, h, c = self._eval[self._masked(batch)](*self._args(batch, "eval"))
        self._keep(batch, h, c)
        return loss

    def loss_and_grads(self, batch):
        with tf.device(self.dev):
            objective, grads = self._grads[self._masked(batch)](*self._args(batch, "loss_and_grads"))
        arrays = [g.numpy() for g in grads]
        return float(objective), {k: np.ascontiguousarray(v) for k, v in
                                  self.model.to_canonical(arrays, grads=True).items()}

    def to_floats(self, handles):
        return tf.stack(handles).numpy().tolist() if handles else []

    # -- device -------------------------------------------------------------------------
    def sync(self):
        if self.device == "cuda":
            tf.test.experimental.sync_devices()

    def step_timer(self):
        return NoStepTimer() if self.device == "cuda" else StepTimer()

    def peak_memory_bytes(self):
        return tf.config.experimental.get_memory_info("GPU:0")["peak"] if self.device == "cuda" else None

    def environment(self):
        cuda = self.device == "cuda"
        build = tf.sysconfig.get_build_info()
        if self.layout == "dynamic_rnn":
            import tf_keras

            keras_version = f"tf_keras {tf_keras.__version__}"
            kernel = "tf.compat.v1 dynamic_rnn while_loop over legacy LSTMCell"
        else:
            keras_version = keras.__version__
            why = ("cuDNN is GPU-only" if not cuda else "use_cudnn=False: XLA has no CudnnRNNV3 kernel"
                   if self.compile else "use_cudnn=False: CudnnRNN has no bfloat16")
            kernel = ("cudnn (CudnnRNNV3 via keras.layers.LSTM)" if self.use_cudnn
                      else "statically unrolled cell (a Python loop over T in the tf.function; one trace per "
                           "[B, T])" if self.layout == "unrolled"
                      else f"keras generic tf.while_loop (backend.rnn; {why})")
        if cuda:
            gpu = tf.config.list_physical_devices("GPU")[0]
            device_name = tf.config.experimental.get_device_details(gpu).get("device_name", gpu.name)
        return {
            "framework": "tensorflow", "framework_version": tf.__version__, "keras_version": keras_version,
            "device_name": device_name if cuda else "cpu",
            "cuda_version": build.get("cuda_version") if cuda else None,
            "cudnn_version": build.get("cudnn_version") if cuda else None,
            "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
            "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
            "legacy_keras": os.environ.get("TF_USE_LEGACY_KERAS") == "1",
            "data_parallel": {"engine": DATA_PARALLEL["engine"], "launcher": None,
                              "collectives": "NCCL" if cuda else "RING",
                              "workers": self._strategy.num_replicas_in_sync,
                              "rank": self._strategy.cluster_resolver.task_id} if self._strategy else None,
            "lstm_kernel": kernel,
            "precision": self._precision(),
        }

    def _precision(self):
        low = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}[self.precision]
        out = {"dtype": low, "policy": self.policy, "variables": "float32",
               "tf32": tf.config.experimental.tensor_float_32_execution_enabled() if self.device == "cuda" else None}
        if self.precision != "fp32":
            layers = self.model.lstms + [self.model.decoder]  # what Keras computes them in
            out.update(lstm_dtype=layers[0].compute_dtype, decoder_dtype=layers[-1].compute_dtype,
                       softmax_loss_dtype="float32",
                       gradients_and_clipping="float32",
                       loss_scaling="dynamic, by hand (x2 per 2000 good steps, /2 and skip on overflow)"
                       if self.precision == "fp16" else None)
        return {**out, **(bf16_hardware() if self.precision == "bf16" and self.device == "cpu" else {})}

    def compile_report(self):
        if not self.compile:
            return None
        shapes = {step: len(s) for step, s in self._shapes.items()}
        steps = {"train": self._train, "eval": self._eval, "loss_and_grads": self._grads}
        lstm = {"dynamic_rnn": "tf.compat.v1 dynamic_rnn while_loop, compiled whole by XLA",
                "unrolled": "statically unrolled cell (mask applied with tf.where), compiled whole by XLA"}.get(
            self.layout, "keras generic tf.while_loop (mask applied with tf.where), compiled whole by XLA")
        return {"compiler": "XLA (tf.function jit_compile=True)", "scope": COMPILE_SCOPE,
                "traces": sum(f.experimental_get_tracing_count() for fs in steps.values() for f in fs.values()),
                "xla_executables": sum(shapes.values()), "input_shapes": shapes,
                "recompiles": sum(n - 1 for n in shapes.values()),
                "lstm": lstm + ("; use_cudnn=False: XLA has no kernel for cuDNN's LSTM op"
                                if self.device == "cuda" else ""),
                "gather": "tf.boolean_mask: a dynamic dimension XLA bounds by B*T" if self.layout == "padded-gather"
                else None}


def gemm(n: int, device: str, precision: str = "fp32"):
    """`lmbench peak`: a blocking n x n matrix product on `device`, and the version. fp32 is
    true float32: TensorFlow's default runs float32 matmuls in TF32 on Ampere+ GPUs."""
    tf.config.experimental.enable_tensor_float_32_execution(False)
    dtype = {"fp32": tf.float32, "bf16": tf.bfloat16}[precision]
    with tf.device("/GPU:0" if device == "cuda" else "/CPU:0"):
        a, b = (tf.cast(tf.random.normal([n, n]), dtype) for _ in range(2))
        product = tf.function(lambda: tf.reduce_sum(tf.cast(tf.linalg.matmul(a, b), tf.float32)))
    return (lambda: product().numpy()), tf.__version__
