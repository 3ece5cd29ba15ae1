"""Where TensorFlow's stream-mode step time goes: lmbench's step against candidate
formulations and a TF1-style yardstick, in one process, paired per round (issue 26).

Sides (each its own variables, from the same canonical initial weights, on the same first
--steps stream windows, state carried from window to window):
- lmbench:<layout>   the backend's train_step as `lmbench run` calls it;
- before:<layout>    the same from another version of backends/tensorflow.py (--before);
- tf1 / tf1-sparse   the yardstick, benchmarks/public_tf1_ptb.py's graph (the public TF1 PTB program):
                     a tf.compat.v1 graph run by a Session, an LSTM cell (one kernel on
                     concat([x, h]), as BasicLSTMCell) statically unrolled over the window
                     time step by time step through both layers, the state fed from numpy
                     and fetched to numpy every step, full softmax, SGD lr 1, clip 5.
                     tf1 makes the embedding gradient dense (the work lmbench does, and
                     PyTorch and Paddle do); tf1-sparse applies it as the IndexedSlices
                     it arrives as (400 rows per step instead of 10,000 x 200);
                     tf1-inter2 is tf1 with a session inter-op pool of its own of 2 threads
                     (TensorFlow's default on 2 cores; lmbench runs every side with 1): the
                     one thread setting a same-process A/B can change;
- cand:<...>         the backend's step (its _update: loss, gradients, clipping, update)
                     with one thing changed, a cause at a time:
    keras-mask       the padded layout's Keras LSTM while_loop with its mask (= lmbench:padded
                     without the harness; the base the others change one thing of),
    keras            the same loop without the mask (a stream window has no padding),
    keras-unroll     Keras LSTM(unroll=True), no mask: Keras unrolls it statically,
    unroll           a hand-written cell looped in Python over the window inside the
                     tf.function (so the graph is unrolled), no mask,
    unroll-sparse    unroll, the embedding gradient applied as IndexedSlices,
    unroll-numpy     unroll, the carried state fetched to numpy and fed back each step,
    unroll-var       unroll, the carried state kept in tf.Variables on the device,
    keras-mask-nosig keras-mask traced without an input signature (one trace per shape).
Every round runs every side for --steps windows, the order reversed every other round;
each side's per-round speed is divided by the reference's (the first side) in the same
round, and the median and p10-p90 of those ratios printed, with every side's traces and
its first window's loss (the same weights and batch: equal losses = the same function).

Threads and oneDNN are read when TensorFlow starts: --process-ab runs this script as
child processes alternately under two environments (A B, B A, ...) and pairs each side's rates
(INTER_OP=N in an environment is this script's --inter-op).

    python benchmarks/tensorflow_stream_ab.py --sides lmbench:padded tf1 cand:keras --rounds 20
    python benchmarks/tensorflow_stream_ab.py --sides tf1 --process-ab TF_ENABLE_ONEDNN_OPTS=1 \\
        TF_ENABLE_ONEDNN_OPTS=0 --processes 6
"""
from __future__ import annotations

import argparse
import datetime
import functools
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time

from lmbench.config import make_config
from lmbench.data.corpus import load_corpus, make_batches
from lmbench.data.download import download_ptb
from lmbench.env import cpu_model
from lmbench.weights import init_weights
from lmbench.run.worker import set_thread_env

