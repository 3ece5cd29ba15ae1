"""Flax's own public LSTM example's way of training, on lmbench's stream-mode work (JAX).

Needs flax and optax, which lmbench does not depend on: `.venv/bin/pip install flax optax`.

Follows google/flax, `examples/sst2/` (models.py: Embedder and SimpleLSTM, an
nn.OptimizedLSTMCell scanned over time by nn.scan; train.py: a TrainState with an optax
optimizer, `jax.jit(train_step)` built on `jax.value_and_grad(loss_fn, has_aux=True)` and
`state.apply_gradients`, per-batch metrics kept on the device and fetched with
jax.device_get at the end; models.py read at commit e5a27a58, train.py at d4bac102),
written here from that program's description and structure, not copied. The example classifies sentences (a bidirectional LSTM and attention); this is
the same machinery as a 2-layer unidirectional LSTM language model:

kept from it
- an Embedder module owning its `embedding` parameter, looked up by indexing;
- SimpleLSTM: `nn.scan` of `nn.OptimizedLSTMCell` over the time axis of batch-first input
  (in_axes=1, out_axes=1, variable_broadcast='params', split_rngs={'params': False}), the
  carry passed in and returned; the cell's parameters as flax has them: per gate an input
  kernel without bias (ii, if, ig, io) and a hidden kernel with bias (hi, hf, hg, ho), the
  four of each concatenated into one matmul per step inside the scan;
- nn.Dense for the output layer; `TrainState.create(apply_fn=model.apply, params, tx)`,
  one `jax.jit` of the whole train step (forward, value_and_grad, optax update), losses
  kept as device arrays and read back once with jax.device_get.

changed to do exactly the work of `lmbench run --backend jax --mode stream --preset small`
- the model: Embedding(10k, 200) -> 2 x SimpleLSTM(200) -> Dense(10k), no dropout (the
  example's dropout and word dropout, its bidirectional encoder and attention classifier
  are not part of a language model), no RNG folding per step (no dropout to feed);
- the loss: optax.softmax_cross_entropy_with_integer_labels summed over the window's
  targets, divided by the batch size (lmbench's objective; the example: a mean sigmoid
  cross entropy), so what is clipped is that objective's gradient;
- the optimizer: optax.chain(optax.clip_by_global_norm(5), optax.sgd(1)) (the example:
  sgd with momentum and weight decay);
- data and state: lmbench's stream batches of PTB; the final (c, h) of each layer is
  returned by the jitted step and fed to the next window (the example starts every
  sentence from zeros);
- initial weights: lmbench.weights.init_weights mapped onto flax's parameters (embedding;
  per gate k of i, f, g, o: i<k>.kernel = w_ih[k].T, h<k>.kernel = w_hh[k].T,
  h<k>.bias = b_ih[k] + b_hh[k]; decoder kernel = decoder.w.T);
- threads: the process's CPU affinity narrowed to --threads CPUs before jax is imported
  (XLA's CPU pool follows it) and jax_default_matmul_precision "highest", as lmbench's jax
  backend does.

What still differs from lmbench's step, by design (it is the example's way):
- lmbench's jax backend projects every time step's input at once ([T*B, H] x [H, 4H]) before
  its lax.scan and runs the scan masked (its padded layout); the example's cell does the
  input matmul inside the scan, step by step, and has no mask;
- one bias per gate (lmbench keeps b_ih and b_hh, whose gradients are equal): lmbench's
  global norm counts the bias gradient twice and moves the sum of the two biases by 2 lr g
  where this moves its one bias by lr g. The first window's loss is the same; later
  windows drift apart (the work per step is unchanged);
- optax's clip computes g / norm * clip where lmbench computes g * clip / max(norm, clip):
  last-bit differences.

Installed for it (not a project dependency): flax, optax, chex, msgpack, toolz, treescope
(`pip install --no-deps`; flax's orbax-checkpoint and tensorstore are not needed here).

Prints one JSON line: {"program", "framework", "train_words_per_sec", "steps", "tokens",
"seconds", "first_loss" (the first window's summed NLL / B), "first_nll_sum", "threads"}.

    python benchmarks/public_jax_lstm_lm.py --steps 200 --warmup 20 --threads 2
"""
import functools
import json
import os
import time

import numpy as np

from public_common import parse_args, stream_work

PROGRAM = "google/flax examples/sst2 (models.py SimpleLSTM: nn.scan(OptimizedLSTMCell); train.py TrainState + optax)"

args = parse_args(__doc__, "jax")  # before jax is imported
# XLA's CPU client sizes its pool from the CPUs the process may use, once: narrow it first
os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:args.threads])

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402
from flax import linen as nn  # noqa: E402
from flax.training import train_state  # noqa: E402

jax.config.update("jax_default_matmul_precision", "highest")  # as lmbench's jax backend (no-op on the CPU)

GATES = ("i", "f", "g", "o")  # lmbench's order along the 4H axis, and OptimizedLSTMCell's names


class Embedder(nn.Module):
    vocab_size: int
    embedding_size: int

    def setup(self):
        self.embedding = self.param("embedding", nn.initializers.normal(stddev=0.1),
                                    (self.vocab_size, self.embedding_size), jnp.float32)

    def __call__(self, inputs):
        return self.embedding[inputs]


