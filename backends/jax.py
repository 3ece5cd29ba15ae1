"""JAX: the model as pure functions of the canonical weights, one jitted SGD step.

Layouts
- padded: the LSTM is a `lax.scan` over the whole [B, T] batch; at a padded position a
          row's (h, c) is held, not updated (the dynamic_rnn contract: the final state is
          each row's state after its last real token), and the decoder and a masked loss
          run on every position, as TensorFlow's padded layout does.
No layout skips padded positions: XLA compiles one program per input shape, and a
shrinking batch (Paddle's lod) or a gather of the real tokens (torch's padded-gather)
makes the shapes depend on each batch's lengths -- a compile for nearly every batch.

The parameters are kept in the canonical layout of lmbench.weights (gate order i, f, g,
o; y = x @ W.T + b), both LSTM biases included: SGD moves each and the global norm
counts each, as in PyTorch and Paddle. Gradients come from `jax.value_and_grad` of the
objective (NLL summed over real targets / B); the global-norm clip (min(1, clip/norm)),
the update, the dropout key and the final state are in the same jitted function; a
batch that hands no state on (sentence mode) runs its variant that starts from zeros
made inside the program and returns no state.

JAX dispatches asynchronously, on the CPU too: train_step returns before the step has
run. `sync` therefore blocks on the last step's outputs (loss, parameters, state). XLA
compiles per shape (every new padded length T in sentence mode); the harness's shape
warm-up runs each shape before the timed window and records the cost (cold_shapes).

Variants: --compile adds nothing (every step is already one jax.jit program: DECLINED_VARIANTS).
--precision bf16: the matmuls take bfloat16 operands (cast inside the step from the float32
parameters) and accumulate and return float32; gates, cell state, softmax and loss, the
gradients and their clipping stay float32. fp16 is skipped (it would need loss scaling).

Threads: XLA's CPU client ignores OMP_NUM_THREADS and sizes its thread pool from the
CPUs the process may run on (sched_getaffinity), once, when the client is created; so
the budget is set by narrowing the process's CPU affinity before the first computation
(at import, from THREAD_ENV, and again when a Backend is built).
"""
from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np

from lmbench.backend import Backend as BaseBackend, BackendUnavailable, StepTimer
from lmbench.data.corpus import PAD_ID
from lmbench.env import bf16_hardware

LAYOUTS = ("padded",)
# does the LSTM run over padded positions (lmbench.backend)? The lax.scan runs every row
# over all T steps and holds (h, c) at padded positions, on every device
COMPUTES_PADDING = {"padded": {"cpu": True, "cuda": True}}
# refused on any machine, before JAX is imported (lmbench.backend.declined)
DECLINED_VARIANTS = [
    ({"compile": True}, "jax: --compile adds nothing: every step is already one XLA program (jax.jit), "
                        "compiled once per batch shape"),
    ({"precision": "fp16"}, "jax: --precision fp16 is not implemented: float16 training needs loss scaling, "
                            "which this backend (and JAX) does not have; bf16 keeps float32's exponent range "
                            "and needs none"),
]
# XLA reads no thread variable: the harness sets this one before the import, and the
# import narrows the CPU affinity to that many CPUs (_limit_threads)
THREAD_ENV = {"LMBENCH_XLA_CPU_THREADS": "{threads}"}
# how JAX keeps what XLA compiled in a directory, for the next process to load instead of
# compiling (no floor on compile time or size: tiny programs compile in well under JAX's 1 s
# default). lmbench's runs never set it -- the compiles are part of a first epoch they
# measure -- but its test session does (tests/conftest.py): tiny programs recur in many processes
COMPILE_CACHE_ENV = {"JAX_COMPILATION_CACHE_DIR": "{dir}", "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
                     "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"}

# true float32 on GPUs too (XLA's default lets cuBLAS/cuDNN use TF32 there)
jax.config.update("jax_default_matmul_precision", "highest")


def _limit_threads(threads: int) -> list[int]:
    """Pin this process to `threads` of its CPUs before XLA's CPU client exists (it sizes
    its pool from the affinity once); returns the CPUs kept."""
    cpus = sorted(os.sched_getaffinity(0))
    if 0 < threads < len(cpus):
        os.sched_setaffinity(0, cpus[:threads])
    return sorted(os.sched_getaffinity(0))


_limit_threads(int(os.environ.get("LMBENCH_XLA_CPU_THREADS", "0")))


def _device(device: str):
    platform = "gpu" if device == "cuda" else "cpu"
    try:
        return jax.devices(platform)[0]
    except RuntimeError as e:
        raise BackendUnavailable(f"jax: --device {device}, but JAX has no {platform} backend here ({e}); "
                                 f"install jax[cuda12] for a GPU (docs/install.md, 'GPU install')") from e


def _dot(a, b, dtype):
    """a @ b with operands in `dtype` (float32 or bfloat16), accumulated and returned in float32."""
    return jnp.matmul(a.astype(dtype), b.astype(dtype), preferred_element_type=jnp.float32)