# (cause, side with it changed, side without): printed for every pair both of whose sides ran
CAUSES = [
    # before:padded: this branch's padded skips the mask on stream windows, cand:keras-mask does not
    ("harness (lmbench's train_step around the same step)", "before:padded", "cand:keras-mask"),
    ("no mask on a window without padding", "cand:keras", "cand:keras-mask"),
    ("Keras LSTM(unroll=True) vs its while_loop", "cand:keras-unroll", "cand:keras"),
    ("hand-written cell unrolled in Python vs Keras while_loop", "cand:unroll", "cand:keras"),
    ("sparse (IndexedSlices) embedding update vs dense, unrolled", "cand:unroll-sparse", "cand:unroll"),
    ("sparse embedding update vs dense, TF1 yardstick", "tf1-sparse", "tf1"),
    ("state fetched to numpy and fed back vs kept as tensors", "cand:unroll-numpy", "cand:unroll"),
    ("state in tf.Variables on the device vs tensors in and out", "cand:unroll-var", "cand:unroll"),
    ("no input signature (trace per shape) vs signature", "cand:keras-mask-nosig", "cand:keras-mask"),
    ("2 inter-op threads vs 1 (a session pool of its own), TF1 yardstick", "tf1-inter2", "tf1"),
    ("this branch's padded vs the --before padded", "lmbench:padded", "before:padded"),
    ("this branch's unrolled vs the --before padded", "lmbench:unrolled", "before:padded"),
    ("lmbench padded vs the TF1 yardstick (same work)", "lmbench:padded", "tf1"),
    ("lmbench unrolled vs the TF1 yardstick (same work)", "lmbench:unrolled", "tf1"),
    ("before padded vs the TF1 yardstick (same work)", "before:padded", "tf1"),
]
CANDIDATES = ("keras-mask", "keras", "keras-unroll", "unroll", "unroll-sparse", "unroll-numpy", "unroll-var",
              "keras-mask-nosig")

p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
p.add_argument("--sides", nargs="+", required=True, help="lmbench:<layout>, before:<layout>, tf1, tf1-sparse, tf1-inter2, "
               f"cand:<{'|'.join(CANDIDATES)}>; the first is the reference")
p.add_argument("--preset", default="small")
p.add_argument("--steps", type=int, default=20, help="stream windows per round and side")
p.add_argument("--rounds", type=int, default=20)
p.add_argument("--warmup", type=int, default=3, help="untimed rounds")
p.add_argument("--threads", type=int, default=2, help="intra-op threads (lmbench's thread budget)")
p.add_argument("--inter-op", type=int, default=1, help="inter-op threads (lmbench uses 1)")
p.add_argument("--before", help="another version of backends/tensorflow.py, for before:<layout>")
p.add_argument("--process-ab", nargs=2, metavar=("ENV_A", "ENV_B"),
               help="compare two environments (KEY=VALUE[,KEY=VALUE]) in child processes instead")
p.add_argument("--processes", type=int, default=6, help="child processes per environment (--process-ab)")
args = p.parse_args()
for s in args.sides:
    kind, _, what = s.partition(":")
    ok = (s in ("tf1", "tf1-sparse", "tf1-inter2") or (kind in ("lmbench", "before") and what)
          or (kind == "cand" and what in CANDIDATES))
    if not ok:
        p.error(f"unknown side {s!r}: use lmbench:<layout>, before:<layout>, tf1, tf1-sparse, tf1-inter2 or "
                f"cand:<{'|'.join(CANDIDATES)}>")
if any(s.startswith("before:") for s in args.sides) and not args.before:
    p.error("a before:<layout> side needs --before PATH (e.g. git show REV:backends/tensorflow.py > /tmp/tf_before.py)")


def header():
    return {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "cpu_model": cpu_model(), "load_average": os.getloadavg(), "preset": args.preset,
            "threads": args.threads, "inter_op": args.inter_op}


def percentiles(xs):
    d = statistics.quantiles(xs, n=10) if len(xs) > 1 else [xs[0]] * 9
    return [round(d[0], 4), round(d[-1], 4)]


if args.process_ab:  # the parent: children alternate between two environments
    envs = [dict(kv.split("=", 1) for kv in e.split(",")) for e in args.process_ab]
    child = [sys.executable, __file__, "--sides", *args.sides, "--preset", args.preset, "--steps", str(args.steps),
             "--rounds", str(args.rounds), "--warmup", str(args.warmup), "--threads", str(args.threads)]
    print(json.dumps({**header(), "process_ab": args.process_ab, "sides": args.sides}), flush=True)
    rates = {side: {0: [], 1: []} for side in args.sides}
    for r in range(args.processes):
        for i in (0, 1)[::1 if r % 2 == 0 else -1]:
            env = dict(envs[i])  # INTER_OP=N is this script's --inter-op, the rest the environment
            out = subprocess.run(child + ["--inter-op", env.pop("INTER_OP", str(args.inter_op))],
                                 env={**os.environ, **env}, capture_output=True, text=True)
            if out.returncode:
                raise SystemExit(out.stderr[-3000:])
            result = json.loads(out.stdout.strip().splitlines()[-1])
            for side in args.sides:
                rates[side][i].append(1e3 / result["sides"][side]["ms_per_step"])
    for side, r in rates.items():
        ratios = [b / a for a, b in zip(r[0], r[1])]
        print(json.dumps({"side": side, "A": args.process_ab[0], "B": args.process_ab[1],
                          "A_steps_per_s": [round(x, 3) for x in r[0]], "B_steps_per_s": [round(x, 3) for x in r[1]],
                          "B_over_A_median": round(statistics.median(ratios), 4), "p10_p90": percentiles(ratios)}))
    print(json.dumps({"load_average_after": os.getloadavg()}))
    raise SystemExit(0)

