"""PaddlePaddle: non-padded LoD input (flat real tokens + offsets), plus padded layouts.

Layouts
- lod:        what Fluid's dynamic_lstm did: no padded position is computed anywhere. The
              batch arrives as its concatenated real tokens and offsets (the LoD view);
              sequences are ordered by length and the recurrence runs over a batch that
              shrinks as sequences end (Fluid's "sequence2batch", PyTorch's PackedSequence):

                  lengths of rows b0..b3 = 2 5 1 3, ordered by length: b1 b3 b0 b2
                          t = 0 1 2 3 4
                     b1       x x x x x     [0, 1): 4 rows x 1 step
                     b3       x x x         [1, 2): 3 rows x 1 step
                     b0       x x           [2, 3): 2 rows x 1 step
                     b2       x             [3, 5): 1 row  x 2 steps

              Between two consecutive lengths the batch is constant, so each such segment
              is one call of the fused multi-layer rnn op on rows [:bs] with the (h, c) the
              previous segment ended with (layer l at time t needs only layer l-1 at t and
              layer l at t-1, so cutting time into segments changes nothing). Embedding,
              LSTM, decoder and loss see exactly the batch's real tokens.
- lod-padded: the earlier scheme: only real tokens are embedded, scattered by the offsets
              into a [B, T, H] buffer for nn.LSTM(sequence_length=lengths) and gathered
              back for decoder and loss. On the CPU the rnn kernel still runs every time
              step for every row and masks (sequence_length does not shrink the work).
- padded:     the same model on the padded [B, T] batch; decoder and a masked loss on
              every position, the work a padded TensorFlow batch does.
paddle.nn.LSTM runs the fused `rnn` op (not a Python loop of LSTMCell) whenever its
parameters are the standard four per layer (`could_use_cudnn`; custom bias/weight attrs set
to False, or ROCm with sequence_length, fall back to the loop): cuDNN on GPU, on the CPU
the op's phi kernel (per layer one input GEMM, then per step a BLAS GEMM + LSTM unit).
The op drops out between layers itself; is_test (eval mode) keeps nothing for backward.

Variants (DECLINED_VARIANTS: what is refused):
- --compile: paddle.jit.to_static on the model (SOT bytecode translation to a static PIR
  program). CINN compiles it only on CUDA builds that have CINN (to_static checks that
  too); otherwise the program's PHI kernels run in the static-graph executor, the fused
  rnn op included. The lod layout is skipped: its schedule is Python control flow over
  each batch's lengths.
- --precision bf16 / fp16: Paddle AMP (auto_cast O1, GradScaler for fp16) on GPU only,
  unverified here; the rnn op has float32/float64 kernels only, so the LSTM stays float32
  and the decoder's matmul is what runs in low precision. On the CPU AMP is a no-op.
"""
from __future__ import annotations

import contextlib

import numpy as np
import paddle
import paddle.nn.functional as F
from paddle import nn

from paddle.jit.sot.utils.envs import ENV_SOT_COLLECT_INFO
from paddle.jit.sot.utils.info_collector import InfoCollector, InfoType

from lmbench.backend import Backend as BaseBackend, BackendUnavailable

LAYOUTS = ("lod", "lod-padded", "padded")
# does the LSTM run over padded positions (lmbench.backend)? lod never forms one; the padded
# layouts pass sequence_length, which the CPU rnn kernel only masks with (every row, all T
# steps) while cuDNN skips the padded steps (read from Paddle's rnn kernels, not measured here)
# --compile: to_static translates the model (forward, and the backward derived from it);
# gradient clipping and the SGD update stay eager
COMPILE_SCOPE = "whole model"
COMPUTES_PADDING = {"lod": {"cpu": False, "cuda": False}, "lod-padded": {"cpu": True, "cuda": False},
                    "padded": {"cpu": True, "cuda": False}}
