"""PyTorch: packed sequences (pack_padded_sequence), plus padded layouts for comparison.

Layouts
- packed:        ids are packed first, so embedding, LSTM, decoder and loss see only
                 real tokens (enforce_sorted=False keeps the batch order).
- padded:        the LSTM, decoder and a masked loss run on every [B, T] position,
                 the same work a padded TensorFlow batch does.
- padded-gather: the LSTM on the padded batch, then only real positions are gathered
                 into the decoder and the loss.
On the CPU, packed input never takes PyTorch's oneDNN LSTM kernel while padded input
does; on CUDA every layout runs cuDNN. Host->device copies of the batch happen inside
train_step (so inside the timed region, as in any training loop); pack lengths stay a
CPU int64 tensor, as pack_padded_sequence requires.

Variants
- compile: torch.compile (inductor) of what Dynamo can compile: the embedding (+dropout)
  and the head (dropout, decoder, cross entropy). Dynamo refuses nn.LSTM ("Dynamo does not
  support RNN, GRU, or LSTM"), and on 2.13 that break cannot resume inside a module's
  forward (pytorch#141184): compiling the whole model measured 0 graphs for the padded
  layouts, i.e. plain eager. So the LSTM, the packing and clipping/SGD run eager.
- precision bf16: torch.autocast(bfloat16) around the forward; weights, gradients,
  clipping and the SGD update stay float32. Padded input takes oneDNN's bf16 LSTM
  (mkldnn_rnn_layer); packed input runs aten's per-step cells with bf16 matmuls and gates.
- precision fp16: autocast(float16) + GradScaler; on the CPU only where oneDNN has a
  float16 LSTM (avx512_fp16/amx_fp16), else skipped.
"""
from __future__ import annotations

import os

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence

from lmbench import env
from lmbench.backend import Backend as BaseBackend, BackendUnavailable, VariantSkipped
from lmbench.data.corpus import PAD_ID

LAYOUTS = ("packed", "padded", "padded-gather")
# does the LSTM run over padded positions (lmbench.backend)? packed input holds real tokens
# only, on the CPU and in cuDNN alike; both padded layouts run it over the whole [B, T]
# --compile hands torch.compile the parts around the LSTM only (see Variants above)
COMPILE_SCOPE = "embedding+head"
COMPUTES_PADDING = {"packed": {"cpu": False, "cuda": False}, "padded": {"cpu": True, "cuda": True},
                    "padded-gather": {"cpu": True, "cuda": True}}
# --workers N: torchrun starts the workers (lmbench.run.launch appends "lmbench.run.worker ARGS");
# DistributedDataParallel over gloo on the CPU, NCCL on GPUs (one GPU per worker)
DATA_PARALLEL = {"launcher": ["-m", "torch.distributed.run", "--standalone", "--nnodes=1",
                              "--nproc-per-node={workers}", "-m"],
                 # several machines: torchrun's static rendezvous at machine 0 (global rank =
                 # node rank x workers + local rank)
                 "launcher_nodes": ["-m", "torch.distributed.run", "--nnodes={nodes}", "--node-rank={node_rank}",
                                    "--master-addr={rendezvous_host}", "--master-port={rendezvous_port}",
                                    "--nproc-per-node={workers}", "-m"],
                 "engine": "torch.distributed DistributedDataParallel"}


class LSTMLM(nn.Module):
    def __init__(self, vocab_size: int, hidden: int, layers: int, dropout: float):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, hidden)
        self.drop = nn.Dropout(dropout)
        self.lstm = nn.LSTM(hidden, hidden, layers, dropout=dropout, batch_first=True)
        self.decoder = nn.Linear(hidden, vocab_size)

    def forward(self, inputs, targets, lengths, layout, state):
        """Summed NLL over real targets, and the final (h, c)."""
        if layout == "packed":
            packed = pack_padded_sequence(inputs, lengths, batch_first=True, enforce_sorted=False)
            emb = PackedSequence(self.embed(packed.data), packed.batch_sizes,
                                 packed.sorted_indices, packed.unsorted_indices)
            out, state = self.lstm(emb, state)
            hidden = out.data
            gold = pack_padded_sequence(targets, lengths, batch_first=True, enforce_sorted=False).data
        else:
            out, state = self.lstm(self.embed(inputs), state)
            if layout == "padded":
                hidden, gold = out.reshape(-1, out.shape[-1]), targets.reshape(-1)
            else:  # padded-gather
                mask = targets != PAD_ID
                hidden, gold = out[mask], targets[mask]
        return self.head(hidden, gold), state

    # the parts around the LSTM: what --compile hands to torch.compile
    def embed(self, ids):
        return self.drop(self.embedding(ids))

    def head(self, hidden, gold):
        logits = self.decoder(self.drop(hidden))
        return nn.functional.cross_entropy(logits, gold, ignore_index=PAD_ID, reduction="sum")