set_thread_env(args.threads, "tensorflow")  # before TensorFlow is imported
os.environ["TF_NUM_INTEROP_THREADS"] = str(args.inter_op)
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

tf.config.threading.set_intra_op_parallelism_threads(args.threads)
tf.config.threading.set_inter_op_parallelism_threads(args.inter_op)
tf.constant(0)  # the runtime starts here: the backends' own thread settings no longer apply

from lmbench.backend import load_backend  # noqa: E402

cfg = make_config(args.preset, mode="stream")
windows = make_batches(load_corpus(download_ptb(), splits=("train",))["train"], "stream", cfg.batch_size,
                       cfg.num_steps)[:args.steps]
weights = init_weights(cfg)
B, T, H, L, V = cfg.batch_size, cfg.num_steps, cfg.hidden, cfg.layers, cfg.vocab_size


def backend_module(kind):
    if kind == "lmbench":
        return sys.modules[load_backend("tensorflow").__module__]
    spec = importlib.util.spec_from_file_location("tf_before", args.before)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


class Side:
    """train(batch) -> loss (a tensor or a float); traces() counts tf.function traces."""

    def __init__(self, train, traces=lambda: None, reset=lambda: None):
        self.train, self.traces, self.reset = train, traces, reset


def lmbench_side(kind, layout):
    be = backend_module(kind).Backend(cfg, layout, "cpu", args.threads)
    be.set_weights(weights)
    steps = be._train.values() if isinstance(be._train, dict) else [be._train]  # this branch: {padded: step}
    return Side(lambda b: be.train_step(b, cfg.lr), lambda: sum(f.experimental_get_tracing_count() for f in steps),
                be.reset_state)


# -- the TF1-style yardstick: benchmarks/public_tf1_ptb.py's graph -----------------------
def tf1_side(sparse, inter_op=None):
    """The TF1 program's graph and Session (public_tf1_ptb.tf1_program) on the same thread
    pools as the eager sides and lmbench; inter_op given: a pool of the session's own."""
    from public_tf1_ptb import tf1_program

    train, reset = tf1_program(cfg, weights, args.threads, inter_op or args.inter_op, sparse,
                               own_pool=inter_op is not None)
    return Side(train, reset=reset)


# -- candidate formulations inside the backend's step -----------------------------------
class KerasNoMask:
    """KerasLM's forward without the mask (and, with unroll, Keras's own static unroll)."""

    def __init__(self, keras_lm, unroll):
        self.m, self.variables, self.copies = keras_lm, keras_lm.variables, keras_lm.copies
        if unroll:
            for lstm in keras_lm.lstms:
                lstm.unroll = True

    def __call__(self, inputs, targets, lengths, h0, c0, training, masked=False):
        m = self.m
        x = m.embedding(inputs)
        hs, cs = [], []
        for layer, lstm in enumerate(m.lstms):
            x, h, c = lstm(x, initial_state=[h0[layer], c0[layer]], training=training)
            hs.append(h)
            cs.append(c)
        logits = m.decoder(tf.reshape(x, [-1, H])) + m.decoder_bias
        loss = tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.reshape(targets, [-1]),
                                                                            logits=logits))
        return loss, tf.stack(hs), tf.stack(cs)