def _lstm_layer(p, layer, x, mask, h, c, dtype=jnp.float32):
    """One LSTM layer over time. x [T, B, in], mask [T, B]; returns outputs [T, B, H] and
    the state after each row's last real step."""
    w_hh = p[f"lstm{layer}.w_hh"].T.astype(dtype)  # cast once, outside the time loop
    # the input projection of every step at once: one [T*B, in] x [in, 4H] product
    xw = _dot(x, p[f"lstm{layer}.w_ih"].T, dtype) + (p[f"lstm{layer}.b_ih"] + p[f"lstm{layer}.b_hh"])

    def step(carry, inputs):
        h, c = carry
        gates, real = inputs
        i, f, g, o = jnp.split(gates + _dot(h, w_hh, dtype), 4, axis=-1)
        c_new = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
        h_new = jax.nn.sigmoid(o) * jnp.tanh(c_new)
        real = real[:, None]
        return (jnp.where(real, h_new, h), jnp.where(real, c_new, c)), h_new

    (h, c), out = jax.lax.scan(step, (h, c), (xw, mask))
    return out, h, c


def _dropout(x, rate, key):
    keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
    return jnp.where(keep, x / (1.0 - rate), 0.0)


def nll_sum(p, inputs, targets, lengths, h0, c0, key, dropout, dtype=jnp.float32):
    """Summed NLL over the real targets, and the final (h, c) [layers, B, H]."""
    layers = h0.shape[0]
    keys = jax.random.split(key, layers + 1)
    mask = jnp.arange(inputs.shape[1])[None, :] < lengths[:, None]  # [B, T]
    x = p["embedding"][inputs.T]  # time-major [T, B, H]
    hs, cs = [], []
    for layer in range(layers):
        if dropout > 0:
            x = _dropout(x, dropout, keys[layer])
        x, h, c = _lstm_layer(p, layer, x, mask.T, h0[layer], c0[layer], dtype)
        hs.append(h)
        cs.append(c)
    if dropout > 0:
        x = _dropout(x, dropout, keys[layers])
    logits = _dot(x, p["decoder.w"].T, dtype) + p["decoder.b"]  # [T, B, V], float32
    gold = jnp.where(mask.T, targets.T, 0)  # PAD_ID is outside the classes: never index with it
    nll = jax.nn.logsumexp(logits, axis=-1) - jnp.take_along_axis(logits, gold[..., None], -1)[..., 0]
    return jnp.sum(jnp.where(mask.T, nll, 0.0)), (jnp.stack(hs), jnp.stack(cs))


class DispatchOnlyTimer(StepTimer):
    """No per-step samples: a host clock around an asynchronous step times its dispatch, and
    blocking each step would stall the host-device overlap no training loop gives up."""
    source = "none: JAX dispatches asynchronously; throughput from the synced region"

    def start(self):
        pass

    def stop(self):
        pass


def clip_and_update(params, grads, lr, clip):
    """SGD on the gradients clipped to a global norm of `clip` (scaled by min(1, clip/norm))."""
    norm = jnp.sqrt(sum(jnp.sum(g * g) for g in jax.tree_util.tree_leaves(grads)))
    scale = clip / jnp.maximum(norm, clip)
    return jax.tree_util.tree_map(lambda w, g: w - lr * scale * g, params, grads)


def _objective(p, batch_size, *args):
    total, state = nll_sum(p, *args)
    return total / batch_size, (total, state)


