"""`lmbench` command line: download, run, verify, bench, report, compare, peak."""
from __future__ import annotations

from .errors import UserError

import argparse
import errno
import importlib
import importlib.util
import json
import sys

from .config import PRESETS, ConfigError
from .runspec import add_config_args, add_run_args, spec_from_args

class Fail(UserError):
    """A user-facing error: printed without a traceback, exit status 2."""


def cmd_download(a) -> int:
    from .download import download_ptb

    out = download_ptb(a.data_dir, a.mirror)
    print(f"PTB verified in {out}")
    return 0


def cmd_run(a) -> int:
    from . import timing_lock
    from .runner import (RecordWriteError, append_record, interrupt_exit_status, preflight, run_isolated,
                         signals_as_interrupt, summary)

    spec = spec_from_args(a).for_this_machine()
    preflight(spec, timeout=a.timeout, out=a.out, overwrite=a.overwrite)  # fail before the work
    try:
        with signals_as_interrupt(), timing_lock.timing(timing_lock.command_line()):
            before = timing_lock.warning()
            record = run_isolated(spec, timeout=a.timeout, on_progress=_printer(a.quiet))
            concurrent = before or timing_lock.warning()
        if concurrent:  # shown by summary()
            record["warnings"] = [*record.get("warnings", []), concurrent]
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
    elif a.compile or a.precision != "fp32":  # each layout against its own eager float32 run
        from .verify_variants import verify_variant

        code = verify_variant(a.preset, a.device, a.backends, a.steps, a.data_dir, compile=a.compile,
                              precision=a.precision)
    else:
        if a.cpu_reference and (a.compile or a.precision != "fp32"):
            raise ConfigError("verify --cpu-reference compares eager float32 on --device with float32 on the "
                              "CPU: give --cpu-reference or --compile/--precision, not both")
        code = verify(preset=a.preset, device=a.device, backends=a.backends, steps=a.steps,
                      data_dir=a.data_dir, weights_out=a.save_weights, cpu_reference=a.cpu_reference)
    if a.out:  # the verdict the report shows next to results it finds it beside
        import datetime as dt
        import json
        from pathlib import Path

        from . import env
        from .files import write_atomic

        out = Path(a.out)
        write_atomic(out, json.dumps({
            "verdict": "PASS" if code == 0 else "FAIL", "preset": a.preset, "device": a.device,
            "workers": a.workers, "compile": a.compile, "precision": a.precision,
            "cpu_reference": a.cpu_reference,
            "backends": a.backends or "all", "git_commit": env.git_state()[0],
            "utc_time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}) + "\n")
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
    add_run_args(r)  # every run setting, from lmbench.runspec.RunSpec
    r.add_argument("--overwrite", action="store_true", help="start an existing --checkpoint again from epoch 0")
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

    # each of these modules contributes its own sub-command through add_parser(sub)
    for extra in ("bench", "report", "compare", "peak", "ab", "history", "calibrate", "bisect"):
        if importlib.util.find_spec(f"lmbench.{extra}") is not None:
            importlib.import_module(f"lmbench.{extra}").add_parser(sub)
    return p


def main(argv=None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # argparse printed the problem (a bad choice, --help): its status, no exit
        return e.code if isinstance(e.code, int) else 2
    try:
        return args.func(args)
    except UserError as e:
        print(f"lmbench: error: {e}", file=sys.stderr)
        return 2
    except Exception as e:
        if isinstance(e, OSError) and e.filename:  # a file lmbench was given or writes: one line naming it
            print(f"lmbench: error: {e.filename}: {e.strerror or e}", file=sys.stderr)
            return 2
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EIO):
            # a write that failed after its open (the disk filled up mid-way): no name to give
            print(f"lmbench: error: `lmbench {args.command}` could not write its output ({e.strerror or e}): free space "
                  f"or give another output directory", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
