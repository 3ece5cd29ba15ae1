"""`lmbench verify`: the same weights and the same batches give the same numbers everywhere.

Every installed backend (each in its own process, all its layouts) imports one set of
canonical initial weights (saved as .npz) and plays the same script over the same numpy
batches -- sentence mode with random and with bucketed batching, and stream mode with
carried state. The parent compares, on numpy arrays, every layout against its backend's
native layout and every backend's native layout against every other's.

Checks, each relative (float32 throughout; machine epsilon 1.2e-7):
- loss: the objective of one step from the same weights, per batch;
- grad[tensor]: each gradient tensor against its own norm, ||g_a - g_b|| / ||g_b||. Per
  tensor, not against the global norm: at initialisation the recurrent weights' gradients
  are 2e-4 (tiny) to 8e-3 (small) of the global norm (decoder.b alone is ~0.8 of it), so a
  bug confined to W_hh would hide under a global tolerance;
- trained_loss: the losses of `steps` SGD steps per batching kind (clipped, lr 1), then
  an eval sum;
- trained_weights[tensor]: each trained tensor's distance ||w_a - w_b|| against how far
  training moved it, ||w_b - w_0|| (biases start at 0, so relative to the weights
  themselves would be meaningless).
A tensor's scale below FLOOR x the total (over all tensors) counts as that: 1e-7 is float32
rounding of the total, and three orders below the smallest scale measured (W_hh's
gradient on tiny); it only keeps an exactly-zero tensor from dividing by zero.

Tolerances, from `lmbench verify --preset tiny` and `--preset small` on torch 3 layouts,
TensorFlow 3, Paddle 3 (CPU; worst over every pair and tensor):
- loss 1e-5 (measured 1.2e-7) and grad 1e-4 (7.9e-6, decoder.b on tiny: a sum over every
  token with cancellation) -- one step from the same weights is rounding only;
- trained_loss 1e-4 (measured 1.9e-6) and trained_weights 1e-3 (1.7e-5, paddle/lod vs
  torch/packed on small). Training at lr 1 reaches gradient norms of ~80 and is chaotic:
  each step's rounding feeds the next, and the clipping factor carries the global norm's
  rounding into every weight -- so every backend computes that norm alike (the square
  root of the sum of per-tensor sums of squares; PyTorch's clip_grad_norm_, a norm of
  per-tensor norms plus 1e-6, grew the gap to 2.1e-3). The margin is 60x what CPUs
  measured, for reduction orders (GPU kernels) not measured here; the bugs these checks
  exist for move them by 0.07 to 6e5.
A deliberately broken copy of the torch backend for each of five bugs fails these
checks by orders of magnitude (tests/test_verify.py, tests/mutants/).
"""
from __future__ import annotations

import itertools
import sys
import tempfile
from pathlib import Path

import numpy as np

from ..backend import available_backends, backend_layouts, native_layout
from ..config import ConfigError, make_config
from ..data.corpus import load_corpus, make_batches
from ..data.download import download_ptb
from ..run.probe import ProbeError, probe
from ..weights import comparable, init_weights, num_params

TOLERANCES = {"loss": 1e-5, "grad": 1e-4, "trained_loss": 1e-4, "trained_weights": 1e-3}
FLOOR = 1e-7  # per-tensor scales below FLOOR x the total (all tensors) count as that
PER_KIND = 4  # batches of each kind: random, bucketed, stream


