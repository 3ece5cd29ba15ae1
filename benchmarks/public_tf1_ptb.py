"""TensorFlow 1's public PTB language model program, on lmbench's stream-mode work.

Follows the TF1 PTB tutorial (tensorflow/models, `tutorials/rnn/ptb/ptb_word_lm.py`, the
Zaremba et al. small config), written here from that program's description and structure,
not copied:

kept from it
- graph mode: one tf.compat.v1 graph run by a Session, the carried LSTM state fed from
  numpy and fetched back to numpy every window (the program's `feed_dict` of
  `initial_state`, `fetches` of `final_state`);
- BasicLSTMCell's arithmetic: one kernel on concat([x, h]) and one bias per layer; the cell statically unrolled over the window, time step
  outer and layers inner (MultiRNNCell), full 10k softmax, the summed NLL over the window
  divided by the batch size (sequence_loss averaged over the batch, summed over time);
- SGD at lr 1 with the gradients clipped to a global norm of 5 (clip_by_global_norm +
  GradientDescentOptimizer).

changed to do exactly the work of `lmbench run --backend tensorflow --mode stream --preset small`
- data, order and windows: lmbench's stream batches of PTB (lmbench.data.corpus), B = 20,
  T = 20 (the program's reader is the same batching of the same corpus);
- the initial weights: lmbench.weights.init_weights (canonical gate order i, f, g, o, where
  BasicLSTMCell's kernel holds i, j, f, o: the same arithmetic on permuted columns; the
  kernel is [w_ih.T; w_hh.T], the bias b_ih + b_hh); no forget-gate bias of 1 (the program's
  BasicLSTMCell adds one; lmbench's initial weights are the model's whole init);
- the one bias stands for lmbench's two (b_ih, b_hh): it counts twice in the clipping norm
  and moves by 2 lr g, which is the canonical model's update;
- the embedding gradient is applied dense (10,000 x 200 per step), as lmbench, PyTorch and
  Paddle do; `--sparse` applies it as the IndexedSlices it arrives as (the program's own
  way: 400 rows per step), different work;
- threads: the Session's intra-op pool of --threads and an inter-op pool of 1, lmbench's
  budget (the program leaves both to TensorFlow).

Prints one JSON line: {"program", "framework", "train_words_per_sec", "steps", "tokens",
"seconds", "first_loss" (the first window's summed NLL / B), "first_nll_sum", "threads"}.
benchmarks/tensorflow_stream_ab.py times the same graph (tf1_program) in one process
against lmbench's step.

    python benchmarks/public_tf1_ptb.py --steps 200 --warmup 20 --threads 2
"""
import json
import time

import numpy as np

PROGRAM = "tensorflow/models tutorials/rnn/ptb/ptb_word_lm.py (TF1 graph, static unroll)"