class Backend(BaseBackend):
    name = "jax"

    def __init__(self, cfg, layout, device, threads, **options):
        super().__init__(cfg, layout, device, threads, **options)
        self.cpus = _limit_threads(threads) if device == "cpu" else None
        self.dev = _device(device)
        self.params = None
        self.key = jax.device_put(jax.random.PRNGKey(cfg.seed), self.dev)
        self._last = ()  # the newest step's outputs: what sync blocks on
        self._zeros = {}
        dropout, clip = cfg.dropout, cfg.clip
        dtype = self._matmul_dtype()
        grad_fn = jax.value_and_grad(_objective, has_aux=True)

        def train(params, key, lr, inputs, targets, lengths, h0, c0):
            sub = key  # unused without dropout: no split then (a threefry split is ~9% of the small step's HLO)
            if dropout > 0:
                key, sub = jax.random.split(key)
            (_, (total, state)), grads = grad_fn(params, inputs.shape[0], inputs, targets, lengths,
                                                 h0, c0, sub, dropout, dtype)
            return clip_and_update(params, grads, lr, clip), key, total, state

        def train_fresh(params, key, lr, inputs, targets, lengths):
            # a batch that hands no state on (sentence mode): zeros made in the program, no
            # state returned -- the step a plain loop would write, not the stream step's superset
            zeros = jnp.zeros((cfg.layers, inputs.shape[0], cfg.hidden), jnp.float32)
            return train(params, key, lr, inputs, targets, lengths, zeros, zeros)[:3]

        def evaluate(params, inputs, targets, lengths, h0, c0):
            return nll_sum(params, inputs, targets, lengths, h0, c0, jax.random.PRNGKey(0), 0.0, dtype)

        def loss_and_grads(params, inputs, targets, lengths, h0, c0):
            (objective, _), grads = grad_fn(params, inputs.shape[0], inputs, targets, lengths,
                                            h0, c0, jax.random.PRNGKey(0), 0.0, dtype)
            return objective, grads

        self._train = jax.jit(train)
        self._train_fresh = jax.jit(train_fresh)
        self._eval = jax.jit(evaluate)
        self._loss_and_grads = jax.jit(loss_and_grads)

    def _matmul_dtype(self):
        """The matmul operand dtype of --precision."""
        return jnp.bfloat16 if self.precision == "bf16" else jnp.float32

    @classmethod
    def cuda_available(cls):
        try:
            return bool(jax.devices("gpu"))
        except RuntimeError:
            return False

    # -- weights: the canonical layout is the model's own ---------------------------------
    def set_weights(self, weights):
        self.params = {k: jax.device_put(np.asarray(v, np.float32), self.dev) for k, v in weights.items()}

    def get_weights(self):
        return {k: np.array(v, np.float32) for k, v in self.params.items()}

    # -- steps --------------------------------------------------------------------------
    def _arrays(self, batch):
        # numpy straight into the jitted call: it lands on the parameters' device with the call
        # itself (an explicit device_put first would be one more dispatch per step)
        return batch.inputs.astype(np.int32), batch.targets.astype(np.int32), batch.lengths.astype(np.int32)

    def _inputs(self, batch):
        state = self.carried_state(batch)
        if state is None:  # zeros made once per batch size: no extra dispatch per step
            if batch.batch_size not in self._zeros:
                shape = (self.cfg.layers, batch.batch_size, self.cfg.hidden)
                self._zeros[batch.batch_size] = jnp.zeros(shape, jnp.float32, device=self.dev)
            state = (self._zeros[batch.batch_size],) * 2
        return *self._arrays(batch), *state

    def train_step(self, batch, lr):
        if batch.carry_state:
            self.params, self.key, total, state = self._train(self.params, self.key, np.float32(lr),
                                                              *self._inputs(batch))
        else:
            self.params, self.key, total = self._train_fresh(self.params, self.key, np.float32(lr),
                                                             *self._arrays(batch))
            state = ()
        self.keep_state(batch, state)
        self._last = (total, self.params, state)
        return total

    def eval_step(self, batch):
        total, state = self._eval(self.params, *self._inputs(batch))
        self.keep_state(batch, state)
        self._last = (total, state)
        return total

    def loss_and_grads(self, batch):
        objective, grads = self._loss_and_grads(self.params, *self._inputs(batch))
        return float(objective), {k: np.array(g, np.float32) for k, g in grads.items()}

    def to_floats(self, handles):
        return [float(h) for h in jax.device_get(handles)]

    # -- device -------------------------------------------------------------------------
    def sync(self):
        jax.block_until_ready(self._last)

    def step_timer(self):
        return DispatchOnlyTimer()

    def peak_memory_bytes(self):
        if self.device != "cuda":
            return None
        stats = self.dev.memory_stats() or {}
        return stats.get("peak_bytes_in_use")

    def environment(self):
        cuda = self.device == "cuda"
        import jaxlib

        return {
            "framework": "jax", "framework_version": jax.__version__, "jaxlib_version": jaxlib.__version__,
            "device_name": self.dev.device_kind if cuda else "cpu",
            "cuda_version": None, "cudnn_version": None,
            "intra_op_threads": len(self.cpus) if self.cpus else None,
            "cpu_affinity": self.cpus,
            "lstm_kernel": "XLA lax.scan (jitted step, one compile per batch shape)",
            "precision": {"dtype": "bfloat16" if self.precision == "bf16" else "float32",
                          "jax_default_matmul_precision": jax.config.jax_default_matmul_precision,
                          **({"matmul_operands": "bfloat16", "matmul_accumulate": "float32",
                              "lstm_dtype": "bfloat16 matmuls, float32 gates and cell state",
                              "softmax_loss_dtype": "float32", "params_and_gradients": "float32",
                              **(bf16_hardware() if self.device == "cpu" else {})}
                             if self.precision == "bf16" else {})},
        }


def gemm(n: int, device: str, precision: str = "fp32"):
    """`lmbench peak`: a blocking n x n matrix product on `device`, and the version. The
    precision is HIGHEST on the dot itself (true float32: no TF32 or bf16 passes on a GPU),
    whatever the process-wide default."""
    dev = _device(device)
    key = jax.random.PRNGKey(0)
    dtype = {"fp32": jnp.float32, "bf16": jnp.bfloat16}[precision]
    a = jax.device_put(jax.random.normal(key, (n, n), jnp.float32).astype(dtype), dev)
    matmul = jax.jit(lambda x: jnp.matmul(x, x, precision=jax.lax.Precision.HIGHEST).astype(jnp.float32).sum())
    return (lambda: float(matmul(a))), jax.__version__