class Backend(BaseBackend):
    name = "torch"

    def __init__(self, cfg, layout, device, threads, **options):
        super().__init__(cfg, layout, device, threads, **options)
        if device == "cuda" and not self.cuda_available():
            raise BackendUnavailable("torch: --device cuda, but torch.cuda.is_available() is False")
        torch.set_num_threads(threads)
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:  # already set in this process
            pass
        if device == "cuda":
            torch.backends.cudnn.enabled = True
            # true float32: torch's defaults let cuDNN (so the LSTM) use TF32 on Ampere+
            torch.backends.cudnn.allow_tf32 = False
            torch.backends.cuda.matmul.allow_tf32 = False
        self.dev = torch.device(device, int(os.environ.get("LOCAL_RANK", 0))) if device == "cuda" else torch.device(device)
        self.model = LSTMLM(cfg.vocab_size, cfg.hidden, cfg.layers, cfg.dropout).to(self.dev)
        # the module a train step runs: with workers, DDP's reducer averages the gradients
        # over them (bucketed all-reduce overlapped with backward) before backward() returns
        self.trained = self.model if self.workers == 1 else nn.parallel.DistributedDataParallel(
            self.model, device_ids=[self.dev.index] if device == "cuda" else None)
        self.params = list(self.model.parameters())
        self.amp_dtype = self._amp_dtype()
        # float16 gradients underflow without loss scaling; bfloat16 has float32's range
        self.scaler = torch.amp.GradScaler(device) if self.amp_dtype == torch.float16 else None
        # SGD is p -= lr * g, written out (_update) as pytorch/examples' word_language_model
        # does: building a torch.optim optimizer imports torch._dynamo (Optimizer.add_param_group
        # is wrapped in torch._disable_dynamo), 1.6 s and 72 MiB of RSS in every eager process,
        # which the CPU's peak-memory figure (max RSS) would count. GradScaler steps an optimizer.
        self.optimizer = torch.optim.SGD(self.params, lr=cfg.lr) if self.scaler else None
        if self.compile:
            self._compile_parts()

    def _amp_dtype(self):
        if self.precision == "fp16" and self.device == "cpu" and not torch.ops.mkldnn._is_mkldnn_fp16_supported():
            raise VariantSkipped(
                "torch: --precision fp16 on this CPU: it has no float16 arithmetic (no avx512_fp16/amx_fp16; "
                "torch.ops.mkldnn._is_mkldnn_fp16_supported() is False), so oneDNN cannot create its float16 "
                "LSTM and any float16 math would be conversions around float32. float16 mixed precision is "
                "the CUDA recipe (autocast + GradScaler); on the CPU use --precision bf16")
        if self.precision == "bf16" and self.device == "cpu" and not torch.ops.mkldnn._is_mkldnn_bf16_supported():
            raise VariantSkipped(
                "torch: --precision bf16 on this CPU: oneDNN has no bfloat16 path here (no AVX-512; "
                "torch.ops.mkldnn._is_mkldnn_bf16_supported() is False): it cannot create its bfloat16 LSTM, "
                "and any bfloat16 math would be conversions around float32. Run bf16 on a CPU with AVX-512 "
                "(or avx512_bf16/AMX) or on a GPU")
        if self.precision == "bf16" and self.device == "cuda" and (
                not torch.cuda.is_bf16_supported() or (torch.backends.cudnn.version() or 0) < 91300):
            raise VariantSkipped(  # unverified: written from pytorch#164411, no GPU here
                "torch: --precision bf16 on CUDA needs an sm80+ GPU and cuDNN >= 9.13 (the first with a "
                "bfloat16 RNN); this one lacks either. Use --precision fp16")
        return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[self.precision]

    def _compile_parts(self):
        from torch._inductor import cpp_builder, exc

        if self.device == "cpu":  # inductor writes C++ for the CPU and builds it with the host compiler
            try:
                cpp_builder.get_cpp_compiler()
            except exc.InvalidCxxCompiler as e:
                raise BackendUnavailable(
                    "torch: --compile on the CPU needs a C++ compiler (inductor builds its generated "
                    "kernels with g++ or $CXX) and none was found: install g++ (e.g. apt-get install g++) "
                    "or set CXX to a working compiler; or run without --compile") from e
        torch._dynamo.reset()
        torch._dynamo.utils.counters.clear()
        # instance attributes shadow the methods: forward calls the compiled versions
        self.model.embed = torch.compile(self.model.embed)
        self.model.head = torch.compile(self.model.head)

    def _autocast(self):
        return torch.autocast(self.dev.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None)

    @classmethod
    def cuda_available(cls):
        return torch.cuda.is_available()

    @classmethod
    def join(cls, workers, device):
        # torchrun exports RANK, WORLD_SIZE, MASTER_ADDR/PORT and LOCAL_RANK to every worker
        if device == "cuda":  # one GPU per worker on each machine (unverified: no GPU here)
            local = int(os.environ["LOCAL_RANK"])
            if local >= torch.cuda.device_count():
                raise BackendUnavailable(f"torch: {os.environ['LOCAL_WORLD_SIZE']} workers on this machine need one "
                                         f"GPU each; it has {torch.cuda.device_count()}: use fewer --workers")
            torch.cuda.set_device(local)
        dist.init_process_group("nccl" if device == "cuda" else "gloo")
        if dist.get_world_size() != workers:
            raise RuntimeError(f"torch: joined a job of {dist.get_world_size()} workers, expected {workers}")
        return dist.get_rank()

    def skip_gradient_sync(self):
        return self.trained.no_sync() if self.workers > 1 else None

    # -- weights in the canonical layout (lmbench.weights) ------------------------------
    def _named(self):
        m = self.model
        out = {"embedding": m.embedding.weight, "decoder.w": m.decoder.weight, "decoder.b": m.decoder.bias}
        for layer in range(self.cfg.layers):
            for ours, theirs in (("w_ih", "weight_ih"), ("w_hh", "weight_hh"), ("b_ih", "bias_ih"),
                                 ("b_hh", "bias_hh")):
                out[f"lstm{layer}.{ours}"] = getattr(m.lstm, f"{theirs}_l{layer}")
        return out

    def set_weights(self, weights):
        with torch.no_grad():
            for name, param in self._named().items():
                param.copy_(torch.from_numpy(np.ascontiguousarray(weights[name])))
        self.model.lstm.flatten_parameters()

    def get_weights(self):
        return {name: p.detach().cpu().numpy().copy() for name, p in self._named().items()}

    # -- steps --------------------------------------------------------------------------
    def _forward(self, batch, keep_state, module=None):
        inputs = torch.from_numpy(batch.inputs).to(self.dev, non_blocking=True)
        targets = torch.from_numpy(batch.targets).to(self.dev, non_blocking=True)
        lengths = torch.from_numpy(batch.lengths)  # stays on the CPU for packing
        with self._autocast():
            loss, final_state = (module or self.model)(inputs, targets, lengths, self.layout, self.carried_state(batch))
        if keep_state:
            self.keep_state(batch, final_state, torch.Tensor.detach)
        return loss

    def train_step(self, batch, lr):
        self.model.train()
        loss = self._forward(batch, keep_state=True, module=self.trained)
        self._zero_grad()
        # summed over time, averaged over the (global) batch's sequences; DDP averages the
        # workers' gradients, hence x workers (lmbench.backend.Backend.join)
        objective = loss * self.workers / batch.loss_sequences
        if self.scaler:  # fp16: backward on the scaled loss, then the true float32 gradients back
            self.scaler.scale(objective).backward()
            self.scaler.unscale_(self.optimizer)
        else:
            objective.backward()
        # clip to the global norm as min(1, clip / norm) with norm = sqrt(sum of squares), as
        # the other backends do. clip_grad_norm_ divides by norm + 1e-6 and takes a norm of
        # per-tensor norms: last-bit differences that training at lr 1 grows into 1e-4..1e-3
        # of the weights' movement, which lmbench verify then cannot tell from a bug.
        grads = [p.grad for p in self.params]
        norm = torch.stack([torch.sum(g * g) for g in grads]).sum().sqrt()
        torch._foreach_mul_(grads, self.cfg.clip / torch.clamp(norm, min=self.cfg.clip))
        self._update(lr)
        return loss.detach()

    def _zero_grad(self):
        for p in self.params:
            p.grad = None

    def _update(self, lr):
        """One SGD step on the gradients in .grad: p -= lr * g."""
        if self.scaler:  # skips the update when the scaled gradients overflowed
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            self.scaler.step(self.optimizer)
            self.scaler.update()
            return
        with torch.no_grad():
            torch._foreach_add_(self.params, [p.grad for p in self.params], alpha=-lr)

    def eval_step(self, batch):
        self.model.eval()
        with torch.no_grad():
            return self._forward(batch, keep_state=True)

    def loss_and_grads(self, batch):
        self.model.eval()
        self._zero_grad()
        objective = self._forward(batch, keep_state=False) / batch.batch_size
        objective.backward()
        grads = {name: p.grad.detach().cpu().numpy().copy() for name, p in self._named().items()}
        self._zero_grad()
        return float(objective.detach()), grads  # float() of a tensor that requires grad warns

    def compile_report(self):
        if not self.compile:
            return None
        from torch._dynamo.eval_frame import _debug_get_cache_entry_list
        from torch._dynamo.utils import counters

        entries = {part: len(_debug_get_cache_entry_list(getattr(LSTMLM, part)))
                   for part in ("embed", "head")}  # one cache entry per compiled version
        return {"compiler": "torch.compile (inductor)", "scope": COMPILE_SCOPE,
                "compiled": "embedding, decoder, cross entropy",
                "graphs": counters["stats"]["unique_graphs"],
                "graph_breaks": sum(counters["graph_break"].values()),
                "recompiles": sum(max(0, n - 1) for n in entries.values()),
                "versions": entries,
                "lstm": "eager (Dynamo does not trace nn.LSTM; pytorch#141184)"}

    def to_floats(self, handles):
        return torch.stack(handles).tolist() if handles else []

    # -- device -------------------------------------------------------------------------
    def sync(self):
        if self.dev.type == "cuda":
            torch.cuda.synchronize()

    def device_event(self):
        return torch.cuda.Event(enable_timing=True) if self.dev.type == "cuda" else None

    def peak_memory_bytes(self):
        return torch.cuda.max_memory_allocated() if self.dev.type == "cuda" else None

    def environment(self):
        cuda = self.dev.type == "cuda"
        dtype = {None: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}[self.amp_dtype]
        if cuda:
            kernel = "cudnn"
        elif self.layout == "packed":
            kernel = "aten native (packed input is not eligible for oneDNN)"
            if self.amp_dtype is not None:
                kernel += f": per-step cells, {dtype} matmuls and gates, float32 cell state"
        else:
            kernel = "onednn" if torch.backends.mkldnn.is_available() else "aten native"
            kernel += f" ({dtype})" * (self.amp_dtype is not None)
        return {
            "framework": "torch", "framework_version": torch.__version__,
            "device_name": torch.cuda.get_device_name() if cuda else "cpu",
            "cuda_version": torch.version.cuda if cuda else None,
            "cudnn_version": torch.backends.cudnn.version() if cuda else None,
            "intra_op_threads": torch.get_num_threads(),
            "lstm_kernel": kernel,
            "data_parallel": {"engine": DATA_PARALLEL["engine"], "launcher": "torchrun",
                              "collectives": dist.get_backend(), "workers": self.workers,
                              "rank": dist.get_rank()} if self.workers > 1 else None,
            "precision": {"dtype": dtype, "lstm_dtype": dtype, "weights_dtype": "float32",
                          "autocast": f"torch.autocast({self.dev.type}, {dtype})" if self.amp_dtype else None,
                          "grad_scaler": self.scaler is not None,
                          "tf32_matmul": torch.backends.cuda.matmul.allow_tf32 if cuda else None,
                          "tf32_cudnn": torch.backends.cudnn.allow_tf32 if cuda else None,
                          **({} if cuda else env.bf16_hardware())},
        }


def gemm(n: int, device: str, precision: str = "fp32"):
    """`lmbench peak`: a blocking n x n matrix product on `device`, and the version. fp32 is
    true float32 here too, not only in Backend: torch lets cuBLAS use TF32 where asked to
    (allow_tf32 / float32 matmul precision), and a TF32 rate is not a float32 ceiling."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[precision]
    a, b = (torch.randn(n, n, device=device).to(dtype) for _ in range(2))
    return (lambda: (a @ b).float().sum().item()), torch.__version__
