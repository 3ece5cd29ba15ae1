"""PaddlePaddle's own public PTB language model example, on lmbench's stream-mode work.

Follows PaddlePaddle/models, `dygraph/ptb_lm/ptb_dy.py` (the dygraph PTB LM, Zaremba et
al.'s small/medium/large configs; removed from the repository in its later history, read
at commit 553c279b5), written here from that program's description and structure, not
copied, in Paddle 3's dygraph API (paddle.nn.Layer etc. for the fluid.dygraph names):

kept from it
- PtbModel: an Embedding (is_sparse=False: a dense gradient), SimpleLSTMRNN, then a
  projection by its own `softmax_weight` [H, V] (matmul) plus `softmax_bias`, and
  softmax_with_cross_entropy against labels [B, T, 1]; the loss reshaped to [B, T],
  reduce_mean over the batch, reduce_sum over time (= summed NLL / B: lmbench's objective);
- SimpleLSTMRNN, the example's own LSTM: per layer one weight [2H, 4H] on
  concat([x_t, h_{t-1}]) and one bias [4H], gates split as (i, j, f, o) with j the cell
  candidate; a Python loop over the window's time steps, the layers inside it, each step
  concat -> matmul -> add -> split -> sigmoid/tanh; the step outputs concatenated and
  reshaped to [B, T, H], the final (h, c) of every layer concatenated, reshaped and
  transposed to [layers, B, H];
- the loop: the final (h, c) carried to the next window `.detach()`ed, `loss.numpy()` read
  every window, `loss.backward()`, `sgd.minimize(loss)`, `model.clear_gradients()`, with
  SGD whose grad_clip is the global-norm clip (fluid's GradientClipByGlobalNorm, now
  paddle.nn.ClipGradByGlobalNorm);
- the small config the example already has: hidden 200, 2 layers, 20 steps, batch 20,
  init scale 0.1, lr 1, max_grad_norm 5, dropout 0 (the example skips its dropout ops then).

changed to do exactly the work of `lmbench run --backend paddle --mode stream --preset small`
- data: lmbench's stream batches of PTB (lmbench.data.corpus) instead of the example's
  reader and DataLoader (the same layout: B contiguous streams cut into num_steps windows);
- initial weights: lmbench.weights.init_weights mapped onto the example's parameters
  (embedding; the weight [w_ih.T; w_hh.T] with its gate columns reordered from lmbench's
  i, f, g, o to the example's i, j, f, o; bias b_ih + b_hh likewise; softmax_weight =
  decoder.w.T, softmax_bias = decoder.b); the example draws its own;
- no lr schedule (piecewise_decay would keep lr 1 for the first epochs anyway): a float lr;
- paddle.set_device("cpu") and paddle.base.core.set_num_threads(--threads), as lmbench's
  paddle backend sets them, with OMP/MKL variables set before the import.

What still differs from lmbench's step, by design (it is the example's way):
- lmbench's native paddle layout `lod` runs paddle.nn.LSTM's fused rnn op (once per run of
  equal batch size: once per stream window); the example's LSTM is a Python loop of
  elementary ops, 20 steps x 2 layers of them per window, forward and backward in dygraph;
- one bias per layer (lmbench keeps b_ih and b_hh, whose gradients are equal): lmbench's
  global norm counts the bias gradient twice and moves the sum of the two biases by
  2 lr g where the example moves its one bias by lr g. The first window's loss is the
  same; later windows drift apart by rounding-level amounts and this;
- the decoder is a matmul by a [H, V] parameter plus a bias, lmbench's an nn.Linear (the
  same [H, V] weight and matmul underneath).

--rnn nn.LSTM swaps SimpleLSTMRNN for paddle.nn.LSTM (the fused rnn op, two biases as in
lmbench), the rest of the example unchanged: not the public program, a variant of it.

Prints one JSON line: {"program", "framework", "train_words_per_sec", "steps", "tokens",
"seconds", "first_loss" (the first window's summed NLL / B), "first_nll_sum", "threads"}.

    python benchmarks/public_paddle_ptb.py --steps 200 --warmup 20 --threads 2
"""
import json
import time

import numpy as np

from public_common import parse_args, stream_work

PROGRAM = "PaddlePaddle/models dygraph/ptb_lm/ptb_dy.py (PtbModel + SimpleLSTMRNN)"

args = parse_args(__doc__, "paddle", add=lambda p: p.add_argument(
    "--rnn", choices=("SimpleLSTMRNN", "nn.LSTM"), default="SimpleLSTMRNN",
    help="the example's own LSTM (default) or paddle.nn.LSTM in its place (a variant)"))  # before paddle is imported