def sparse_gradients(be):
    """be._gradients with the embedding's IndexedSlices kept (repeats summed, as the dense
    one sums them) and applied by scatter_sub instead of a dense [V, H] update."""
    def gradients(tape, objective):
        grads = tape.gradient(objective, be.model.variables)
        e = grads[0]
        uniq, idx = tf.unique(e.indices)
        grads[0] = tf.IndexedSlices(tf.math.unsorted_segment_sum(e.values, idx, tf.size(uniq)), uniq, e.dense_shape)
        return grads, None

    def update(inputs, targets, lengths, h0, c0, lr, sequences, all_reduce):
        variables = be.model.variables
        with tf.GradientTape() as tape:
            loss, h, c = be.model(inputs, targets, lengths, h0, c0, training=True)
            objective = loss / sequences
        grads, _ = gradients(tape, objective)
        norm = tf.linalg.global_norm([g.values if isinstance(g, tf.IndexedSlices) else g
                                      for g, k in zip(grads, be.model.copies) for _ in range(k)])
        step = lr * (cfg.clip / tf.maximum(norm, cfg.clip))
        for v, g, k in zip(variables, grads, be.model.copies):
            if isinstance(g, tf.IndexedSlices):
                v.scatter_sub(tf.IndexedSlices(g.values * (k * step), g.indices))
            else:
                v.assign_sub((k * step) * g)
        return loss, h, c
    return update


def candidate_side(name):
    mod = backend_module("lmbench")
    be = mod.Backend(cfg, "unrolled" if name.startswith("unroll") else "padded", "cpu", args.threads)
    be.set_weights(weights)
    if name in ("keras", "keras-unroll"):
        be.model = KerasNoMask(be.model, unroll=name == "keras-unroll")
    # the backend's step: keras-mask with the mask (as the padded layout ran every batch
    # before this branch), the others' models take none
    update = sparse_gradients(be) if name.endswith("sparse") else functools.partial(
        be._update, masked=name.startswith("keras-mask"))
    ids = tf.TensorSpec([None, T] if name.startswith(("unroll", "keras-unroll")) else [None, None], tf.int64)
    state_spec = tf.TensorSpec([L, None, H], tf.float32)
    scalar = tf.TensorSpec([], tf.float32)
    lr, seqs = tf.constant(cfg.lr, tf.float32), tf.constant(B, tf.float32)

    if name == "unroll-var":  # the state lives in variables on the device, updated in the step
        hv, cv = tf.Variable(tf.zeros([L, B, H])), tf.Variable(tf.zeros([L, B, H]))

        @tf.function(input_signature=[ids, ids, tf.TensorSpec([None], tf.int64)], autograph=False)
        def step(inputs, targets, lengths):
            loss, h, c = update(inputs, targets, lengths, hv.read_value(), cv.read_value(), lr, seqs,
                                all_reduce=False)
            hv.assign(h)
            cv.assign(c)
            return loss

        def train(b):
            return step(tf.constant(b.inputs), tf.constant(b.targets), tf.constant(b.lengths))

        def reset():
            hv.assign(tf.zeros_like(hv))
            cv.assign(tf.zeros_like(cv))
        return Side(train, step.experimental_get_tracing_count, reset)

    sig = None if name == "keras-mask-nosig" else [ids, ids, tf.TensorSpec([None], tf.int64), state_spec,
                                                    state_spec, scalar, scalar]
    step = tf.function(lambda *a: update(*a, all_reduce=False), input_signature=sig, autograph=False)
    zeros = tf.zeros([L, B, H])
    state = {}

    def train(b):
        h0, c0 = state.get("hc", (zeros, zeros))
        if name == "unroll-numpy":
            h0, c0 = tf.constant(np.asarray(h0)), tf.constant(np.asarray(c0))
        inputs, targets, lengths = (b.inputs, b.targets, b.lengths) if sig is None else (
            tf.constant(b.inputs), tf.constant(b.targets), tf.constant(b.lengths))
        loss, h, c = step(inputs, targets, lengths, h0, c0, lr, seqs)
        state["hc"] = (h.numpy(), c.numpy()) if name == "unroll-numpy" else (h, c)
        return loss
    return Side(train, step.experimental_get_tracing_count, state.clear)


def make_side(s):
    kind, _, what = s.partition(":")
    if kind in ("lmbench", "before"):
        return lmbench_side(kind, what)
    if kind == "cand":
        return candidate_side(what)
    return tf1_side(sparse=s == "tf1-sparse", inter_op=2 if s == "tf1-inter2" else None)


