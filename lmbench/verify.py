"""`lmbench verify`: the same weights and the same batches give the same numbers everywhere.

Every installed backend (each in its own process, all its layouts) imports one set of
canonical initial weights (saved as .npz) and plays the same script over the same numpy
batches -- sentence mode with random and with bucketed batching, and stream mode with
carried state. The parent compares, on numpy arrays, every layout against its backend's
native layout and every backend's native layout against every other's.

Tolerances (float32 throughout; machine epsilon 1.2e-7). Reduction order differs between
frameworks (cuDNN/oneDNN/Eigen sum in different orders), so agreement is to rounding, not
to the bit:
- loss of one step, from the same weights: relative 1e-5 (a sum of a few hundred float32
  log-probabilities differs by ~1e-6 when the summation order differs);
- gradients: global norm relative 1e-4; largest element difference over the global norm
  1e-4 (backward passes accumulate over time steps, so they drift more than the loss);
- after `steps` SGD steps per batching kind (clipped, lr 1): losses relative 1e-4, and
  the trained weights' distance ||w_a - w_b|| relative to the distance training moved
  them ||w_b - w_0||, 1e-4 -- each step feeds the rounding differences of the last into
  the next. (Relative to the weights themselves would be meaningless for biases, which
  start at 0.)
"""
from __future__ import annotations

import itertools
import sys
import tempfile
from pathlib import Path

import numpy as np

from .backend import available_backends, backend_layouts
from .config import make_config
from .corpus import load_corpus, make_batches
from .download import download_ptb
from .probe import ProbeError, probe
from .weights import comparable, init_weights, num_params

TOLERANCES = {"loss": 1e-5, "grad_norm": 1e-4, "grad_max": 1e-4, "trained_loss": 1e-4,
              "trained_weights": 1e-4}
PER_KIND = 4  # batches of each kind: random, bucketed, stream


def build_case(preset: str, data_dir=None, seed: int = 1234, steps: int = 3):
    """The shared weights, batches and script. Dropout off: its masks are framework RNG."""
    cfg = make_config(preset, dropout=0.0, seed=seed)
    corpus = load_corpus(download_ptb(data_dir, log=lambda m: print(m, file=sys.stderr)),
                         splits=("valid",))
    valid = corpus["valid"]
    steps = min(steps, PER_KIND - 1)
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


def _norm(g: dict) -> float:
    return float(np.sqrt(sum(np.sum(np.square(v, dtype=np.float64)) for v in g.values())))


def differences(a: dict, b: dict, initial: dict) -> dict:
    """Largest relative differences between two unpacked probe results."""
    init = comparable(initial)
    grad_norm = max(_rel(_norm(ga), _norm(gb)) for ga, gb in zip(a["grads"], b["grads"]))
    grad_max = max(max(float(np.max(np.abs(ga[k] - gb[k]))) for k in gb) / _norm(gb)
                   for ga, gb in zip(a["grads"], b["grads"]))
    # how far apart the trained weights are, relative to how far training moved them
    moved = _norm({k: b["weights"][k] - init[k] for k in b["weights"]})
    weights = _norm({k: a["weights"][k] - b["weights"][k] for k in b["weights"]}) / moved
    return {"loss": _rel(a["losses"], b["losses"]), "grad_norm": grad_norm, "grad_max": grad_max,
            "trained_loss": _rel(a["trained_losses"], b["trained_losses"]),
            "trained_weights": weights}


def verify(preset="tiny", device="cpu", backends=None, steps=3, data_dir=None, weights_out=None,
           print_=print) -> int:
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
            failures.append(f"{name}: {e}")
            print_(f"  {name}: FAILED to run\n{e}")
            continue
        for layout in layouts:
            results[(name, layout)] = _unpack(out[layout])
            count = sum(int(v.size) for v in out[layout][-1].values())
            print_(f"  {name}/{layout}: {count:,} parameters exported")
    natives = [(n, backend_layouts(n)[0]) for n in backends if (n, backend_layouts(n)[0]) in results]
    pairs = list(itertools.combinations(natives, 2))
    pairs += [((n, natives_l), (n, l)) for (n, natives_l) in natives for l in backend_layouts(n)[1:]
              if (n, l) in results]
    header = f"{'pair':<42}" + "".join(f"{k:>16}" for k in TOLERANCES)
    print_(header)
    print_(f"{'tolerance':<42}" + "".join(f"{v:>16.0e}" for v in TOLERANCES.values()))
    worst_ok = True
    for a, b in pairs:
        d = differences(results[b], results[a], weights)
        bad = [k for k, v in d.items() if not v <= TOLERANCES[k]]
        worst_ok &= not bad
        label = f"{a[0]}/{a[1]} vs {b[0]}/{b[1]}"
        print_(f"{label:<42}" + "".join(f"{d[k]:>15.1e}{'!' if k in bad else ' '}" for k in TOLERANCES))
    if not pairs:
        print_("nothing to compare: fewer than two backend layouts ran")
    ok = worst_ok and not failures and bool(pairs)
    print_("verify: " + ("PASS" if ok else "FAIL") + (f" ({len(failures)} backend(s) failed to run)"
                                                      if failures else ""))
    return 0 if ok else 1