class SimpleLSTM(nn.Module):
    """A unidirectional LSTM over batch-first input: OptimizedLSTMCell scanned over axis 1."""
    hidden_size: int

    @functools.partial(nn.scan, variable_broadcast="params", in_axes=1, out_axes=1, split_rngs={"params": False})
    @nn.compact
    def __call__(self, carry, x):
        return nn.OptimizedLSTMCell(self.hidden_size)(carry, x)


class LSTMLanguageModel(nn.Module):
    vocab_size: int
    hidden_size: int
    num_layers: int

    def setup(self):
        self.embedder = Embedder(self.vocab_size, self.hidden_size)
        self.lstms = [SimpleLSTM(self.hidden_size, name=f"lstm_{l}") for l in range(self.num_layers)]
        self.decoder = nn.Dense(self.vocab_size)

    def __call__(self, carry, token_ids):
        """carry: per layer (c, h) [B, H]; token_ids [B, T] -> (new carry, logits [B, T, V])."""
        x, new_carry = self.embedder(token_ids), []
        for lstm, layer_carry in zip(self.lstms, carry):
            layer_carry, x = lstm(layer_carry, x)
            new_carry.append(layer_carry)
        return tuple(new_carry), self.decoder(x)


def canonical_params(params, w, layers, H):
    """The initialised flax parameter tree with lmbench's canonical weights in it."""
    out = jax.tree_util.tree_map(np.asarray, params)
    out["embedder"]["embedding"] = w["embedding"]
    out["decoder"]["kernel"] = np.ascontiguousarray(w["decoder.w"].T)
    out["decoder"]["bias"] = w["decoder.b"]
    for l in range(layers):
        cell = out[f"lstm_{l}"]["OptimizedLSTMCell_0"]
        bias = w[f"lstm{l}.b_ih"] + w[f"lstm{l}.b_hh"]
        for k, gate in enumerate(GATES):
            rows = slice(k * H, (k + 1) * H)
            cell[f"i{gate}"]["kernel"] = np.ascontiguousarray(w[f"lstm{l}.w_ih"][rows].T)
            cell[f"h{gate}"]["kernel"] = np.ascontiguousarray(w[f"lstm{l}.w_hh"][rows].T)
            cell[f"h{gate}"]["bias"] = bias[rows]
    for (path, new), old in zip(jax.tree_util.tree_leaves_with_path(out), jax.tree_util.tree_leaves(params)):
        if new.shape != old.shape or new.dtype != old.dtype:
            raise SystemExit(f"{jax.tree_util.keystr(path)}: {new.dtype}{new.shape} for {old.dtype}{old.shape}")
    return jax.tree_util.tree_map(jnp.asarray, out)


def train_step(state, carry, batch):
    """One window: loss, gradients, clipped SGD update; the new carry for the next window."""
    def loss_fn(params):
        new_carry, logits = state.apply_fn({"params": params}, carry, batch["inputs"])
        nll = optax.softmax_cross_entropy_with_integer_labels(logits, batch["targets"])
        return jnp.sum(nll) / batch["inputs"].shape[0], new_carry

    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    (loss, new_carry), grads = grad_fn(state.params)
    return state.apply_gradients(grads=grads), new_carry, loss


def main():
    cfg, batches, weights = stream_work(args.warmup + args.steps)
    B, T, L, H = cfg.batch_size, cfg.num_steps, cfg.layers, cfg.hidden
    model = LSTMLanguageModel(cfg.vocab_size, H, L)
    zeros = jnp.zeros((B, H), jnp.float32)
    carry = tuple((zeros, zeros) for _ in range(L))  # (c, h) per layer, OptimizedLSTMCell's order
    params = model.init(jax.random.PRNGKey(cfg.seed), carry, jnp.zeros((B, T), jnp.int32))["params"]
    tx = optax.chain(optax.clip_by_global_norm(cfg.clip), optax.sgd(learning_rate=cfg.lr))
    state = train_state.TrainState.create(apply_fn=model.apply, tx=tx,
                                          params=canonical_params(params, weights, L, H))
    step = jax.jit(train_step)
    inputs = [{"inputs": b.inputs.astype(np.int32), "targets": b.targets.astype(np.int32)} for b in batches]

    losses = []
    for batch in inputs[:args.warmup]:  # the first one compiles
        state, carry, loss = step(state, carry, batch)
        losses.append(loss)
    jax.block_until_ready((state, carry, losses))
    t0 = time.perf_counter()
    for batch in inputs[args.warmup:]:
        state, carry, loss = step(state, carry, batch)
        losses.append(loss)
    losses = [float(x) for x in jax.device_get(losses)]
    jax.block_until_ready((state, carry))
    seconds = time.perf_counter() - t0
    tokens = sum(b.num_targets for b in batches[args.warmup:])
    import flax

    out = {"program": PROGRAM, "framework": "jax", "framework_version": f"jax {jax.__version__}, flax "
           f"{flax.__version__}, optax {optax.__version__}", "train_words_per_sec": tokens / seconds,
           "steps": args.steps, "tokens": tokens, "seconds": seconds, "first_loss": losses[0],
           "first_nll_sum": losses[0] * B, "threads": args.threads}
    print(json.dumps({**out, "losses": losses} if args.losses else out))


if __name__ == "__main__":
    main()
