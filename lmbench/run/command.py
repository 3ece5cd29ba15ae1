"""`lmbench run`: one benchmark run in its own process (lmbench.run.runner), shown as it goes
(lmbench.console), its record saved."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from ..runspec import add_config_args, add_run_args, spec_from_args


def default_record_path(results_dir=None) -> Path:
    """Where `run` appends its record without --out: beside bench's, in this machine's folder
    of results/ (or $LMBENCH_RESULTS_DIR), one file per run."""
    import datetime as dt

    from .. import env

    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    root = Path(results_dir or os.environ.get("LMBENCH_RESULTS_DIR") or "results")
    return root / env.machine_key() / f"run-{stamp}.jsonl"


def cmd_run(a) -> int:
    from . import timing_lock
    from ..console import RunDisplay, reliability_warnings, summary_line
    from .runner import (RecordWriteError, append_record, interrupt_exit_status, preflight, run_isolated,
                         signals_as_interrupt, summary)

    spec = spec_from_args(a).for_this_machine()
    out = None if a.no_save else (a.out or default_record_path())
    preflight(spec, timeout=a.timeout, out=out, overwrite=a.overwrite)  # fail before the work
    from ..data.download import download_ptb

    # the data, here and now: a bad --data-dir (or no network and no mirror) fails in one line
    # before any framework starts, not inside the worker after its import
    download_ptb(spec.data_dir, log=lambda m: print(m, file=sys.stderr))
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


def add_parser(sub) -> None:
    from ..backend import available_backends

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