def build_case(preset: str, data_dir=None, seed: int = 1234, steps: int = 3, batch_size: int | None = None):
    """The shared weights, batches and script. Dropout off: its masks are framework RNG."""
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= PER_KIND - 1:
        # the tolerances were measured over at most PER_KIND - 1 steps at lr 1, where training is chaotic
        raise ConfigError(f"invalid steps={steps!r}: verify trains 1 to {PER_KIND - 1} SGD steps per batching "
                          f"kind (each kind has {PER_KIND} batches; the tolerances hold for up to "
                          f"{PER_KIND - 1} steps); use --steps {PER_KIND - 1} or fewer")
    cfg = make_config(preset, dropout=0.0, seed=seed, batch_size=batch_size)
    corpus = load_corpus(download_ptb(data_dir, log=lambda m: print(m, file=sys.stderr)),
                         splits=("valid",))
    valid = corpus["valid"]
    batches = (make_batches(valid, "sentence", cfg.batch_size, cfg.num_steps, "random", seed)[:PER_KIND]
               + make_batches(valid, "sentence", cfg.batch_size, cfg.num_steps, "bucketed", seed)[:PER_KIND]
               + make_batches(valid, "stream", cfg.batch_size, cfg.num_steps)[:PER_KIND])
    kinds = {"random": 0, "bucketed": PER_KIND, "stream": 2 * PER_KIND}
    script = []
    for kind, first in kinds.items():  # one step's loss and gradients from the same weights
        script += [("reset",), ("loss_and_grads", first)]
    for kind, first in kinds.items():  # then training, kind after kind, state carried in stream
        script += [("reset",)] + [("train_step", first + i, cfg.lr) for i in range(steps)]
    script += [("reset",), ("eval", list(range(2 * PER_KIND, 3 * PER_KIND))), ("weights",)]
    return cfg, init_weights(cfg), batches, script


def _unpack(results: list) -> dict:
    grads = [r for r in results if isinstance(r, tuple)]
    return {"losses": np.array([g[0] for g in grads]),
            "grads": [comparable(g[1]) for g in grads],
            "trained_losses": np.array([r for r in results if isinstance(r, float)]),
            "weights": comparable(results[-1])}


def _rel(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-30)))


def _norm(x) -> float:
    return float(np.linalg.norm(np.asarray(x, dtype=np.float64)))


def _per_tensor(a: dict, b: dict, scale: dict) -> dict[str, float]:
    """||a[k] - b[k]|| / max(scale[k], FLOOR * total scale), for every tensor k."""
    floor = FLOOR * float(np.sqrt(sum(v * v for v in scale.values())))
    return {k: _norm(a[k] - b[k].astype(np.float64)) / max(scale[k], floor, 1e-30) for k in b}


def compare(a: dict, b: dict, initial: dict) -> dict[str, dict[str, float]]:
    """Each check's relative differences between two unpacked probe results (`b` the
    reference): {tensor: difference} for per-tensor checks, {"": difference} for the others."""
    init = comparable(initial)
    per_batch = [_per_tensor(ga, gb, {k: _norm(v) for k, v in gb.items()})
                 for ga, gb in zip(a["grads"], b["grads"])]
    # how far apart the trained weights are, relative to how far training moved each tensor
    moved = {k: _norm(w.astype(np.float64) - init[k]) for k, w in b["weights"].items()}
    return {"loss": {"": _rel(a["losses"], b["losses"])},
            "grad": {k: max(d[k] for d in per_batch) for k in per_batch[0]},
            "trained_loss": {"": _rel(a["trained_losses"], b["trained_losses"])},
            "trained_weights": _per_tensor(a["weights"], b["weights"], moved)}


def differences(a: dict, b: dict, initial: dict) -> dict[str, float]:
    """Each check's largest relative difference (keys of TOLERANCES)."""
    return {k: max(v.values()) for k, v in compare(a, b, initial).items()}


def failed_checks(c: dict[str, dict[str, float]], tolerances: dict = TOLERANCES) -> list[str]:
    """The checks over tolerance, each with the tensors that failed it, worst first:
    ['loss 2.1e-02 > 1e-05', 'grad[lstm0.w_hh] 3.0e-01 > 1e-04', ...]."""
    out = []
    for check, values in c.items():
        bad = sorted(((v, k) for k, v in values.items() if not v <= tolerances[check]), reverse=True)
        out += [f"{check}[{k}]" * bool(k) + check * (not k) + f" {v:.1e} > {tolerances[check]:.0e}"
                for v, k in bad]
    return out


def _label(backend: str) -> str:
    return Path(backend).stem if backend.endswith(".py") else backend  # a backend given by path


