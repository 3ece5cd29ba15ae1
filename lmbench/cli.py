"""`lmbench` command line: download, run, verify, bench, report, compare, peak."""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import sys

from .config import PRESETS, Config, ConfigError, make_config

# config fields settable from the command line, with their types
OVERRIDES = {"hidden": int, "layers": int, "num_steps": int, "batch_size": int,
             "dropout": float, "init_scale": float, "lr": float, "decay_after": int,
             "lr_decay": float, "clip": float, "seed": int}


class Fail(Exception):
    """A user-facing error: printed without a traceback, exit status 2."""


def add_config_args(p: argparse.ArgumentParser, mode_default="sentence") -> None:
    p.add_argument("--preset", default="small", choices=sorted(PRESETS))
    p.add_argument("--mode", default=mode_default, help="sentence | stream")
    p.add_argument("--batching", default="random", help="random | bucketed (sentence mode)")
    for name, typ in OVERRIDES.items():
        p.add_argument("--" + name.replace("_", "-"), type=typ, default=None,
                       help=f"override the preset's {name}")


def add_variant_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--compile", action="store_true",
                   help="run the step through the framework's own compiler (each backend's README row says which)")
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"),
                   help="fp32 (true float32, default) or mixed precision in bf16/fp16; a variant a "
                        "framework cannot apply is recorded as skipped with the reason")


def config_from_args(a) -> Config:
    overrides = {k: getattr(a, k) for k in OVERRIDES}
    overrides["epochs"] = getattr(a, "epochs", None)  # `run --epochs N` trains N epochs
    return make_config(a.preset, mode=a.mode, batching=a.batching, **overrides)


def cmd_download(a) -> int:
    from .download import download_ptb

    out = download_ptb(a.data_dir, a.mirror)
    print(f"PTB verified in {out}")
    return 0


def cmd_run(a) -> int:
    from .runner import (RecordWriteError, append_record, interrupt_exit_status, preflight, run_isolated,
                         run_spec, signals_as_interrupt, summary)

    cfg = config_from_args(a)
    spec = run_spec(cfg, a.backend, a.layout, a.device, a.threads, a.steps, a.epochs, a.warmup,
                    a.eval, a.data_dir, a.target_ppl, a.eval_batches, a.checkpoint, a.resume,
                    a.epoch_batches, oversubscribe=a.oversubscribe, workers=a.workers, scaling=a.scaling,
                    nodes=a.nodes, node_rank=a.node_rank, rendezvous=a.rendezvous, compile=a.compile,
                    precision=a.precision)
    preflight(spec, timeout=a.timeout, out=a.out, overwrite=a.overwrite)  # fail before the work
    try:
        with signals_as_interrupt():
            record = run_isolated(spec, timeout=a.timeout, on_progress=_printer(a.quiet))
    except KeyboardInterrupt as e:
        print("lmbench: interrupted: the worker was stopped, nothing was recorded"
              + (f"; `--resume` continues from {a.checkpoint}'s last epoch" if a.checkpoint else ""),
              file=sys.stderr)
        return interrupt_exit_status(e)
    print(summary(record))
    if a.out:
        try:
            append_record(a.out, record)
        except RecordWriteError as e:
            print(f"lmbench: error: {e}; the record follows, save it by hand:\n{json.dumps(record)}",
                  file=sys.stderr)
            return 2
        print(f"record appended to {a.out}")
    return 0 if record["status"] in ("ok", "skipped") else 1


def _printer(quiet: bool):
    def show(event):
        if quiet:
            return
        if event.get("phase") == "epoch":
            print(f"  epoch {event['epoch']}: lr {event['lr']:.4g} train ppl {event['train_ppl']:.2f}"
                  + (f" valid ppl {event['valid_ppl']:.2f}" if "valid_ppl" in event else ""),
                  file=sys.stderr)
        elif event.get("words_per_sec"):
            print(f"  {event['phase']}: step {event['step']}/{event['steps']} "
                  f"{event['words_per_sec']:,.0f} words/s", file=sys.stderr)
    return show


