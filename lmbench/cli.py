"""`lmbench` command line: download, run, verify, bench, report, compare, peak."""
from __future__ import annotations

from .errors import UserError, did_you_mean

import argparse
import errno
import importlib
import importlib.util
import json
import os
import sys
from pathlib import Path

from .config import PRESETS, ConfigError
from .runspec import add_config_args, add_run_args, spec_from_args

class Fail(UserError):
    """A user-facing error: printed without a traceback, exit status 2."""


class Parser(argparse.ArgumentParser):
    """argparse that answers a mistyped choice with the closest allowed one, as suites do
    (sub-command parsers are of the same class)."""

    def _check_value(self, action, value):
        if action.choices is not None and value not in action.choices:
            choices = ", ".join(map(repr, action.choices))
            raise argparse.ArgumentError(action, f"invalid choice: {value!r}{did_you_mean(value, action.choices)} "
                                                 f"(choose from {choices})")


def cmd_download(a) -> int:
    from .download import download_ptb

    out = download_ptb(a.data_dir, a.mirror)
    print(f"PTB verified in {out}")
    return 0


def default_record_path(results_dir=None) -> Path:
    """Where `run` appends its record without --out: beside bench's, in this machine's folder
    of results/ (or $LMBENCH_RESULTS_DIR), one file per run."""
    import datetime as dt

    from . import env

    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    root = Path(results_dir or os.environ.get("LMBENCH_RESULTS_DIR") or "results")
    return root / env.machine_key() / f"run-{stamp}.jsonl"


def cmd_run(a) -> int:
    from . import timing_lock
    from .console import RunDisplay, reliability_warnings, summary_line
    from .runner import (RecordWriteError, append_record, interrupt_exit_status, preflight, run_isolated,
                         signals_as_interrupt, summary)

    spec = spec_from_args(a).for_this_machine()
    out = None if a.no_save else (a.out or default_record_path())
    preflight(spec, timeout=a.timeout, out=out, overwrite=a.overwrite)  # fail before the work
    display = None if a.quiet else RunDisplay(sys.stderr)
    try:
        with signals_as_interrupt(), timing_lock.timing(timing_lock.command_line()):
            before = timing_lock.warning()
            record = run_isolated(spec, timeout=a.timeout, on_progress=display)
            concurrent = before or timing_lock.warning()
        if concurrent:  # shown by summary()
            record["warnings"] = [*record.get("warnings", []), concurrent]
    except KeyboardInterrupt as e:
        if display:
            display.finish()
        print("lmbench: interrupted: the worker was stopped, nothing was recorded"
              + (f"; `--resume` continues from {a.checkpoint}'s last epoch" if a.checkpoint else ""),
              file=sys.stderr)
        return interrupt_exit_status(e)
    if display:
        display.finish()
    print(summary(record))
    if out:
        try:
            append_record(out, record)
        except RecordWriteError as e:
            print(f"lmbench: error: {e}; the record follows, save it by hand:\n{json.dumps(record)}",
                  file=sys.stderr)
            return 2
    for warning in reliability_warnings(record):
        print(f"WARNING: {warning}")
    print(summary_line(record, str(out) if out else None))
    return 0 if record["status"] in ("ok", "skipped") else 1


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
    from . import __version__
    from .backend import available_backends

    p = Parser(prog="lmbench", description=__doc__)
    p.add_argument("--version", action="version", version=f"lmbench {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("download", help="download and verify Penn Treebank")
    d.add_argument("--data-dir", default=None, help="cache directory (default: data/ or $LMBENCH_DATA_DIR)")
    d.add_argument("--mirror", default=None, help="a directory or file://, http(s):// base URL tried first "
                                                  "(default: $LMBENCH_PTB_MIRROR)")
    d.set_defaults(func=cmd_download)

    r = sub.add_parser("run", help="one benchmark run in its own process")
    r.add_argument("--backend", required=True, help=f"the framework: {', '.join(available_backends())} (the "
                                                    f"backends here), or the path of a backend module (.py)")
    r.add_argument("--layout", default=None, help="default: the backend's native layout")
    add_config_args(r)
    add_run_args(r)  # every run setting, from lmbench.runspec.RunSpec
    r.add_argument("--overwrite", action="store_true", help="start an existing --checkpoint again from epoch 0")
    r.add_argument("--timeout", type=float, default=None, help="kill the run after this many seconds")
    r.add_argument("--data-dir", default=None)
    save = r.add_mutually_exclusive_group()
    save.add_argument("--out", default=None, help="append the JSON record to this .jsonl file (default: "
                                                  "results/<machine>/run-<UTC time>.jsonl, or under "
                                                  "$LMBENCH_RESULTS_DIR)")
    save.add_argument("--no-save", action="store_true", help="keep no record (the last line says so)")
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
