"""The simplest hand-written TF 2 / Keras 3 loop for the model lmbench's tensorflow backend trains.

Same batches and initial weights as `lmbench run --backend tensorflow --layout padded`, none
of the harness: Keras LSTM layers on the padded batch with its mask, a masked summed loss,
SGD with global-norm clipping in one tf.function (dense embedding gradient, as the backend). It takes the same SGD step as the
two-bias canonical model (see backends/tensorflow.py): the one Keras bias stands for
b_ih + b_hh, so it counts twice in the norm and moves by 2 * lr * g. Prints one JSON line.
"""
import argparse
import json
import os
import time

from lmbench.config import make_config
from lmbench.data.corpus import load_corpus, make_batches
from lmbench.data.download import download_ptb
from lmbench.weights import init_weights
from lmbench.run.worker import set_thread_env

p = argparse.ArgumentParser()
p.add_argument("--preset", default="small")
p.add_argument("--steps", type=int, default=50)
p.add_argument("--warmup", type=int, default=5)
p.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
args = p.parse_args()
set_thread_env(args.threads, "tensorflow")

import tensorflow as tf  # noqa: E402  (after the thread environment is set)

tf.config.threading.set_intra_op_parallelism_threads(args.threads)
tf.config.threading.set_inter_op_parallelism_threads(1)
import keras  # noqa: E402

cfg = make_config(args.preset, mode="sentence", batching="random")
corpus = load_corpus(download_ptb())
batches = make_batches(corpus["train"], "sentence", cfg.batch_size, cfg.num_steps, "random", cfg.seed, 0)
batches = batches[:args.warmup + args.steps]
V, H, L = cfg.vocab_size, cfg.hidden, cfg.layers

emb = keras.layers.Embedding(V, H)
lstms = [keras.layers.LSTM(H, return_sequences=True, unit_forget_bias=False) for _ in range(L)]
dec = keras.layers.Dense(V)
emb.build((None, None))
for lstm in lstms:
    lstm.build((None, None, H))
dec.build((None, H))
w = init_weights(cfg)
emb.embeddings.assign(w["embedding"])
for l, lstm in enumerate(lstms):
    lstm.cell.kernel.assign(w[f"lstm{l}.w_ih"].T)
    lstm.cell.recurrent_kernel.assign(w[f"lstm{l}.w_hh"].T)
    lstm.cell.bias.assign(w[f"lstm{l}.b_ih"] + w[f"lstm{l}.b_hh"])
dec.kernel.assign(w["decoder.w"].T)
dec.bias.assign(w["decoder.b"])
params = [emb.embeddings] + [v for lstm in lstms for v in lstm.cell.trainable_weights] + [dec.kernel, dec.bias]
params = [v.value for v in params]  # the tf.Variables, for tape and updates
biases = {id(lstm.cell.bias.value) for lstm in lstms}
ids = tf.TensorSpec([None, None], tf.int64)


@tf.function(input_signature=[ids, ids, tf.TensorSpec([None], tf.int64)])
def step(inputs, targets, lengths):
    mask = tf.sequence_mask(lengths, tf.shape(inputs)[1])
    with tf.GradientTape() as tape:
        x = emb(inputs)
        for lstm in lstms:
            x = lstm(x, mask=mask)
        logits = dec(tf.reshape(x, [-1, H]))
        real = tf.reshape(mask, [-1])
        labels = tf.where(real, tf.reshape(targets, [-1]), tf.zeros_like(real, tf.int64))
        nll = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
        loss = tf.reduce_sum(tf.where(real, nll, 0.0))
        objective = loss / tf.cast(tf.shape(inputs)[0], tf.float32)
    grads = [tf.convert_to_tensor(g) for g in tape.gradient(objective, params)]  # dense embedding grad
    norm = tf.linalg.global_norm(grads + [g for v, g in zip(params, grads) if id(v) in biases])
    grads, _ = tf.clip_by_global_norm(grads, cfg.clip, use_norm=norm)
    for v, g in zip(params, grads):
        v.assign_sub((2 * cfg.lr if id(v) in biases else cfg.lr) * g)
    return loss


def run(chunk):
    losses = [step(tf.constant(b.inputs), tf.constant(b.targets), tf.constant(b.lengths)) for b in chunk]
    return tf.stack(losses).numpy()  # read once, as the harness does between log points


run(batches)  # warm-up: every batch (so every shape) once, untimed
t0 = time.perf_counter()
losses = run(batches[args.warmup:])
seconds = time.perf_counter() - t0
tokens = sum(b.num_targets for b in batches[args.warmup:])
print(json.dumps({"framework": "tensorflow", "layout": "padded", "train_words_per_sec": tokens / seconds,
                  "steps": args.steps, "tokens": tokens, "seconds": seconds}))