import paddle  # noqa: E402
import paddle.nn.functional as F  # noqa: E402
from paddle import nn  # noqa: E402

paddle.base.core.set_num_threads(args.threads)  # what lmbench's backend calls: no public setter
paddle.set_device("cpu")

# lmbench's gate blocks are i, f, g, o; the example splits its gates as i, j (= g), f, o
EXAMPLE_GATES = (0, 2, 1, 3)


class SimpleLSTMRNN(nn.Layer):
    """The example's LSTM: one [2H, 4H] weight per layer on concat([x, h]), looped over time."""

    def __init__(self, hidden_size, num_steps, num_layers, init_scale, dropout=None):
        super().__init__()
        self._hidden_size, self._num_layers, self._num_steps = hidden_size, num_layers, num_steps
        self._dropout = dropout
        init = nn.initializer.Uniform(-init_scale, init_scale)
        self.weight_1_arr, self.bias_arr = [], []
        for i in range(num_layers):
            w = self.create_parameter([hidden_size * 2, hidden_size * 4], dtype="float32", default_initializer=init)
            self.weight_1_arr.append(self.add_parameter(f"w_{i}", w))
            b = self.create_parameter([hidden_size * 4], dtype="float32",
                                      default_initializer=nn.initializer.Constant(0.0))
            self.bias_arr.append(self.add_parameter(f"b_{i}", b))

    def forward(self, input_embedding, init_hidden, init_cell):
        hidden_array = [init_hidden[i] for i in range(self._num_layers)]
        cell_array = [init_cell[i] for i in range(self._num_layers)]
        res = []
        for index in range(self._num_steps):
            step_input = input_embedding[:, index, :]
            for k in range(self._num_layers):
                nn_in = paddle.concat([step_input, hidden_array[k]], 1)
                gate_input = paddle.add(paddle.matmul(nn_in, self.weight_1_arr[k]), self.bias_arr[k])
                i, j, f, o = paddle.split(gate_input, num_or_sections=4, axis=-1)
                c = cell_array[k] * F.sigmoid(f) + F.sigmoid(i) * paddle.tanh(j)
                m = paddle.tanh(c) * F.sigmoid(o)
                hidden_array[k], cell_array[k] = m, c
                step_input = m
                if self._dropout is not None and self._dropout > 0.0:
                    step_input = F.dropout(step_input, p=self._dropout, mode="upscale_in_train")
            res.append(step_input)
        real_res = paddle.reshape(paddle.concat(res, 1), [-1, self._num_steps, self._hidden_size])
        last_hidden = paddle.transpose(
            paddle.reshape(paddle.concat(hidden_array, 1), [-1, self._num_layers, self._hidden_size]), [1, 0, 2])
        last_cell = paddle.transpose(
            paddle.reshape(paddle.concat(cell_array, 1), [-1, self._num_layers, self._hidden_size]), [1, 0, 2])
        return real_res, last_hidden, last_cell


class FusedLSTM(nn.Layer):
    """--rnn nn.LSTM: paddle.nn.LSTM behind SimpleLSTMRNN's interface."""

    def __init__(self, hidden_size, num_layers, dropout):
        super().__init__()
        self.lstm = nn.LSTM(hidden_size, hidden_size, num_layers, dropout=dropout or 0.0)

    def forward(self, input_embedding, init_hidden, init_cell):
        out, (h, c) = self.lstm(input_embedding, (init_hidden, init_cell))
        return out, h, c


class PtbModel(nn.Layer):
    def __init__(self, hidden_size, vocab_size, num_layers, num_steps, init_scale, dropout=None, rnn="SimpleLSTMRNN"):
        super().__init__()
        self.hidden_size, self.vocab_size = hidden_size, vocab_size
        self.num_layers, self.num_steps, self.dropout = num_layers, num_steps, dropout
        init = nn.initializer.Uniform(-init_scale, init_scale)
        self.simple_lstm_rnn = (SimpleLSTMRNN(hidden_size, num_steps, num_layers, init_scale, dropout)
                                if rnn == "SimpleLSTMRNN" else FusedLSTM(hidden_size, num_layers, dropout))
        self.embedding = nn.Embedding(vocab_size, hidden_size, sparse=False, weight_attr=paddle.ParamAttr(initializer=init))
        self.softmax_weight = self.create_parameter([hidden_size, vocab_size], dtype="float32", default_initializer=init)
        self.softmax_bias = self.create_parameter([vocab_size], dtype="float32", default_initializer=init)

    def forward(self, input, label, init_hidden, init_cell):
        init_h = paddle.reshape(init_hidden, [self.num_layers, -1, self.hidden_size])
        init_c = paddle.reshape(init_cell, [self.num_layers, -1, self.hidden_size])
        x_emb = paddle.reshape(self.embedding(input), [-1, self.num_steps, self.hidden_size])
        if self.dropout is not None and self.dropout > 0.0:
            x_emb = F.dropout(x_emb, p=self.dropout, mode="upscale_in_train")
        rnn_out, last_hidden, last_cell = self.simple_lstm_rnn(x_emb, init_h, init_c)
        projection = paddle.add(paddle.matmul(rnn_out, self.softmax_weight), self.softmax_bias)
        loss = F.softmax_with_cross_entropy(logits=projection, label=label, soft_label=False)
        loss = paddle.reshape(loss, [-1, self.num_steps])
        loss = paddle.sum(paddle.mean(loss, axis=[0]))  # mean over the batch, summed over time
        return loss, last_hidden, last_cell