def tf1_program(cfg, weights, threads, inter_op=1, sparse=False, own_pool=False):
    """(train(batch) -> the window's summed NLL as a float, reset() of the carried
    state): the program's graph and Session for `cfg` from `weights`. `own_pool`: the
    Session gets inter-op threads of its own rather than the process's pool."""
    import tensorflow as tf

    B, T, H, L = cfg.batch_size, cfg.num_steps, cfg.hidden, cfg.layers
    g = tf.Graph()
    with g.as_default():
        inputs = tf.compat.v1.placeholder(tf.int64, [B, T])
        targets = tf.compat.v1.placeholder(tf.int64, [B, T])
        h0 = [tf.compat.v1.placeholder(tf.float32, [B, H]) for _ in range(L)]
        c0 = [tf.compat.v1.placeholder(tf.float32, [B, H]) for _ in range(L)]
        emb = tf.Variable(weights["embedding"])
        kernels = [tf.Variable(np.concatenate([weights[f"lstm{l}.w_ih"].T, weights[f"lstm{l}.w_hh"].T]))
                   for l in range(L)]
        biases = [tf.Variable(weights[f"lstm{l}.b_ih"] + weights[f"lstm{l}.b_hh"]) for l in range(L)]
        softmax_w, softmax_b = tf.Variable(weights["decoder.w"].T), tf.Variable(weights["decoder.b"])
        x = tf.nn.embedding_lookup(emb, inputs)
        h, c, outputs = list(h0), list(c0), []
        for t in range(T):  # statically unrolled: time outer, layers inner (MultiRNNCell)
            out = x[:, t, :]
            for l in range(L):
                z = tf.matmul(tf.concat([out, h[l]], 1), kernels[l]) + biases[l]
                i, f, gg, o = tf.split(z, 4, axis=1)
                c[l] = tf.sigmoid(f) * c[l] + tf.sigmoid(i) * tf.tanh(gg)
                h[l] = tf.sigmoid(o) * tf.tanh(c[l])
                out = h[l]
            outputs.append(out)
        hidden = tf.reshape(tf.stack(outputs, 1), [-1, H])
        logits = tf.matmul(hidden, softmax_w) + softmax_b
        loss = tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.reshape(targets, [-1]),
                                                                            logits=logits))
        tvars = [emb, *kernels, *biases, softmax_w, softmax_b]
        copies = [1] + [1] * L + [2] * L + [1, 1]
        grads = tf.gradients(loss / B, tvars)
        if not sparse:
            grads[0] = tf.convert_to_tensor(grads[0])
        norm_of = [gr.values if isinstance(gr, tf.IndexedSlices) else gr for gr in grads]
        if sparse:  # the norm over the rows with repeats unsummed would differ: sum them
            uniq, idx = tf.unique(grads[0].indices)
            grads[0] = tf.IndexedSlices(tf.math.unsorted_segment_sum(grads[0].values, idx, tf.size(uniq)), uniq,
                                        grads[0].dense_shape)
            norm_of[0] = grads[0].values
        norm = tf.linalg.global_norm([gr for gr, k in zip(norm_of, copies) for _ in range(k)])
        step = cfg.lr * tf.where(tf.math.is_finite(norm), cfg.clip / tf.maximum(norm, cfg.clip), float("nan"))
        updates = []
        for v, gr, k in zip(tvars, grads, copies):
            if isinstance(gr, tf.IndexedSlices):  # what GradientDescentOptimizer does with one
                updates.append(v.scatter_sub(tf.IndexedSlices(gr.values * step, gr.indices)))
            else:
                updates.append(v.assign_sub((k * step) * gr))
        with tf.control_dependencies(updates):
            loss_out = tf.identity(loss)
        init = tf.compat.v1.global_variables_initializer()
    sess = tf.compat.v1.Session(graph=g, config=tf.compat.v1.ConfigProto(
        intra_op_parallelism_threads=threads, inter_op_parallelism_threads=inter_op,
        use_per_session_threads=own_pool))
    sess.run(init)
    g.finalize()
    zeros = np.zeros([B, H], np.float32)
    state = {}

    def train(batch):
        feed = {inputs: batch.inputs, targets: batch.targets}
        for l in range(L):
            feed[h0[l]], feed[c0[l]] = state.get(("h", l), zeros), state.get(("c", l), zeros)
        value, hs, cs = sess.run([loss_out, h, c], feed)
        for l in range(L):
            state["h", l], state["c", l] = hs[l], cs[l]
        return float(value)

    return train, state.clear


def main():
    from public_common import parse_args, stream_work

    args = parse_args(__doc__, "tensorflow", add=lambda p: p.add_argument(
        "--sparse", action="store_true", help="apply the embedding gradient as IndexedSlices (the program's "
                                              "own way; different work from lmbench's dense update)"))
    import tensorflow as tf  # after the thread environment is set

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    cfg, batches, weights = stream_work(args.warmup + args.steps)
    train, _ = tf1_program(cfg, weights, args.threads, sparse=args.sparse)
    losses = [train(b) / cfg.batch_size for b in batches[:args.warmup]]
    t0 = time.perf_counter()
    losses += [train(b) / cfg.batch_size for b in batches[args.warmup:]]
    seconds = time.perf_counter() - t0
    tokens = sum(b.num_targets for b in batches[args.warmup:])
    out = {"program": PROGRAM + (", sparse embedding update" if args.sparse else ", dense embedding update"),
           "framework": "tensorflow", "framework_version": tf.__version__,
           "train_words_per_sec": tokens / seconds, "steps": args.steps, "tokens": tokens, "seconds": seconds,
           "first_loss": losses[0], "first_nll_sum": losses[0] * cfg.batch_size, "threads": args.threads}
    print(json.dumps({**out, "losses": losses} if args.losses else out))


if __name__ == "__main__":
    main()