# refused on any machine, before Paddle is imported (lmbench.backend.declined)
DECLINED_VARIANTS = [
    ({"precision": ("bf16", "fp16"), "device": "cpu"},
     "paddle: --precision {precision} has no effect on the CPU: paddle.amp.auto_cast is disabled off "
     "CUDA/XPU ('amp_guard can only be enabled on CUDAPlace ... so it makes no effect') and the fused rnn "
     "op has CPU kernels for float32 and float64 only"),
    ({"compile": True, "layout": "lod"},
     "paddle: --compile on the lod layout: its shrinking-batch schedule is a Python loop over each batch's "
     "own length segments, so to_static would translate a new program for nearly every batch (and SOT "
     "breaks the graph at the state reordering, running the rest eagerly)"),
]
# set before the import (lmbench.run.worker.set_thread_env); OMP/MKL threads are set for every framework
THREAD_ENV = {"GLOG_minloglevel": "2"}
# --workers N: paddle.distributed.launch starts the workers ("{python}" is the command it runs;
# lmbench.run.launch appends "lmbench.run.worker ARGS"); paddle.DataParallel, whose reducer averages
# the gradients before backward() returns; gloo on the CPU (the launcher sets
# PADDLE_DISTRI_BACKEND=gloo on a CPU build), NCCL on GPUs. --max_restart=0: a failed
# worker fails the run instead of restarting the job.
DATA_PARALLEL = {
    "launcher": ["-m", "paddle.distributed.launch", "--nnodes=1", "--nproc_per_node={workers}",
                 "--max_restart=0", "--log_dir={log_dir}", "{python}", "-m"],
    "launcher_nodes": ["-m", "paddle.distributed.launch", "--master={rendezvous}", "--nnodes={nodes}",
                       "--rank={node_rank}", "--nproc_per_node={workers}", "--max_restart=0",
                       "--log_dir={log_dir}", "{python}", "-m"],
    "engine": "paddle.DataParallel"}


def length_segments(lengths: np.ndarray, offsets: np.ndarray):
    """The lod layout's schedule, in numpy: rows ordered by length (longest first, stable),
    and for every run of time steps over which the number of unfinished rows is constant,
    (rows, first step, steps). Also the flat index of every token in segment order: segment
    by segment, row-major over [rows, steps]."""
    order = np.argsort(-lengths, kind="stable")
    ends = sorted(set(lengths.tolist()))  # the time steps at which some rows finish
    segments, flat, t = [], [], 0
    for end in ends:
        rows = int(np.sum(lengths >= end))
        segments.append((rows, t, end - t))
        flat.append((offsets[order[:rows], None] + np.arange(t, end)[None, :]).reshape(-1))
        t = end
    return order, segments, np.concatenate(flat)


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
        """Summed NLL over real targets and the final (h, c) (None where not kept)."""
        if layout == "lod":
            return self._forward_lod(batch, state)
        B, T, H = batch["B"], batch["T"], self.hidden
        lengths = batch["lengths"]
        if layout == "lod-padded":
            # embed the N real tokens, scatter them by offset into [B, T, H] zeros the LSTM
            # masks past `lengths`, gather the N outputs back
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
        return loss, state

    def _forward_lod(self, batch, state):
        """The shrinking batch (see the module docstring); tokens in segment order."""
        x = self.drop(self.embedding(batch["seg_inputs"]))  # [N, H], real tokens only
        order, segments, H = batch["order"], batch["segments"], self.hidden
        if state is not None:  # carried (h, c) in batch order -> length order
            state = tuple(paddle.index_select(s, order, axis=1) for s in state)
        outputs, done, start = [], [], 0  # done: (h, c) of rows that finished, last rows first
        for k, (rows, _, steps) in enumerate(segments):
            xk = x[start:start + rows * steps].reshape([rows, steps, H])
            start += rows * steps
            if state is not None:
                state = tuple(s[:, :rows] for s in state)
            out, state = self.lstm(xk, state)
            outputs.append(out.reshape([rows * steps, H]))
            after = segments[k + 1][0] if k + 1 < len(segments) else 0
            if batch["keep_final"] and after < rows:
                done.append(tuple(s[:, after:rows] for s in state))
        hidden = paddle.concat(outputs) if len(outputs) > 1 else outputs[0]
        logits = self.decoder(self.drop(hidden))
        loss = F.cross_entropy(logits, batch["seg_targets"], reduction="sum")
        final = None
        if batch["keep_final"]:  # length order -> batch order
            final = tuple(paddle.index_select(paddle.concat([d[i] for d in reversed(done)], axis=1),
                                              batch["unorder"], axis=1) for i in range(2))
        return loss, final