def load_canonical(model, w, cfg):
    H = cfg.hidden
    model.embedding.weight.set_value(w["embedding"])
    model.softmax_weight.set_value(np.ascontiguousarray(w["decoder.w"].T))
    model.softmax_bias.set_value(w["decoder.b"])
    rnn = model.simple_lstm_rnn
    for l in range(cfg.layers):
        if isinstance(rnn, FusedLSTM):  # paddle.nn.LSTM: the canonical layout itself
            for ours, theirs in (("w_ih", "weight_ih"), ("w_hh", "weight_hh"), ("b_ih", "bias_ih"),
                                 ("b_hh", "bias_hh")):
                getattr(rnn.lstm, f"{theirs}_l{l}").set_value(w[f"lstm{l}.{ours}"])
            continue

        def example_order(a):  # [..., 4H] in i, f, g, o -> i, j (= g), f, o
            return np.concatenate([a[..., g * H:(g + 1) * H] for g in EXAMPLE_GATES], axis=-1)

        weight = np.concatenate([w[f"lstm{l}.w_ih"].T, w[f"lstm{l}.w_hh"].T])  # [2H, 4H] on concat([x, h])
        rnn.weight_1_arr[l].set_value(np.ascontiguousarray(example_order(weight)))
        rnn.bias_arr[l].set_value(example_order(w[f"lstm{l}.b_ih"] + w[f"lstm{l}.b_hh"]))
    if isinstance(rnn, FusedLSTM):
        rnn.lstm.flatten_parameters()


def main():
    cfg, batches, weights = stream_work(args.warmup + args.steps)
    B, T, L, H = cfg.batch_size, cfg.num_steps, cfg.layers, cfg.hidden
    ptb_model = PtbModel(H, cfg.vocab_size, L, T, cfg.init_scale, cfg.dropout, args.rnn)
    load_canonical(ptb_model, weights, cfg)
    sgd = paddle.optimizer.SGD(learning_rate=cfg.lr, parameters=ptb_model.parameters(),
                               grad_clip=nn.ClipGradByGlobalNorm(cfg.clip))

    ptb_model.train()
    init_hidden = paddle.to_tensor(np.zeros((L, B, H), dtype="float32"))
    init_cell = paddle.to_tensor(np.zeros((L, B, H), dtype="float32"))

    def train_window(b):
        nonlocal init_hidden, init_cell
        x = paddle.to_tensor(b.inputs.reshape(-1, T, 1))  # the example's reader shapes
        y = paddle.to_tensor(b.targets.reshape(-1, T, 1))
        dy_loss, last_hidden, last_cell = ptb_model(x, y, init_hidden, init_cell)
        init_hidden, init_cell = last_hidden.detach(), last_cell.detach()
        out_loss = dy_loss.numpy()
        dy_loss.backward()
        sgd.minimize(dy_loss)
        ptb_model.clear_gradients()
        return float(out_loss)

    losses = [train_window(b) for b in batches[:args.warmup]]
    t0 = time.perf_counter()
    losses += [train_window(b) for b in batches[args.warmup:]]
    seconds = time.perf_counter() - t0
    tokens = sum(b.num_targets for b in batches[args.warmup:])
    program = PROGRAM if args.rnn == "SimpleLSTMRNN" else PROGRAM.replace("SimpleLSTMRNN", "paddle.nn.LSTM (variant)")
    out = {"program": program, "framework": "paddle", "framework_version": paddle.__version__,
           "train_words_per_sec": tokens / seconds, "steps": args.steps, "tokens": tokens, "seconds": seconds,
           "first_loss": losses[0], "first_nll_sum": losses[0] * B, "threads": args.threads}
    print(json.dumps({**out, "losses": losses} if args.losses else out))


if __name__ == "__main__":
    main()
