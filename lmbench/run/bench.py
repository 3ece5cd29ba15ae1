"""`lmbench bench`: run a suite (see lmbench.run.suite) cell by cell, one child process per run.

Every finished run is appended to results/<machine>/<UTC time>-<commit>.jsonl at once, so
Ctrl-C or a kill loses only the run in flight; --resume skips runs already recorded with
status ok for the same configuration and commit (outside a git checkout: lmbench version). Repeats are interleaved (all cells once,
then all cells again) so that a burst of load from elsewhere on the machine spreads over
cells instead of biasing every repeat of one. --deadline SECONDS bounds the suite's time:
no run starts after it, a run still going then is stopped, and the runs not started are
listed (scripts/gpu-check.sh gives a lent GPU machine's few minutes this way).
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import hashlib
import json
import math
import os
import secrets
import sys
import time
from pathlib import Path

from .. import __version__
from .. import env
from . import timing_lock
from ..env import has_gpu
from ..config import ConfigError
from ..results import ResultsError, load_records
from .runner import (RecordWriteError, append_record, check_writable, interrupt_exit_status, run_isolated,
                     signals_as_interrupt)
from ..runspec import RunSpec
from .suite import SuiteError, load_suite, spec_for, suite_path

__all__ = ["SuiteError", "has_gpu", "load_suite", "plan", "run_suite", "suite_path"]


def checkpoint_for(machine_dir: Path, spec: RunSpec, n: int) -> Path:
    """Where the n-th not-yet-recorded run of a training cell keeps its per-epoch checkpoint."""
    digest = hashlib.sha256(repr(spec.identity()).encode()).hexdigest()[:16]
    return Path(machine_dir) / "checkpoints" / f"{digest}-{n}.ckpt"


def plan(cells: list[dict], device: str, data_dir, done: dict[tuple, int]) -> list[tuple[dict, RunSpec]]:
    """(cell, spec) for every run still to do, repeats interleaved; `done` counts ok records
    per RunSpec identity already on disk (consumed here)."""
    specs = [(cell, spec_for(cell, device, data_dir).for_this_machine()) for cell in cells]
    todo = []
    for round_ in range(max(cell.get("repeats", 1) for cell in cells)):
        for cell, spec in specs:
            if round_ >= cell.get("repeats", 1):
                continue
            key = spec.identity()
            if done.get(key, 0) > 0:
                done[key] -= 1
                continue
            todo.append((cell, spec))
    return todo


def same_code(record: dict, commit: str | None) -> bool:
    """The record was made by this lmbench: the same git commit or, outside a git checkout
    (`pip install .`: no commit to know), no commit and the same lmbench version."""
    if commit:
        return record.get("git_commit") == commit
    return not record.get("git_commit") and record.get("lmbench_version") == __version__


def _already_done(machine_dir: Path, commit: str | None, warn) -> tuple[dict[tuple, int], set[Path]]:
    done, sources = {}, set()
    if not machine_dir.is_dir():
        return done, sources
    try:
        records = load_records([machine_dir], warn=warn)
    except ResultsError:  # nothing recorded yet
        return done, sources
    for r in records:
        # a skipped variant is as done as an ok run: it would be skipped again
        if r["status"] in ("ok", "skipped") and same_code(r, commit):
            key = RunSpec.from_record(r).identity()
            done[key] = done.get(key, 0) + 1
            sources.add(Path(r["_source"].rsplit(":", 1)[0]))
    return done, sources


def _preflight(todo, machine_dir: Path, results_file: Path, resume: bool, data_dir, say) -> None:
    """Everything a suite needs, checked before the first cell instead of after it: a
    writable results dir, no stale training checkpoint overwritten without --resume, and
    the data, resolved once (offline, every cell would otherwise retry the download)."""
    from ..data.download import download_ptb

    try:
        check_writable(results_file, "--results-dir")
    except ConfigError as e:
        raise SuiteError(str(e)) from e
    if not resume:
        occurrences: dict[tuple, int] = {}
        for _, spec in todo:
            if spec.epochs:
                n = occurrences[spec.identity()] = occurrences.get(spec.identity(), -1) + 1
                ckpt = checkpoint_for(machine_dir, spec, n)
                if ckpt.exists():
                    raise SuiteError(f"checkpoint {ckpt} of an interrupted training is there: pass --resume "
                                     f"to continue it, or delete it to train from the start")
    if todo:
        download_ptb(data_dir, log=say)


def run_suite(suite: str, device="auto", results_dir="results", resume=False, report=True,
              data_dir=None, out=sys.stderr, deadline: float | None = None) -> int:
    """Run every cell; 0 if all succeeded, 1 if any failed, 130 if interrupted. With
    `deadline` (seconds from this call) no run starts after it and a run in flight is
    stopped at it (recorded as failed, error_kind "deadline"); the runs not started are
    listed, and are no failure."""
    from tqdm import tqdm

    def say(msg):
        print(msg, file=out, flush=True)

    if deadline is not None and not (isinstance(deadline, (int, float)) and math.isfinite(deadline)
                                     and deadline >= 0):
        raise SuiteError(f"invalid --deadline {deadline!r}: must be a number of seconds >= 0")
    ends = None if deadline is None else time.monotonic() + deadline
    cells = load_suite(suite_path(suite))
    if device == "cuda" and not has_gpu():
        raise SuiteError("--device cuda: this machine has no NVIDIA GPU (no /dev/nvidia*, no working "
                         "`nvidia-smi -L`); use --device cpu or auto")
    commit, dirty = env.git_state()
    machine_dir = Path(results_dir) / env.machine_key()
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    # a random tail: two suites started in the same second must not share one file
    results_file = machine_dir / f"{stamp}-{(commit or 'nogit')[:10]}-{secrets.token_hex(3)}.jsonl"
    done, sources = _already_done(machine_dir, commit, say) if resume else ({}, set())
    todo = plan(cells, device, data_dir, done)
    total = sum(cell.get("repeats", 1) for cell in cells)
    _preflight(todo, machine_dir, results_file, resume, data_dir, say)
    say(f"suite {suite}: {len(todo)} run(s) to do"
        + (f", {total - len(todo)} already recorded for "
           + (f"commit {commit[:10]}" if commit else f"lmbench {__version__}") if total > len(todo) else "")
        + (" (uncommitted changes: --resume will not tell them apart)" if dirty else "")
        + f"; records go to {results_file}")
    failed = finished = 0
    not_started: list = []
    bar = None
    t_suite, peak_seconds, recorded = time.perf_counter(), None, []  # for the harness-efficiency lines
    occurrences: dict[tuple, int] = {}
    stop = signals_as_interrupt()  # SIGTERM and SIGHUP are handled like Ctrl-C, in every phase
    stop.__enter__()
    announced = timing_lock.timing(timing_lock.command_line())  # others starting meanwhile see this suite
    announced.__enter__()
    try:
        if report and todo:
            from .peak import measure_peaks, missing_peaks

            # once per machine: the report's utilisation column divides by this GEMM rate
            missing = missing_peaks([spec.backend for _, spec in todo], results_dir)
            if missing:
                say(f"measuring the float32 GEMM peak once for this machine: {', '.join(missing)} "
                    f"(`lmbench peak` re-measures)")
                t_peak = time.perf_counter()
                measure_peaks(missing, results_dir, device, say=say)
                peak_seconds = time.perf_counter() - t_peak
        bar = tqdm(total=len(todo), unit="run", file=out, dynamic_ncols=True)
        for i, (cell, spec) in enumerate(todo):
            left = None if ends is None else ends - time.monotonic()
            if left is not None and left <= 0:
                not_started = todo[i:]
                break
            if spec.epochs:
                # trainings checkpoint every epoch; `--resume` continues the interrupted one
                # (the first run of a cell not yet recorded ok) from its last epoch
                n = occurrences[spec.identity()] = occurrences.get(spec.identity(), -1) + 1
                spec = dataclasses.replace(spec, checkpoint=str(checkpoint_for(machine_dir, spec, n)), resume=resume)
            name = spec.label
            bar.set_description(name)
            bar.set_postfix_str("starting")

            def progress(event, bar=bar):
                if event.get("words_per_sec"):
                    bar.set_postfix_str(f"{event['phase']} {event['step']}/{event['steps']} "
                                        f"{event['words_per_sec']:,.0f} words/s")
            # how busy the machine was is measured by the worker around the timed window itself
            # (metrics["busy"], lmbench.env.busy_entry); another lmbench timing at the same
            # time is warned about here (lmbench.run.timing_lock)
            before = timing_lock.warning()
            timeout = cell.get("timeout")
            capped = left is not None and (timeout is None or left < timeout)  # the deadline comes first
            t_run = time.perf_counter()
            record = run_isolated(spec, timeout=left if capped else timeout, on_progress=progress)
            # the bench's clock around the run (lmbench.report.efficiency); the peak on the first run's record
            record["bench"] = {"run_seconds": round(time.perf_counter() - t_run, 3)}
            if peak_seconds is not None:
                record["bench"]["peak_seconds"], peak_seconds = round(peak_seconds, 3), None
            recorded.append(record)
            if capped and record.get("error_kind") == "timeout":
                record.update(error_kind="deadline",
                              error=f"stopped at the --deadline, {deadline:g} s after the suite began "
                                    f"(the run had {left:.0f} s left when it started); the worker was killed")
            concurrent = before or timing_lock.warning()
            if concurrent:
                record["warnings"] = [*record.get("warnings", []), concurrent]
                bar.write(f"WARNING: {concurrent}", file=out)
            record["suite"] = str(suite)
            try:
                append_record(results_file, record)
            except RecordWriteError as e:  # a full or vanished disk: the next runs would fail the same way
                bar.close()
                say(f"lmbench: error: {e}; the suite stopped. The run's record follows, save it by hand:\n"
                    f"{json.dumps(record)}")
                return 2
            if record["status"] == "ok" and spec.checkpoint:
                Path(spec.checkpoint).unlink(missing_ok=True)  # recorded: nothing left to resume
            finished += 1
            if record["status"] == "skipped":  # not applicable: neither a failure nor a number
                bar.write(f"skip   {name}: {record['reason'].splitlines()[0][:300]}", file=out)
            elif record["status"] != "ok":
                failed += 1
                bar.write(f"FAILED {name}: {record['error'].splitlines()[0][:300]}", file=out)
            else:
                bar.write(f"ok     {name}: {record['metrics']['train_words_per_sec']:,.0f} train words/s",
                          file=out)
            bar.update(1)
    except KeyboardInterrupt as e:
        if bar is not None:
            bar.close()
        again = " ".join([f"lmbench bench --suite {suite}", *([f"--device {device}"] if device != "auto" else []),
                          *([f"--results-dir {results_dir}"] if str(results_dir) != "results" else []),
                          *([f"--data-dir {data_dir}"] if data_dir else []), "--resume"])
        say(f"interrupted: {finished} of {len(todo)} run(s) finished and recorded in {results_file}; "
            f"`{again}` runs only what is missing")
        return interrupt_exit_status(e)
    finally:
        if bar is not None:
            bar.close()
        announced.__exit__(None, None, None)
        stop.__exit__(None, None, None)
    suite_seconds = time.perf_counter() - t_suite
    if recorded:
        from ..report.efficiency import breakdown, lines

        for line in lines(next(iter(breakdown(recorded).values())), suite_seconds):
            say(line)
    if report and results_file.exists():
        from ..report.document import write_report

        paths = write_report(sorted(sources | {results_file}), Path(results_dir) / "report", warn=say)
        say(f"report: {', '.join(map(str, paths))}")
    for _, spec in not_started:
        say("not started (--deadline): " + spec.label)
    say(f"suite {suite}: {finished - failed} ok, {failed} failed"
        + (f", {len(not_started)} not started: the --deadline of {deadline:g} s had passed" if not_started else ""))
    return 1 if failed else 0


def cmd_bench(a) -> int:
    return run_suite(a.suite, a.device, a.results_dir, a.resume, a.report, a.data_dir, deadline=a.deadline)


def add_parser(sub) -> None:
    p = sub.add_parser("bench", help="run a benchmark suite (one process per run) and report")
    from .suite import suites_dir

    known = ", ".join(sorted(f.stem for f in suites_dir().glob("*.toml")))
    p.add_argument("--suite", default="default", help=f"a suite in suites/ ({known}) or a .toml file "
                                                      f"(default: default)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--results-dir", default=os.environ.get("LMBENCH_RESULTS_DIR", "results"))
    p.add_argument("--resume", action="store_true", help="skip runs already recorded (ok) for this commit (outside a git checkout: this lmbench version)")
    p.add_argument("--report", dest="report", action=argparse.BooleanOptionalAction, default=True,
                   help="write results-dir/report/ at the end (--no-report to skip)")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--deadline", type=float, default=None, metavar="SECONDS",
                   help="start no run SECONDS after the suite began and stop one still going then; "
                        "the runs not started are listed")
    p.set_defaults(func=cmd_bench)