class Backend(BaseBackend):
    name = "paddle"

    def __init__(self, cfg, layout, device, threads, **options):
        super().__init__(cfg, layout, device, threads, **options)
        if device == "cuda" and not self.cuda_available():
            raise BackendUnavailable("paddle: --device cuda, but this paddle build sees no CUDA device "
                                     "(install paddlepaddle-gpu)")
        # OMP_NUM_THREADS / MKL_NUM_THREADS are set before the import; Paddle has no public
        # thread setter, core.set_num_threads is what FLAGS_paddle_num_threads feeds at init
        # (MKL_Set_Num_Threads + omp_set_num_threads, or openblas_set_num_threads).
        paddle.base.core.set_num_threads(threads)
        # with workers, one GPU per worker: the one the launcher selected (unverified: no GPU here)
        if device == "cuda":
            paddle.set_device(f"gpu:{paddle.distributed.ParallelEnv().device_id}" if self.workers > 1 else "gpu:0")
        else:
            paddle.set_device("cpu")
        if device == "cuda":
            # true float32: Paddle 3.3 lets cuDNN (so the LSTM) use TF32 by default
            paddle.set_flags({"FLAGS_cudnn_allow_tf32": False, "FLAGS_cublas_allow_tf32": False})
        self.model = LSTMLM(cfg.vocab_size, cfg.hidden, cfg.layers, cfg.dropout)
        # the module a train step runs: with workers, DataParallel (broadcasts rank 0's
        # parameters at construction; set_weights gives every rank the same ones anyway)
        self.trained = self.model if self.workers == 1 else paddle.DataParallel(self.model)
        self.params = self.model.parameters()
        self.cinn = self.compile and paddle.is_compiled_with_cinn() and device == "cuda"
        if self.compile:
            # SOT keeps per-code translation counts and graph-break reasons when asked to
            ENV_SOT_COLLECT_INFO.set({"compile_count": [], "breakgraph_reason": []})
            self.model = paddle.jit.to_static(self.model, backend="CINN" if self.cinn else None)
        low = {"bf16": "bfloat16", "fp16": "float16"}.get(self.precision)
        self.autocast = (lambda: paddle.amp.auto_cast(level="O1", dtype=low)) if low else contextlib.nullcontext
        self.scaler = paddle.amp.GradScaler(init_loss_scaling=2.0 ** 15) if self.precision == "fp16" else None
        # Gradients are clipped by hand (the global norm, as ClipGradByGlobalNorm computes
        # it) because that norm is also the divergence guard: Paddle's CPU softmax maps NaN
        # logits to a uniform distribution, so a diverged model's loss stays finite, but
        # its gradient norm does not. The step returns loss + 0 * norm: one scalar op.
        self.optimizer = paddle.optimizer.SGD(learning_rate=cfg.lr, parameters=self.params)


    @classmethod
    def cuda_available(cls):
        return paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0

    @classmethod
    def join(cls, workers, device):
        import paddle.distributed as dist

        if device == "cpu":  # the launcher sets it on a CPU-only build; a GPU build on the CPU needs it too
            import os

            os.environ["PADDLE_DISTRI_BACKEND"] = "gloo"
        dist.init_parallel_env()
        if dist.get_world_size() != workers:
            raise RuntimeError(f"paddle: joined a job of {dist.get_world_size()} workers, expected {workers}")
        return dist.get_rank()

    def skip_gradient_sync(self):
        return self.trained.no_sync() if self.workers > 1 else None

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
    def _tensors(self, batch, keep_final):
        B, T = batch.inputs.shape
        if self.layout == "lod":  # no lengths tensor: no host copy of it inside the rnn op
            order, segments, flat = length_segments(batch.lengths, batch.offsets)
            return {"B": B, "T": T, "segments": segments, "keep_final": keep_final,
                    "seg_inputs": paddle.to_tensor(batch.flat_inputs[flat]),
                    "seg_targets": paddle.to_tensor(batch.flat_targets[flat]),
                    "order": paddle.to_tensor(order), "unorder": paddle.to_tensor(np.argsort(order))}
        out = {"B": B, "T": T, "lengths": paddle.to_tensor(batch.lengths.astype(np.int32))}
        if self.layout == "lod-padded":
            rows = np.repeat(np.arange(B), batch.lengths)
            slots = rows * T + (np.arange(len(rows)) - batch.offsets[rows])
            out.update(flat_inputs=paddle.to_tensor(batch.flat_inputs),
                       flat_targets=paddle.to_tensor(batch.flat_targets), slots=paddle.to_tensor(slots))
        else:
            out.update(inputs=paddle.to_tensor(batch.inputs), targets=paddle.to_tensor(batch.targets.reshape(-1)),
                       mask=paddle.to_tensor(batch.mask.reshape(-1)))
        return out

    def _forward(self, batch, keep_state, module=None):
        keep = keep_state and batch.carry_state
        loss, final_state = (module or self.model)(self._tensors(batch, keep), self.layout, self.carried_state(batch))
        if keep_state:
            self.keep_state(batch, final_state, paddle.Tensor.detach)
        return loss

    def train_step(self, batch, lr):
        self.model.train()
        with self.autocast():
            loss = self._forward(batch, keep_state=True, module=self.trained)
        # summed over time, averaged over the (global) batch's sequences; DataParallel
        # averages the workers' gradients, hence x workers (lmbench.backend.Backend.join)
        objective = loss * self.workers / batch.loss_sequences
        if self.scaler:  # fp16 (GPU, unverified): the scaler unscales, and skips an overflowed step
            self.scaler.scale(objective).backward()
            self.scaler.unscale_(self.optimizer)
        else:
            objective.backward()
        with paddle.no_grad():
            grads = [p.grad for p in self.params]
            norm = paddle.sqrt(paddle.add_n([paddle.sum(paddle.square(g)) for g in grads]))
            scale = self.cfg.clip / paddle.maximum(norm, paddle.full([], self.cfg.clip, norm.dtype))
            for g in grads:
                g.multiply_(scale)
        self.optimizer.set_lr(lr)
        if self.scaler:
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.optimizer.clear_grad()
            return loss.detach()  # an overflowed (skipped) step's norm is inf by design
        self.optimizer.step()
        self.optimizer.clear_grad()
        return loss.detach() + 0.0 * norm  # NaN/inf in the norm shows in the loss read back

    def eval_step(self, batch):
        self.model.eval()
        with paddle.no_grad(), self.autocast():
            return self._forward(batch, keep_state=True)

    def loss_and_grads(self, batch):
        # Train mode (the fused rnn op keeps what backward needs only when not is_test),
        # with dropout switched off for the call.
        self.model.train()
        saved = self.model.drop.p, self.model.lstm.dropout
        self.model.drop.p = self.model.lstm.dropout = 0.0
        self.optimizer.clear_grad()
        try:
            with self.autocast():
                objective = self._forward(batch, keep_state=False) / batch.batch_size
            objective.backward()
        finally:
            self.model.drop.p, self.model.lstm.dropout = saved
        grads = {name: (p.grad.numpy().T if t else p.grad.numpy()).copy()
                 for name, (p, t) in self._named().items()}
        self.optimizer.clear_grad()
        return float(objective), grads

    def to_floats(self, handles):
        return paddle.stack(handles).numpy().reshape(-1).tolist() if handles else []

    # -- device -------------------------------------------------------------------------
    def sync(self):
        if self.device == "cuda":
            paddle.device.synchronize()

    def device_event(self):
        # paddle.device.Event (Paddle 3) has record() and elapsed_time() in ms on the current
        # device; the older paddle.device.cuda.Event documents no elapsed_time
        return paddle.device.Event(enable_timing=True) if self.device == "cuda" else None

    def peak_memory_bytes(self):
        return paddle.device.cuda.max_memory_allocated() if self.device == "cuda" else None

    def environment(self):
        cuda = self.device == "cuda"
        if not self.model.lstm.could_use_cudnn:
            kernel = "paddle.nn.RNN loop of LSTMCell"
        else:
            kernel = "fused rnn op: cudnn" if cuda else "fused rnn op: phi CPU kernel (BLAS GEMM per step)"
            if self.layout == "lod":
                kernel += ", once per run of equal batch size (shrinking batch, real tokens only)"
            else:
                kernel += ", every row for all T steps (sequence_length masks)"
        return {
            "framework": "paddle", "framework_version": paddle.__version__,
            "device_name": paddle.device.cuda.get_device_name() if cuda else "cpu",
            "cuda_version": paddle.version.cuda() if cuda else None,
            "cudnn_version": paddle.version.cudnn() if cuda else None,
            "cpu_math_threads": self.threads,
            "data_parallel": {"engine": DATA_PARALLEL["engine"], "launcher": "paddle.distributed.launch",
                              "collectives": "nccl" if cuda else "gloo", "workers": self.workers,
                              "rank": paddle.distributed.get_rank()} if self.workers > 1 else None,
            "lstm_kernel": kernel,
            "precision": {"dtype": "float32", **self._amp(),
                          "tf32_cudnn": paddle.get_flags(["FLAGS_cudnn_allow_tf32"])["FLAGS_cudnn_allow_tf32"]
                          if cuda else None,
                          "tf32_cublas": paddle.get_flags(["FLAGS_cublas_allow_tf32"])["FLAGS_cublas_allow_tf32"]
                          if cuda else None},
        }

    def _amp(self):
        if self.precision == "fp32":
            return {}
        low = {"bf16": "bfloat16", "fp16": "float16"}[self.precision]
        return {"dtype": low, "amp": f"paddle.amp.auto_cast(level='O1', dtype='{low}')", "decoder_dtype": low,
                "lstm_dtype": "float32 (the rnn op has no float16/bfloat16 kernel)", "softmax_loss_dtype": "float32",
                "loss_scaling": "paddle.amp.GradScaler (dynamic)" if self.scaler else None}

    def compile_report(self):
        if not self.compile:
            return None
        info = InfoCollector().get_info_dict(InfoType.E2E_INFO)
        per_code = {}
        for item in info.get("CompileCountInfo", []):
            per_code[item.code.co_name] = per_code.get(item.code.co_name, 0) + 1
        breaks = [str(i.reason).strip().splitlines()[-1].strip() for i in info.get("BreakGraphReasonInfo", [])]
        InfoCollector().clear()  # read once; else SOT prints it all at exit
        return {"compiler": "paddle.jit.to_static (SOT bytecode translation -> PIR static program)",
                "scope": COMPILE_SCOPE,
                "backend": "CINN" if self.cinn else
                f"static graph executor, PHI kernels (no CINN: is_compiled_with_cinn()="
                f"{paddle.is_compiled_with_cinn()}, and to_static uses CINN on CUDA only)",
                "translations": per_code, "recompiles": sum(n - 1 for n in per_code.values()),
                "graph_breaks": len(breaks), "break_reasons": sorted(set(breaks)),
                "lstm": "the fused rnn op, one PHI kernel inside the static program"}


def gemm(n: int, device: str, precision: str = "fp32"):
    """`lmbench peak`: a blocking n x n matrix product on `device`, and the version. fp32 is
    true float32 (Paddle 3.3 lets cuBLAS use TF32 by default)."""
    paddle.set_device("gpu:0" if device == "cuda" else "cpu")
    if device == "cuda":
        paddle.set_flags({"FLAGS_cudnn_allow_tf32": False, "FLAGS_cublas_allow_tf32": False})
    dtype = {"fp32": "float32", "bf16": "bfloat16"}[precision]
    a, b = (paddle.randn([n, n]).astype(dtype) for _ in range(2))
    try:
        paddle.matmul(a[:2, :2], b[:2, :2])
    except Exception as e:  # noqa: BLE001 -- Paddle 3.3's CPU build has no bfloat16 matmul kernel
        raise RuntimeError(f"paddle {paddle.__version__}: no {dtype} matmul kernel on {device} in this build "
                           f"({str(e).strip().splitlines()[0][:120]})") from e
    return (lambda: float(paddle.matmul(a, b).astype("float32").sum())), paddle.__version__