def verify(preset="tiny", device="cpu", backends=None, steps=3, data_dir=None, weights_out=None,
           print_=print, reference=None, compile=False, precision="fp32", cpu_reference=None) -> int:
    """Compare every backend's native layout with every other's (or, given `reference`, with
    the reference's only) and each backend's other layouts with its native one. A backend
    may be a path to a backend module (the tests' deliberately broken copies). (A variant,
    where every layout of every backend runs compiled or in reduced precision and is compared with its own
    eager float32 run instead: lmbench.verify.variants.verify_variant.)

    With `cpu_reference` (a backend), that backend's native layout also runs on the CPU,
    labelled "<backend>@cpu", and every backend's native layout on `device` is compared with
    it: float32 on the GPU against float32 on the CPU. GPU frameworks that agree with each
    other can still share an error (TF32 left on in both, say); this shows it."""
    if compile or precision != "fp32":
        raise ValueError("verify() checks eager float32; a variant is lmbench.verify.variants.verify_variant's")
    if cpu_reference:
        backend_layouts(cpu_reference)  # an unknown backend fails here, before any work
    cfg, weights, batches, script = build_case(preset, data_dir, steps=steps)
    backends = backends or available_backends()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(weights_out or Path(tmp, "initial_weights.npz"))
        np.savez(path, **weights)
        with np.load(path) as saved:  # every backend gets the weights as read back from disk
            weights = {k: saved[k] for k in saved.files}
    print_(f"verify: preset {preset} (dropout off), {len(batches)} batches, {steps} SGD steps per "
           f"batching kind, {num_params(cfg):,} parameters in the canonical layout")
    results, failures = {}, []
    for name in backends:
        layouts = backend_layouts(name)
        try:
            out = probe(name, layouts, cfg, weights, batches, script, device=device)
        except ProbeError as e:
            failures.append(f"{_label(name)}: {e}")
            print_(f"  {_label(name)}: FAILED to run\n{e}")
            continue
        for layout in layouts:
            results[(name, layout)] = _unpack(out[layout])
            count = sum(int(v.size) for v in out[layout][-1].values())
            print_(f"  {_label(name)}/{layout}: {count:,} parameters exported")
    natives = [(n, native_layout(n)) for n in backends if (n, native_layout(n)) in results]
    if cpu_reference:
        native = native_layout(cpu_reference)
        try:
            out = probe(cpu_reference, native, cfg, weights, batches, script, device="cpu")
            results[(f"{cpu_reference}@cpu", native)] = _unpack(out[native])
            print_(f"  {_label(cpu_reference)}@cpu/{native}: the float32 CPU reference")
        except ProbeError as e:
            failures.append(f"{_label(cpu_reference)}@cpu: {e}")
            print_(f"  {_label(cpu_reference)}@cpu: FAILED to run\n{e}")
    pairs = [(a, b) for a, b in itertools.combinations(natives, 2)
             if reference is None or reference in (a[0], b[0])]
    pairs = [(b, a) if b[0] == reference else (a, b) for a, b in pairs]  # the reference first
    pairs += [((n, natives_l), (n, l)) for (n, natives_l) in natives for l in backend_layouts(n)[1:]
              if (n, l) in results]
    cpu = [k for k in results if cpu_reference and k[0] == f"{cpu_reference}@cpu"]
    pairs += [(cpu[0], n) for n in natives if cpu]
    print_(f"{'pair':<48}" + "".join(f"{k:>16}" for k in TOLERANCES))
    print_(f"{'tolerance':<48}" + "".join(f"{v:>16.0e}" for v in TOLERANCES.values()))
    bad_pairs = {}
    for a, b in pairs:
        c = compare(results[b], results[a], weights)
        d = {k: max(v.values()) for k, v in c.items()}
        label = f"{_label(a[0])}/{a[1]} vs {_label(b[0])}/{b[1]}"
        print_(f"{label:<48}" + "".join(f"{d[k]:>15.1e}{' ' if d[k] <= TOLERANCES[k] else '!'}"
                                        for k in TOLERANCES))
        if failed_checks(c):
            bad_pairs[label] = failed_checks(c)
    for label, failed in bad_pairs.items():  # name each failing check and every tensor that failed it
        print_(f"  FAIL {label}: " + "; ".join(failed))
    if not pairs:
        print_("nothing to compare: fewer than two backend layouts ran")
    ok = not bad_pairs and not failures and bool(pairs)
    print_("verify: " + ("PASS" if ok else "FAIL") + (f" ({len(failures)} backend(s) failed to run)"
                                                      if failures else ""))
    return 0 if ok else 1


