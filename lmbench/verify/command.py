"""`lmbench verify`: the command line over verify (eager float32), verify_workers
(data parallel) and verify_variant (compiled / reduced precision)."""
from __future__ import annotations

from ..config import ConfigError
from .variants import verify_variant
from .verify import verify, verify_workers


def cmd_verify(a) -> int:
    if a.workers < 1:
        raise ConfigError(f"invalid workers={a.workers}: must be a positive integer")
    if a.workers > 1:
        if a.compile or a.precision != "fp32":
            raise ConfigError("verify --workers checks data-parallel training in eager fp32: give --workers "
                              "or --compile/--precision, not both")
        code = verify_workers(a.workers, preset=a.preset, device=a.device, backends=a.backends,
                              steps=a.steps, data_dir=a.data_dir)
    elif a.compile or a.precision != "fp32":  # each layout against its own eager float32 run
        if a.cpu_reference:
            raise ConfigError("verify --cpu-reference compares eager float32 on --device with float32 on the "
                              "CPU: give --cpu-reference or --compile/--precision, not both")
        code = verify_variant(a.preset, a.device, a.backends, a.steps, a.data_dir, compile=a.compile,
                              precision=a.precision)
    else:
        code = verify(preset=a.preset, device=a.device, backends=a.backends, steps=a.steps,
                      data_dir=a.data_dir, weights_out=a.save_weights, cpu_reference=a.cpu_reference)
    if a.out:  # the verdict the report shows next to results it finds it beside
        import datetime as dt
        import json
        from pathlib import Path

        from .. import env
        from ..files import write_atomic

        out = Path(a.out)
        write_atomic(out, json.dumps({
            "verdict": "PASS" if code == 0 else "FAIL", "preset": a.preset, "device": a.device,
            "workers": a.workers, "compile": a.compile, "precision": a.precision,
            "cpu_reference": a.cpu_reference,
            "backends": a.backends or "all", "git_commit": env.git_state()[0],
            "utc_time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}) + "\n")
        print(f"verdict written to {out}")
    return code


def add_parser(sub) -> None:
    from ..config import PRESETS
    from ..runspec import add_run_args

    v = sub.add_parser("verify", help="prove the backends compute the same function")
    v.add_argument("--preset", default="tiny", choices=sorted(PRESETS))
    v.add_argument("--device", default="cpu", help="auto | cpu | cuda")
    v.add_argument("--backends", nargs="*", default=None, help="default: every backend")
    v.add_argument("--steps", type=int, default=3, help="SGD steps before comparing weights")
    v.add_argument("--data-dir", default=None)
    add_run_args(v, only=("compile", "precision"))
    v.add_argument("--save-weights", default=None, help="keep the shared initial weights (.npz) here")
    v.add_argument("--cpu-reference", default=None, metavar="BACKEND",
                   help="also run BACKEND's native layout on the CPU and compare every backend on --device "
                        "with it (float32 on the GPU against float32 on the CPU)")
    v.add_argument("--workers", type=int, default=1, help="N > 1: N data-parallel workers on each framework's "
                   "engine against one process (every backend that declares DATA_PARALLEL)")
    v.add_argument("--out", default=None, help="write the verdict as JSON here (e.g. results/<machine>/verify.json: "
                                               "the report shows it)")
    v.set_defaults(func=cmd_verify)
