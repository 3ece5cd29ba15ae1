"""The child process of one run: import one framework, train, evaluate, time it.

Started by lmbench.run.runner as `python -m lmbench.run.worker SPEC.json RESULT.json PROGRESS`
(PROGRESS: a FIFO; see lmbench.run.launch), once or, for a data-parallel run, once per worker.
It writes its metrics (or the error) to RESULT.json (with its rank in the name when it is one
of several workers) and progress lines to PROGRESS; the parent turns that into the run record.

Data-parallel runs (`workers` > 1): every worker makes the same global batches and trains on
its shard of each (lmbench.data.corpus.shard); shape warm-up, timed steps and the all-reduce A/B
run the same steps on every worker, since each step is a collective (shape warm-up runs a
global batch wherever any worker's shard has a shape new to that worker). Rank 0 alone reports
progress and evaluates; the parent adds up the workers' throughput.

Timing protocol:
- the first `warmup` training steps are not timed (their time is kept apart: first-step
  trace/compile/autotune cost is a figure users want);
- in a run of `steps` (not `epochs`), every batch shape [B, T] the timed window holds is
  seen once before it, untimed ("shape warm-up": a step at lr 0 on the first batch of each
  shape the warm-up steps did not cover, run twice so that the first-time cost -- oneDNN
  primitive creation, cuDNN autotuning, a retrace -- is measured apart as cold_shapes). A
  200-step window holds ~30 first-time lengths where a whole epoch holds ~60, so leaving
  them in would weigh first-time costs ~5x what a real training pays. A training of whole
  epochs keeps them: it pays them once per shape, like any training;
- the device is synchronised before every clock read that bounds a timed region, and
  nowhere inside a step; per-step times come from backend.step_timer() (wall clock on a
  synchronous CPU, device events on GPU);
- losses are read back every LOG_EVERY steps, as a hand-written loop that logs would;
- throughput counts real target tokens only, never padding;
- evaluation is timed separately, after every batch shape it holds has run untimed (twice:
  the first-time cost is kept apart as eval_cold_shapes, as training's cold_shapes).
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import resource
import sys
import time
import traceback
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..runspec import RunSpec

LOG_EVERY = 100
MAX_SAMPLES = 5000
PROGRESS_EVERY_S = 0.5  # a step-count event for the parent's progress bar at most this often


# A training loss above this many times ln(V) nats per token (3 ln 10,000 = 27.6 nats, a
# perplexity of 1e12) is far worse than guessing uniformly: the model has diverged. Checked
# besides non-finite values because frameworks differ in how a blown-up model shows:
# PyTorch's loss turns NaN, Paddle's CPU cross entropy saturates at a finite value.
DIVERGED_LN_V = 3.0


class Diverged(RuntimeError):
    pass


# how frameworks and the C library word an allocation that failed (ENOMEM: "Cannot allocate memory")
OOM_MESSAGES = ("out of memory", "resource exhausted", "cannot allocate memory", "can't allocate memory",
                "failed to allocate memory")


class NothingToTime(RuntimeError):
    """The settings leave no step to time or no batch to evaluate: refused before training."""


def timed_steps_problem(spec: RunSpec, batches_per_epoch: int | None = None, epochs_done: int = 0) -> str | None:
    """Why a run of `spec` would time no training step, or None. A run of `steps` always
    times `steps` of them; a training of epochs times nothing when its only epoch left is
    all warm-up. `batches_per_epoch` (the training split's, before `epoch_batches` cuts it)
    is known once the data is (RunSpec checks `epoch_batches` against the warm-up itself)."""
    if not spec.epochs:
        return None
    warmup = spec.warmup
    sizes = [n for n in (spec.epoch_batches, batches_per_epoch) if n is not None]
    if not sizes or spec.epochs - epochs_done > 1 or warmup < min(sizes):
        return None
    n = min(sizes)
    return (f"warmup={warmup} covers the whole epoch of {n} training batch(es): no step would be timed, so "
            f"there would be no throughput to record; use --warmup {max(0, n - 1)} or less, or more --epochs")


def perplexity(total_nll: float, tokens: int) -> float:
    """exp(mean NLL per token); inf where that overflows, nan for a non-finite total."""
    if not math.isfinite(total_nll) or tokens <= 0:
        return float("nan")
    mean = total_nll / tokens
    return math.exp(mean) if mean < 709 else float("inf")


def set_thread_env(threads: int, backend: str | None = None) -> None:
    """Same thread budget for every framework; must run before any framework import. The
    OpenMP/BLAS variables are set for all; what one framework reads besides (TensorFlow's
    intra/inter-op pools, the CPUs XLA may use) is its backend module's THREAD_ENV."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)
    if backend is not None:
        from ..backend import thread_env

        os.environ.update(thread_env(backend, threads))


def resolve_device(requested: str, backend_cls) -> str:
    from ..backend import BackendUnavailable

    if requested == "cpu":
        return "cpu"
    has_cuda = backend_cls.cuda_available()
    if requested == "cuda" and not has_cuda:
        raise BackendUnavailable(
            f"--device cuda asked for, but {backend_cls.name} sees no usable GPU here (no GPU, no "
            f"driver, or a CPU-only build of the framework); use --device cpu or install the "
            f"framework's CUDA build (see docs/install.md, 'GPU install')")
    return "cuda" if has_cuda else "cpu"


class Progress:
    def __init__(self, fd: int | None):
        self.out = os.fdopen(fd, "w", buffering=1) if fd is not None and fd >= 0 else None

    def __call__(self, **event) -> None:
        if self.out:
            try:
                self.out.write(json.dumps(event) + "\n")
            except (BrokenPipeError, OSError):
                self.out = None


def _check(losses: list[float], tokens: list[int], step0: int, lr: float, vocab_size: int) -> None:
    limit = DIVERGED_LN_V * math.log(vocab_size)
    for i, (value, n) in enumerate(zip(losses, tokens)):
        if not math.isfinite(value) or value / n > limit:
            what = value if not math.isfinite(value) else f"{value / n:.1f} nats per token (> {limit:.1f})"
            raise Diverged(f"training loss became {what} at step {step0 + i} (lr={lr:g}); "
                           f"the model diverged: lower --lr or --clip, or check --init-scale")


def _twice(backend, step) -> tuple[float, float]:
    """ms of `step` run twice, each between device syncs: (first, again)."""
    ms = []
    for _ in range(2):
        backend.sync()
        t0 = time.perf_counter()
        backend.to_floats([step()])
        backend.sync()
        ms.append((time.perf_counter() - t0) * 1e3)
    return ms[0], ms[1]


def _cold_summary(first: list[float], again: list[float], new: list[bool]) -> dict:
    """The record's cold-shape figures: every untimed step's time, and the first-time cost
    (first run minus second) over the steps whose shape was new to this worker."""
    extra = [a - b for a, b, n in zip(first, again, new) if n]
    return {"count": len(first), "new_shapes": len(extra), "seconds": (sum(first) + sum(again)) / 1e3,
            "first_step_ms_median": _percentile([a for a, n in zip(first, new) if n], 50),
            "extra_ms_median": _percentile(extra, 50), "extra_ms_total": sum(extra)}


def new_shape_steps(batches, workers: int = 1, seen=None) -> list[list[bool]]:
    """For each global batch, per worker, whether its shard's shape is one that worker has
    not run before (`seen`: a set of shapes per worker, run already; updated in place)."""
    from ..data.corpus import shard_shapes

    seen = seen if seen is not None else [set() for _ in range(workers)]
    out = []
    for b in batches:
        shapes = shard_shapes(b, workers)
        out.append([s not in mine for s, mine in zip(shapes, seen)])
        for s, mine in zip(shapes, seen):
            mine.add(s)
    return out


def shape_warmup(backend, batches, warmup: int, rank: int = 0, workers: int = 1,
                 progress=None) -> tuple[dict, set]:
    """Untimed steps at lr 0 (the full step's work, weights unchanged) on the first batch of
    every shape in batches[warmup:] that batches[:warmup] does not hold; each runs twice,
    so the first-time cost of a shape is its first step minus its second. Returns the
    summary for the record and the shapes it ran.

    With data-parallel workers each runs its shard of a global batch, and the shards of one
    batch differ in shape (corpus.shard trims each to its own longest row). A step is a
    collective, so every worker must run the same warm-up steps: the global batches at
    which ANY worker meets a shard shape new to it (every worker can compute every shard's
    shape, corpus.shard_shapes). So each worker has run every shape it will time."""
    from ..data.corpus import shard

    seen = [set() for _ in range(workers)]
    new_shape_steps(batches[:warmup], workers, seen)
    first, again, new, ran = [], [], [], set()
    todo = [(batch, news) for batch, news in zip(batches[warmup:], new_shape_steps(batches[warmup:], workers, seen))
            if any(news)]
    if progress and todo:
        progress(phase="cold shapes", step=0, steps=len(todo))
    for batch, news in todo:
        batch = shard(batch, rank, workers) if workers > 1 else batch
        ran.add(batch.inputs.shape)
        a, b = _twice(backend, lambda: backend.train_step(batch, 0.0))
        first.append(a), again.append(b), new.append(news[rank])
        if progress:
            progress(phase="cold shapes", step=len(first), steps=len(todo))
    backend.reset_state()  # stream mode: the lr-0 steps must not hand their state on
    return _cold_summary(first, again, new), ran


def train_pass(backend, batches, lr, warmup, progress, phase="train", step_offset=0, seen_shapes=None):
    """Run SGD over `batches`; the first `warmup` steps are untimed. Returns a dict, with
    the number of timed steps whose batch shape no earlier step had (`seen_shapes`: the
    shapes run before this pass)."""
    from ..data.corpus import padding_fraction
    from ..env import busy_entry, busy_snapshot

    timer = backend.step_timer()
    seen = set(seen_shapes or ())
    first_time_timed = 0
    handles, losses, counts = [], [], []
    backend.sync()
    busy0 = busy_snapshot()  # how busy the machine is, around the timed window (lmbench.env)
    progress(phase="warm-up" if warmup else phase, step=0, steps=warmup or len(batches))
    t_start = t0 = last_event = time.perf_counter()
    warmup_seconds, first_step_ms = 0.0, None
    timed_tokens = 0
    for i, batch in enumerate(batches):
        if i == warmup and warmup:
            backend.sync()
            busy0 = busy_snapshot()
            progress(phase=phase, step=i, steps=len(batches))
            t0 = time.perf_counter()
            warmup_seconds = t0 - t_start
        timed = i >= warmup
        first_time_timed += timed and batch.inputs.shape not in seen
        seen.add(batch.inputs.shape)
        if timed:
            timer.start()
        handles.append(backend.train_step(batch, lr))
        counts.append(batch.num_targets)
        if timed:
            timer.stop()
            timed_tokens += batch.num_targets
        if i == 0:
            backend.sync()
            first_step_ms = (time.perf_counter() - t_start) * 1e3
        if (i + 1) % LOG_EVERY == 0 or i + 1 == len(batches):
            fetched = backend.to_floats(handles)
            _check(fetched, counts, step_offset + len(losses), lr, backend.cfg.vocab_size)
            losses += fetched
            handles, counts = [], []
            now = time.perf_counter()
            progress(phase=phase, step=step_offset + i + 1, steps=step_offset + len(batches),
                     words_per_sec=timed_tokens / (now - t0) if timed and now > t0 else None)
        elif time.perf_counter() - last_event >= PROGRESS_EVERY_S:  # steps dispatched, for the bar
            last_event = time.perf_counter()
            progress(phase=phase if timed else "warm-up", step=i + 1, steps=len(batches) if timed else warmup)
    backend.sync()
    timed_seconds = time.perf_counter() - t0 if len(batches) > warmup else 0.0
    busy = busy_entry(busy0, busy_snapshot())
    timed_batches = batches[warmup:]
    return dict(losses=losses, warmup_seconds=warmup_seconds, first_step_ms=first_step_ms,
                timed_seconds=timed_seconds, timed_tokens=timed_tokens,
                step_ms=timer.samples_ms(), step_time_source=timer.source,
                first_time_shapes_timed=first_time_timed, tokens=sum(b.num_targets for b in batches), busy=busy,
                timed_padded_positions=sum(b.padded_positions for b in timed_batches),
                padding_fraction=padding_fraction(timed_batches or batches))


ALLREDUCE_AB_STEPS = 10


def allreduce_share(backend, batches) -> dict | None:
    """The share of a step the gradient all-reduce costs, by A/B: the same steps (lr 0,
    weights unchanged) with and without the engine's all-reduce (backend.skip_gradient_sync),
    best of two rounds each; None where the backend cannot skip it. Exposed time only: what
    the engine overlaps with the backward pass costs nothing here.

    Returns this worker's legs ({"with_seconds", "without_seconds", "share"}). Its own share
    counts as all-reduce the time it waits for a slower worker (the synchronised leg waits,
    the other does not), so the run's share is made from every worker's legs alike, each
    leg's time being its slowest worker's (lmbench.run.runner._combine_workers)."""
    if backend.skip_gradient_sync() is None:
        return None
    sample = batches[:ALLREDUCE_AB_STEPS]

    def seconds(skip: bool) -> float:
        backend.sync()
        t0 = time.perf_counter()
        with backend.skip_gradient_sync() if skip else contextlib.nullcontext():
            backend.to_floats([backend.train_step(b, 0.0) for b in sample])
        backend.sync()
        return time.perf_counter() - t0

    with_sync, without = [], []
    for _ in range(2):
        with_sync.append(seconds(False))
        without.append(seconds(True))
    backend.reset_state()
    return {"with_seconds": min(with_sync), "without_seconds": min(without),
            "share": max(0.0, 1.0 - min(without) / min(with_sync))}


def evaluate(backend, batches, warm: dict | None = None, progress=None, split=None) -> dict:
    """Perplexity over the whole split, and its throughput. Every batch shape is run before
    the timed pass, untimed and twice (a compiled step compiles per shape: JAX, TensorFlow
    --compile), its first-time cost kept apart as training's is. `warm`: {"seen": shapes
    already run, "first"/"again": the warm-up steps' ms} carried across evaluations,
    so that a training's repeated validations warm each shape once; updated in place."""
    if progress:
        progress(phase="evaluation", split=split, batches=len(batches))
    warm = warm if warm is not None else {"seen": set(), "first": [], "again": []}
    for batch in batches:
        if batch.inputs.shape not in warm["seen"]:
            warm["seen"].add(batch.inputs.shape)
            backend.reset_state()
            a, b = _twice(backend, lambda: backend.eval_step(batch))
            warm["first"].append(a), warm["again"].append(b)
    backend.reset_state()
    backend.sync()
    t0 = time.perf_counter()
    handles = [backend.eval_step(b) for b in batches]
    backend.sync()
    seconds = time.perf_counter() - t0
    total = sum(backend.to_floats(handles))
    tokens = sum(b.num_targets for b in batches)
    backend.reset_state()
    return dict(ppl=perplexity(total, tokens), seconds=seconds, tokens=tokens, words_per_sec=tokens / seconds,
                cold_shapes=_cold_summary(warm["first"], warm["again"], [True] * len(warm["first"])))


def _percentile(values, q):
    import numpy as np

    return float(np.percentile(values, q)) if values else None


EVAL_SPLITS = {"valid": ["valid"], "test": ["test"], "both": ["valid", "test"], "none": []}


class Job:
    """What one worker of a run works with: its spec, backend, rank and the batches it makes."""

    def __init__(self, spec: RunSpec, progress: Progress, out: dict, whoami: dict):
        from ..backend import compile_scope, load_backend
        from ..data.corpus import load_corpus
        from ..data.download import download_ptb
        from ..weights import flops_per_token, init_weights, num_params

        self.spec, self.cfg, self.progress = spec, spec.config, progress
        self.workers = spec.world  # of the whole job; spec.workers run on this machine
        backend_cls = load_backend(spec.backend)
        device = resolve_device(spec.device, backend_cls)
        self.rank = whoami["rank"] = backend_cls.join(self.workers, device) if self.workers > 1 else 0
        if self.rank % spec.workers:
            progress.out = None  # the first worker of each machine reports for it
        out["device"] = device  # known before the backend may decline the variant (skipped)
        self.corpus = load_corpus(download_ptb(spec.data_dir, log=lambda m: print(m, file=sys.stderr)))
        self.backend = backend_cls(self.cfg, spec.layout, device, spec.threads_per_worker, workers=self.workers,
                                   compile=spec.compile, precision=spec.precision)
        self.backend.set_weights(init_weights(self.cfg))
        out.update(device=device, environment=self.backend.environment(), num_params=num_params(self.cfg),
                   flops_per_token=flops_per_token(self.cfg))
        # a fact of backend x layout x device (x variant): what the LSTM's work is (lstm_work)
        out["environment"]["lstm_computes_padding"] = self.backend.lstm_computes_padding()
        if spec.compile:  # what --compile hands the compiler differs by framework (the variant label says it)
            out["environment"]["compile_scope"] = compile_scope(spec.backend)
        # strong scaling splits the preset's batch over the workers, weak gives each worker one
        self.global_batch = self.cfg.batch_size * (self.workers if spec.scaling == "weak" else 1)
        self.eval_warm = {"seen": set(), "first": [], "again": []}  # the eval shapes run (lmbench.run.worker.evaluate)

    def check_eval_splits(self) -> None:
        """Every split this worker evaluates makes at least one batch (else: NothingToTime)."""
        from ..data.corpus import CorpusError

        for split in EVAL_SPLITS[self.spec.eval] if self.rank == 0 else ():
            try:
                there = self.batches(split, 0, False)
            except CorpusError as e:
                raise NothingToTime(f"the {split} split cannot be evaluated with a batch of {self.global_batch} "
                                    f"sequence(s) ({e}); use a smaller --batch-size, or --eval none") from None
            if not there:
                raise NothingToTime(f"the {split} split holds no batch of {self.global_batch} sequence(s): "
                                    f"nothing to evaluate; use a smaller --batch-size, or --eval none")

    def batches(self, split: str, epoch: int, shuffle: bool = True):
        from ..data.corpus import make_batches

        c = self.cfg
        return make_batches(self.corpus[split], c.mode, self.global_batch, c.num_steps, c.batching, c.seed,
                            epoch, shuffle)


def run(spec: RunSpec, progress: Progress, out: dict, whoami: dict) -> dict:
    """Fill `out` with the run's metrics; what it holds survives a failure mid-run. Sets
    whoami["rank"] once this worker has joined its data-parallel job (0 when alone)."""
    from ..config import TARGET_PPL

    job = Job(spec, progress, out, whoami)
    job.check_eval_splits()  # before the training, not after it
    t_run = time.perf_counter()
    out["target_ppl"], out["time_to_target_seconds"] = spec.target_ppl or TARGET_PPL.get(spec.config.preset), None
    if spec.epochs:
        passes, t_run = train_epochs(job, out, t_run)
    else:
        passes = [train_steps(job, out)]
    job.backend.leave()
    summarise(passes, spec.warmup, out)
    out["work"] = lstm_work(out, out["environment"]["lstm_computes_padding"])
    if "first_epoch" in out:
        out["first_epoch"] = first_epoch_projection(out)
    for split in EVAL_SPLITS[spec.eval] if job.rank == 0 else ():
        # a prefix, for quick suites
        ev = evaluate(job.backend, job.batches(split, 0, False)[:spec.eval_batches], job.eval_warm, job.progress,
                      split)
        out[f"{split}_tokens"] = ev["tokens"]
        out[f"{split}_ppl"] = ev["ppl"]
        out.setdefault("eval_words_per_sec", ev["words_per_sec"])
        out.setdefault("eval_seconds", ev["seconds"])
        out["eval_cold_shapes"] = ev["cold_shapes"]  # of every evaluation so far (job.eval_warm)
    out["compile"] = job.backend.compile_report()  # what the compiler did, known only now
    mem = job.backend.peak_memory_bytes()
    out["peak_memory_bytes"] = mem if mem is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    out["peak_memory_kind"] = "device" if mem is not None else "process_rss"
    out["wall_seconds"] = time.perf_counter() - t_run
    return out


def _resume(job: Job, out: dict) -> tuple[int, float, list]:
    """(first epoch, wall seconds already spent, epoch log) from the run's checkpoint, if it
    resumes one; the checkpoint must belong to this run."""
    from . import checkpoint

    spec, cfg, ckpt = job.spec, job.cfg, job.spec.checkpoint
    if not (ckpt and spec.resume and os.path.exists(ckpt)):
        return 0, 0.0, []
    weights, meta = checkpoint.load(ckpt)
    # the number of epochs may grow (resume a 2-epoch run to 13): the lr of an epoch
    # depends only on its index; every other setting must be the same
    same = {k: v for k, v in meta["config"].items() if k != "epochs"} == \
        {k: v for k, v in cfg.to_dict().items() if k != "epochs"}
    if not same or meta["backend"] != [spec.backend, spec.layout]:
        diff = sorted(k for k, v in cfg.to_dict().items() if meta["config"].get(k) != v and k != "epochs")
        raise checkpoint.CheckpointError(
            f"checkpoint {ckpt} belongs to another run ({meta['backend'][0]}/{meta['backend'][1]}"
            + (f"; differs in {', '.join(diff)}" if diff else "") + "); use a different --checkpoint file")
    job.backend.set_weights(weights)
    out["time_to_target_seconds"] = meta["time_to_target_seconds"]
    out["resumed_from_epoch"] = meta["epoch"]
    return meta["epoch"], meta["wall_seconds"], meta["epoch_log"]


def train_epochs(job: Job, out: dict, t_run: float) -> tuple[list[dict], float]:
    """Whole epochs on the lr schedule, validation after each, a checkpoint after each."""
    from . import checkpoint

    spec, cfg, backend = job.spec, job.cfg, job.backend
    start, t_offset, epoch_log = _resume(job, out)
    if start >= spec.epochs:
        raise checkpoint.CheckpointError(f"checkpoint {spec.checkpoint} already holds all {start} epochs: "
                                         f"nothing left to resume")
    problem = timed_steps_problem(spec, len(job.batches("train", start)), start)
    if problem:
        raise NothingToTime(problem)
    t_run -= t_offset
    passes, target = [], out["target_ppl"]
    for epoch in range(start, spec.epochs):
        lr = cfg.lr_at(epoch)
        backend.reset_state()
        p = train_pass(backend, job.batches("train", epoch)[:spec.epoch_batches], lr,
                       spec.warmup if epoch == start else 0, job.progress, phase=f"epoch {epoch + 1}")
        passes.append(p)
        entry = {"epoch": epoch + 1, "lr": lr, "train_ppl": perplexity(sum(p["losses"]), p["tokens"])}
        if "valid" in EVAL_SPLITS[spec.eval]:
            entry["valid_ppl"] = evaluate(backend, job.batches("valid", 0, False)[:spec.eval_batches],
                                          job.eval_warm)["ppl"]
            if target and out["time_to_target_seconds"] is None and entry["valid_ppl"] < target:
                out["time_to_target_seconds"] = time.perf_counter() - t_run
        entry["wall_seconds"] = time.perf_counter() - t_run
        epoch_log.append(entry)
        if spec.checkpoint:
            checkpoint.save(spec.checkpoint, backend.get_weights(), {
                "epoch": epoch + 1, "epoch_log": epoch_log, "wall_seconds": entry["wall_seconds"],
                "time_to_target_seconds": out["time_to_target_seconds"], "config": cfg.to_dict(),
                "backend": [spec.backend, spec.layout]})
        job.progress(phase="epoch", pid=os.getpid(), **entry)
    out["epoch_log"] = epoch_log
    return passes, t_run


def train_steps(job: Job, out: dict) -> dict:
    """A timed window of spec.steps steps after spec.warmup untimed ones, every batch shape
    warmed up before it (shape_warmup); with data-parallel workers, this worker's shards."""
    from ..data.corpus import shard_batches

    spec, backend, rank, workers, warmup = job.spec, job.backend, job.rank, job.workers, job.spec.warmup
    batches, epoch, dropped = [], 0, 0
    while len(batches) < warmup + spec.steps:
        fresh = job.batches("train", epoch)
        kept = [b for b in fresh if b.batch_size >= workers]  # see corpus.shard
        if epoch == 0:  # what one epoch of training holds, for the first-epoch projection
            out["first_epoch"] = {"tokens": sum(b.num_targets for b in kept), "steps": len(kept),
                                  "cold_steps": sum(any(n) for n in new_shape_steps(kept, workers))}
        batches += kept
        dropped += sum(b.batch_size < workers for b in fresh)
        epoch += 1
    batches = batches[:warmup + spec.steps]
    out["cold_shapes"], warmed = shape_warmup(backend, batches, warmup, rank, workers, job.progress)
    mine = shard_batches(batches, rank, workers)
    timed = train_pass(backend, mine, job.cfg.lr, warmup, job.progress, seen_shapes=warmed)
    if workers > 1:
        g = job.global_batch
        out["data_parallel"] = {
            "workers": workers, "nodes": spec.nodes, "rank": rank, "scaling": spec.scaling,
            # every worker's real tokens: the shards of a batch partition its rows
            "job_timed_tokens": sum(b.num_targets for b in batches[warmup:]),
            # and every worker's padded positions: each shard's rows x its own longest row
            "job_timed_padded_positions": job_padded_positions(batches[warmup:], workers),
            "global_batch_size": g, "per_worker_batch_size": [g // workers + (r < g % workers) for r in range(workers)],
            "threads_per_worker": spec.threads_per_worker, "batches_dropped": dropped,
            "allreduce_ab": allreduce_share(backend, mine[warmup:]),
            "allreduce_share_method": f"A/B: {ALLREDUCE_AB_STEPS} steps at lr 0 with and without the "
                                      f"gradient all-reduce, best of 2 each, each leg timed by its slowest "
                                      f"worker: 1 - max(t_without) / max(t_with); imbalance = "
                                      f"max(t_without) / min(t_without) - 1"}
        ab = out["data_parallel"]["allreduce_ab"]
        out["data_parallel"]["allreduce_share"] = ab["share"] if ab else None  # this worker's, until combined
    return timed


def job_padded_positions(batches, workers: int) -> int:
    """Padded positions all workers' shards of `batches` hold. Fewer than the batches' own when
    workers > 1: corpus.shard trims each shard to its own longest row, so a shard of short
    rows carries less padding than the global batch had."""
    from ..data.corpus import shard_shapes

    return sum(b * t for batch in batches for b, t in shard_shapes(batch, workers))


def lstm_work(metrics: dict, computes_padding: bool | None) -> dict:
    """The work of one timed (global) step, all workers': the padded positions and the real
    tokens, and what the LSTM ran over -- the padded positions where it computes padding
    (lmbench.backend COMPUTES_PADDING), else the real tokens; None where undeclared. Two runs
    did equal work per real token when their lstm_positions_per_token agree."""
    steps = (metrics.get("steps") or 0) - (metrics.get("warmup_steps") or 0)
    padded, real = metrics.get("timed_padded_positions"), metrics.get("timed_tokens")
    if steps <= 0 or not padded or not real:
        return {"lstm_computes_padding": computes_padding}
    lstm = None if computes_padding is None else padded if computes_padding else real
    return {"padded_positions_per_step": padded / steps, "real_tokens_per_step": real / steps,
            "lstm_computes_padding": computes_padding,
            "lstm_positions_per_step": None if lstm is None else lstm / steps,
            "lstm_positions_per_token": None if lstm is None else lstm / real}


def first_epoch_projection(metrics: dict) -> dict:
    """The wall time a first epoch of training would take with every compile in it, projected
    from a --steps run: steady-state seconds per real token x the epoch's real tokens, plus the
    first-time cost (cold_shapes' median extra) of every other step that meets a new shape,
    plus the first step. A steady-state words/s answers "how fast once warm"; this answers
    "how long does training take" for a framework that compiles per shape (JAX, TF XLA)."""
    e = dict(metrics["first_epoch"])
    wps, cold = metrics.get("train_words_per_sec"), metrics.get("cold_shapes") or {}
    first_ms = metrics.get("first_step_ms")
    extra_ms = max(0.0, cold.get("extra_ms_median") or 0.0)
    if not wps or first_ms is None:
        return {**e, "seconds": None}
    compiles = max(0, e["cold_steps"] - 1) * extra_ms / 1e3  # the first step pays its own
    seconds = e["tokens"] / wps + compiles + first_ms / 1e3
    return {**e, "seconds": seconds, "cold_seconds": compiles, "words_per_sec": e["tokens"] / seconds,
            "how": "projected: epoch tokens / steady words/s + (new-shape steps - 1) x median cold-shape extra "
                   "+ first step"}


def summarise(passes: list[dict], warmup: int, out: dict) -> None:
    """The training metrics of the record, from the passes' timings and losses."""
    step_ms = [s for p in passes for s in p["step_ms"]]
    timed_seconds = sum(p["timed_seconds"] for p in passes)
    timed_tokens = sum(p["timed_tokens"] for p in passes)
    if not (timed_seconds > 0 and timed_tokens > 0):  # whatever got here: an ok record has a throughput
        raise NothingToTime(f"no training step was timed ({sum(len(p['losses']) for p in passes)} step(s), "
                            f"warm-up {warmup}): no throughput to record")
    all_losses = [x for p in passes for x in p["losses"]]
    out.update(
        train_words_per_sec=timed_tokens / timed_seconds if timed_seconds else None,
        train_seconds=timed_seconds,
        warmup_seconds=passes[0]["warmup_seconds"],
        first_step_ms=passes[0]["first_step_ms"],
        warmup_steps=min(warmup, sum(len(p["losses"]) for p in passes)),
        steps=len(all_losses),
        tokens=sum(p["tokens"] for p in passes),
        timed_tokens=timed_tokens,
        timed_padded_positions=sum(p["timed_padded_positions"] for p in passes),
        padding_fraction=sum(p["padding_fraction"] for p in passes) / len(passes),
        step_time_source=passes[0]["step_time_source"],
        first_time_shapes_timed=sum(p["first_time_shapes_timed"] for p in passes),
        step_time_ms={"median": _percentile(step_ms, 50), "p10": _percentile(step_ms, 10),
                      "p90": _percentile(step_ms, 90),
                      # long trainings keep an even subsample, enough for any statistic
                      "samples": [round(s, 4) for s in step_ms[::max(1, -(-len(step_ms) // MAX_SAMPLES))]]},
        first_loss=all_losses[0] if all_losses else None,
        train_losses=all_losses if len(all_losses) <= 1000 else None,
        train_ppl=perplexity(sum(passes[-1]["losses"]), passes[-1]["tokens"]),
        busy=max((p["busy"] for p in passes), key=lambda b: (bool(b["busy"]), (b["other_cpu_share"] or 0)
                                                             + (b["steal_share"] or 0))),  # the busiest window
    )
    out["achieved_flops_per_sec"] = (out["train_words_per_sec"] or 0) * out["flops_per_token"]


@contextlib.contextmanager
def _checkpoint_lock(path):
    """One worker per checkpoint at a time (lmbench.run.checkpoint.lock); none without one."""
    if not path:
        yield
        return
    from . import checkpoint

    fd = checkpoint.lock(path)
    try:
        yield
    finally:
        checkpoint.unlock(path, fd)


def main(argv=None) -> int:
    spec_path, result_path, progress_path = (argv or sys.argv[1:])[:3]
    from .lifeline import die_with_parent, open_progress  # imports no numpy: threads are not set yet

    temp_dir = os.path.dirname(os.path.abspath(spec_path))
    watch_pipe = die_with_parent(temp_dir)  # never outlive the parent: armed before anything can block
    fd = open_progress(progress_path, temp_dir)  # the FIFO the parent reads (lmbench.run.launch)
    watch_pipe(fd)
    with open(spec_path) as f:
        raw = json.load(f)  # RunSpec.to_dict() of the parent
    workers = raw["workers"] * raw["nodes"]
    # the thread budget before anything imports numpy (RunSpec's checks import lmbench.backend)
    set_thread_env(raw["threads"] // raw["workers"], raw["backend"])
    from ..runspec import RunSpec

    spec = RunSpec.from_dict(raw)
    progress = Progress(fd)
    progress(phase="start", pid=os.getpid())
    from ..backend import BackendUnavailable, VariantSkipped, declined, layout_env
    from .checkpoint import CheckpointError
    from .launch import result_path as rank_result_path

    os.environ.update(layout_env(spec.backend, spec.layout))
    result: dict = {"status": "ok", "error": None, "metrics": {}}
    whoami = {"rank": 0 if workers == 1 else None}
    try:
        # declared: refused before the framework is imported (a data-parallel job's workers
        # refuse in the backend's __init__, after joining, so that each writes its rank's result)
        reason = workers == 1 and spec.device != "auto" and declined(spec.backend, spec.layout, spec.device,
                                                                     spec.compile, spec.precision)
        if reason:
            raise VariantSkipped(reason)
        with _checkpoint_lock(spec.checkpoint):
            run(spec, progress, result["metrics"], whoami)
    except VariantSkipped as e:  # not applicable here: recorded with the reason, not as a number
        result.update(status="skipped", reason=str(e))
    except BackendUnavailable as e:
        result.update(status="failed", error=str(e), error_kind="unavailable")
    except CheckpointError as e:
        result.update(status="failed", error=str(e), error_kind="checkpoint")
    except Diverged as e:
        result.update(status="failed", error=str(e), error_kind="diverged")
    except NothingToTime as e:
        result.update(status="failed", error=str(e), error_kind="config")
    except MemoryError as e:
        result.update(status="failed", error=f"out of memory: {e}", error_kind="oom")
    except Exception as e:  # noqa: BLE001 -- any failure becomes a failed record
        text = f"{type(e).__name__}: {e}"
        oom = any(m in text.lower() for m in OOM_MESSAGES)
        result.update(status="failed", error=text, error_kind="oom" if oom else "error",
                      traceback=traceback.format_exc())
    if whoami["rank"] is None:  # failed before joining the job: no rank to write as
        path = rank_result_path(result_path, 0, 1).with_suffix(f".unjoined-{os.getpid()}.json")
    else:
        path = rank_result_path(result_path, whoami["rank"], workers)
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(result, f)
    os.replace(tmp, path)
    return 0 if result["status"] in ("ok", "skipped") else 1


if __name__ == "__main__":
    sys.exit(main())