def verify_workers(workers=2, preset="tiny", device="cpu", backends=None, steps=3, data_dir=None,
                   print_=print, batch_size=None, threads=1, reference=None) -> int:
    """`lmbench verify --workers N`: for every backend with data-parallel support, N workers
    on the framework's engine, each training on its shard of the same global batches, must
    reach what one process reaches on the whole batches: the summed training losses
    (trained_loss), every rank's trained weights (trained_weights), from the same weights,
    dropout off, `steps` SGD steps per batching kind. The bugs this exists for -- clipping
    each worker's gradient before the all-reduce, a loss scaled by the local instead of the
    global batch, workers given overlapping or missing rows -- move the weights by far more
    than the tolerance (tests/test_distributed.py injects them). `reference`: the backend
    whose one process every backend's N workers are held to (default: each its own; the
    tests' injected bugs, copies of a backend that differ only with N workers, share it)."""
    from ..backend import data_parallel

    cfg, weights, batches, script = build_case(preset, data_dir, steps=steps, batch_size=batch_size)
    script = [s for s in script if s[0] in ("reset", "train_step", "weights")]
    backends = [b for b in (backends or available_backends()) if data_parallel(b)]
    print_(f"verify --workers {workers}: preset {preset} (dropout off, global batch {cfg.batch_size}), "
           f"{steps} SGD steps per batching kind, each worker on its shard vs one process on the whole batch")
    checks = ("trained_loss", "trained_weights")
    print_(f"{'pair':<48}" + "".join(f"{k:>16}" for k in checks))
    ok, failures = bool(backends), []
    for name in backends:
        native = native_layout(name)
        try:
            one = reference or name
            single = probe(one, native_layout(one), cfg, weights, batches, script, device=device,
                           threads=threads)[native_layout(one)]
            ranks = probe(name, native, cfg, weights, batches, script, device=device, threads=threads,
                          workers=workers)
        except ProbeError as e:
            print_(f"  {_label(name)}: FAILED to run\n{e}")
            failures.append(name)
            continue
        one_process = _unpack_training(single)
        losses = np.sum([_unpack_training(r)["trained_losses"] for r in ranks], axis=0)
        moved = {k: _norm(w.astype(np.float64) - comparable(weights)[k]) for k, w in one_process["weights"].items()}
        held_to = f"{_label(reference)} " if reference else ""
        for rank, result in enumerate(ranks):
            d = {"trained_loss": {"": _rel(losses, one_process["trained_losses"])},
                 "trained_weights": _per_tensor(_unpack_training(result)["weights"], one_process["weights"], moved)}
            label = f"{_label(name)}/{native} {workers} workers (rank {rank}) vs {held_to}1"
            worst = {k: max(v.values()) for k, v in d.items()}
            print_(f"{label:<48}" + "".join(f"{worst[k]:>15.1e}{' ' if worst[k] <= TOLERANCES[k] else '!'}"
                                            for k in checks))
            if failed_checks(d):
                ok = False
                print_(f"  FAIL {label}: " + "; ".join(failed_checks(d)))
    if not backends:
        print_("nothing to compare: no backend declares DATA_PARALLEL")
    ok = ok and not failures
    print_("verify: " + ("PASS" if ok else "FAIL") + (f" ({len(failures)} backend(s) failed to run)"
                                                      if failures else ""))
    return 0 if ok else 1


def _unpack_training(results: list) -> dict:
    return {"trained_losses": np.array([r for r in results if isinstance(r, float)]),
            "weights": comparable(results[-1])}