def cmd_verify(a) -> int:
    from .verify import verify, verify_workers

    if a.workers < 1:
        raise ConfigError(f"invalid workers={a.workers}: must be a positive integer")
    if a.workers > 1:
        if a.compile or a.precision != "fp32":
            raise ConfigError("verify --workers checks data-parallel training in eager fp32: give --workers "
                              "or --compile/--precision, not both")
        code = verify_workers(a.workers, preset=a.preset, device=a.device, backends=a.backends,
                              steps=a.steps, data_dir=a.data_dir)
    else:
        if a.cpu_reference and (a.compile or a.precision != "fp32"):
            raise ConfigError("verify --cpu-reference compares eager float32 on --device with float32 on the "
                              "CPU: give --cpu-reference or --compile/--precision, not both")
        code = verify(preset=a.preset, device=a.device, backends=a.backends, steps=a.steps,
                      data_dir=a.data_dir, weights_out=a.save_weights, compile=a.compile, precision=a.precision,
                      cpu_reference=a.cpu_reference)
    if a.out:  # the verdict the report shows next to results it finds it beside
        import datetime as dt
        import json
        import os
        from pathlib import Path

        from . import env

        out = Path(a.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.tmp")
        tmp.write_text(json.dumps({
            "verdict": "PASS" if code == 0 else "FAIL", "preset": a.preset, "device": a.device,
            "workers": a.workers, "compile": a.compile, "precision": a.precision,
            "cpu_reference": a.cpu_reference,
            "backends": a.backends or "all", "git_commit": env.git_state()[0],
            "utc_time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}) + "\n")
        os.replace(tmp, out)
        print(f"verdict written to {out}")
    return code


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lmbench", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("download", help="download and verify Penn Treebank")
    d.add_argument("--data-dir", default=None, help="cache directory (default: data/ or $LMBENCH_DATA_DIR)")
    d.add_argument("--mirror", default=None, help="a directory or file://, http(s):// base URL tried first "
                                                  "(default: $LMBENCH_PTB_MIRROR)")
    d.set_defaults(func=cmd_download)

    r = sub.add_parser("run", help="one benchmark run in its own process")
    r.add_argument("--backend", required=True)
    r.add_argument("--layout", default=None, help="default: the backend's native layout")
    add_config_args(r)
    r.add_argument("--device", default="auto", help="auto | cpu | cuda")
    r.add_argument("--threads", type=int, default=None, help="CPU threads per framework (default: all cores)")
    r.add_argument("--workers", type=int, default=1,
                   help="data-parallel worker processes on the framework's own engine, each with "
                        "threads/N threads (default 1: no data parallelism)")
    r.add_argument("--scaling", default="strong", help="with --workers: strong (the preset's batch split "
                   "over the workers, default) | weak (each worker gets a whole batch)")
    r.add_argument("--nodes", type=int, default=1, help="with --workers: machines in the job; run the same "
                   "command on each, with its --node-rank and machine 0's --rendezvous HOST:PORT")
    r.add_argument("--node-rank", type=int, default=0, help="this machine's place in the job, 0..nodes-1")
    r.add_argument("--rendezvous", default=None, help="HOST:PORT of machine 0, where the workers meet")
    r.add_argument("--steps", type=int, default=None, help="timed training steps (default 200)")
    r.add_argument("--epochs", type=int, default=None, help="train full epochs with the lr schedule")
    r.add_argument("--warmup", type=int, default=10, help="untimed warm-up steps")
    r.add_argument("--eval", default="valid", help="valid | test | both | none")
    r.add_argument("--eval-batches", type=int, default=None,
                   help="evaluate only the first N batches of the split (the record says so)")
    r.add_argument("--epoch-batches", type=int, default=None,
                   help="with --epochs: train only the first N batches of every epoch")
    r.add_argument("--checkpoint", default=None, help="with --epochs: checkpoint file written after every epoch")
    r.add_argument("--resume", action="store_true", help="continue from --checkpoint if it exists")
    r.add_argument("--overwrite", action="store_true", help="start an existing --checkpoint again from epoch 0")
    r.add_argument("--oversubscribe", action="store_true",
                   help="allow --threads above the machine's CPU count (the record carries a warning)")
    add_variant_args(r)
    r.add_argument("--target-ppl", type=float, default=None, help="time-to-quality target (valid ppl)")
    r.add_argument("--timeout", type=float, default=None, help="kill the run after this many seconds")
    r.add_argument("--data-dir", default=None)
    r.add_argument("--out", default=None, help="append the JSON record to this .jsonl file")
    r.add_argument("--quiet", action="store_true")
    r.set_defaults(func=cmd_run)

    v = sub.add_parser("verify", help="prove the backends compute the same function")
    v.add_argument("--preset", default="tiny", choices=sorted(PRESETS))
    v.add_argument("--device", default="cpu", help="auto | cpu | cuda")
    v.add_argument("--backends", nargs="*", default=None, help="default: every backend")
    v.add_argument("--steps", type=int, default=3, help="SGD steps before comparing weights")
    v.add_argument("--data-dir", default=None)
    add_variant_args(v)
    v.add_argument("--save-weights", default=None, help="keep the shared initial weights (.npz) here")
    v.add_argument("--cpu-reference", default=None, metavar="BACKEND",
                   help="also run BACKEND's native layout on the CPU and compare every backend on --device "
                        "with it (float32 on the GPU against float32 on the CPU)")
    v.add_argument("--workers", type=int, default=1, help="N > 1: N data-parallel workers on each framework's "
                   "engine against one process (every backend that declares DATA_PARALLEL)")
    v.add_argument("--out", default=None, help="write the verdict as JSON here (e.g. results/<machine>/verify.json: "
                                               "the report shows it)")
    v.set_defaults(func=cmd_verify)

    # each of these modules contributes its own sub-command through add_parser(sub)
    for extra in ("bench", "report", "compare", "peak", "ab", "history", "calibrate"):
        if importlib.util.find_spec(f"lmbench.{extra}") is not None:
            importlib.import_module(f"lmbench.{extra}").add_parser(sub)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (Fail, ConfigError) as e:
        print(f"lmbench: error: {e}", file=sys.stderr)
        return 2
    except Exception as e:
        from .backend import BackendUnavailable
        from .corpus import CorpusError
        from .download import DownloadError

        if isinstance(e, (BackendUnavailable, CorpusError, DownloadError)):
            print(f"lmbench: error: {e}", file=sys.stderr)
            return 2
        if isinstance(e, OSError) and e.filename:  # a file lmbench was given or writes: one line naming it
            print(f"lmbench: error: {e.filename}: {e.strerror or e}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