sides = {s: make_side(s) for s in args.sides}
first_loss = {}
for name, side in sides.items():  # the first window from the initial weights: the same function?
    first_loss[name] = float(side.train(windows[0]))
    side.reset()


def run_round(side):
    side.reset()
    t0, c0 = time.perf_counter(), time.process_time()
    losses = [side.train(b) for b in windows]
    float(tf.reduce_sum(tf.stack([tf.convert_to_tensor(x) for x in losses])))  # read back once, as the harness
    return time.perf_counter() - t0, time.process_time() - c0


for _ in range(args.warmup):
    for side in sides.values():
        run_round(side)
load_before = os.getloadavg()
seconds = {name: [] for name in sides}
cpu = {name: [] for name in sides}  # CPU seconds of this process (all threads): less swayed by others' load
for r in range(args.rounds):
    for name in list(sides)[::1 if r % 2 == 0 else -1]:
        wall, used = run_round(sides[name])
        seconds[name].append(wall)
        cpu[name].append(used)
ref = args.sides[0]
out = {**header(), "load_average_before": load_before, "steps_per_round": args.steps, "rounds": args.rounds,
       "reference": ref, "sides": {}}
for name in sides:
    ratios = [a / b for a, b in zip(seconds[ref], seconds[name])]  # speed of `name` / the reference's
    cpu_ratios = [a / b for a, b in zip(cpu[ref], cpu[name])]
    out["sides"][name] = {"ms_per_step": round(statistics.median(seconds[name]) / args.steps * 1e3, 3),
                          "speed_vs_reference_median": round(statistics.median(ratios), 4),
                          "p10_p90": percentiles(ratios),
                          "cpu_ms_per_step": round(statistics.median(cpu[name]) / args.steps * 1e3, 3),
                          "cpu_speed_vs_reference_median": round(statistics.median(cpu_ratios), 4),
                          "cpu_p10_p90": percentiles(cpu_ratios), "traces": sides[name].traces(),
                          "first_window_loss": round(first_loss[name], 4)}
out["causes"] = []
for cause, with_, without in CAUSES:
    if with_ in sides and without in sides:
        wall = [a / b for a, b in zip(seconds[without], seconds[with_])]
        used = [a / b for a, b in zip(cpu[without], cpu[with_])]
        out["causes"].append({"cause": cause, "with": with_, "without": without,
                              "speed_ratio_median": round(statistics.median(wall), 4), "p10_p90": percentiles(wall),
                              "cpu_time_ratio_median": round(statistics.median(used), 4),
                              "cpu_p10_p90": percentiles(used)})
out["rounds_wall_s"] = {k: [round(x, 4) for x in v] for k, v in seconds.items()}
out["rounds_cpu_s"] = {k: [round(x, 4) for x in v] for k, v in cpu.items()}
print(f"{'side':<24}{'ms/step':>9}{'speed vs ' + ref:>28}{'p10-p90':>14}{'CPU-time speed':>16}{'p10-p90':>14}"
      f"{'traces':>7}{'1st loss':>11}")
for name, s in out["sides"].items():
    print(f"{name:<24}{s['ms_per_step']:>9.2f}{s['speed_vs_reference_median']:>28.3f}"
          f"{s['p10_p90'][0]:>8.3f}-{s['p10_p90'][1]:.3f}{s['cpu_speed_vs_reference_median']:>16.3f}"
          f"{s['cpu_p10_p90'][0]:>8.3f}-{s['cpu_p10_p90'][1]:.3f}{str(s['traces']):>7}{s['first_window_loss']:>11.3f}")
if out["causes"]:
    print(f"\n{'cause (speed with / without, per round)':<62}{'wall':>7}{'p10-p90':>14}{'CPU time':>9}{'p10-p90':>14}")
    for c in out["causes"]:
        print(f"{c['cause']:<62}{c['speed_ratio_median']:>7.3f}{c['p10_p90'][0]:>8.3f}-{c['p10_p90'][1]:.3f}"
              f"{c['cpu_time_ratio_median']:>9.3f}{c['cpu_p10_p90'][0]:>8.3f}-{c['cpu_p10_p90'][1]:.3f}")
print(json.dumps(out))
