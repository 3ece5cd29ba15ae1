"""`lmbench bench`: run a suite -- a matrix of runs from a TOML file -- one process per cell.

Suite file format (see suites/default.toml):

    [defaults]              # any run or config field, applied to every cell
    preset = "small"
    steps = 15
    [[matrix]]              # each table expands the product of its list values
    backend = ["torch", "paddle"]
    layout = ["native", "padded"]     # "native" = the backend's first layout
    batching = ["random", "bucketed"]
    batch_size = [20, 64]             # any config field may be a list

Every finished cell is appended to results/<machine>/<UTC time>-<commit>.jsonl at once,
so an interrupted suite loses only the cell in flight; --resume skips cells already
recorded with status ok for the same configuration and commit.
"""
from __future__ import annotations

import datetime as dt
import itertools
import os
import shutil
import subprocess
import sys
from pathlib import Path

from . import env
from .backend import available_backends, backend_layouts
from .config import FIELDS, ConfigError, make_config
from .results import ResultsError, cell_key, label, load_records
from .runner import RECORDED_RUN_FIELDS, append_record, run_isolated, run_spec

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

RUN_FIELDS = {"backend", "layout", "steps", "epochs", "warmup", "eval", "eval_batches", "epoch_batches",
              "timeout", "repeats", "threads", "target_ppl", "name"}
SUITES_DIR = Path(__file__).resolve().parent.parent / "suites"


class SuiteError(ValueError):
    pass


def suite_path(name_or_file: str) -> Path:
    p = Path(name_or_file)
    if p.suffix == ".toml" or p.exists():
        if not p.is_file():
            raise SuiteError(f"suite file {p} does not exist")
        return p
    p = SUITES_DIR / f"{name_or_file}.toml"
    if not p.is_file():
        known = ", ".join(sorted(f.stem for f in SUITES_DIR.glob("*.toml")))
        raise SuiteError(f"unknown suite {name_or_file!r}: known suites: {known} (or give a .toml file)")
    return p


def load_suite(path: Path) -> list[dict]:
    """Expand a suite file into cells; every problem names the file and the entry."""
    try:
        doc = tomllib.loads(Path(path).read_text())
    except tomllib.TOMLDecodeError as e:
        raise SuiteError(f"{path}: not valid TOML ({e})") from e
    unknown = set(doc) - {"defaults", "matrix"}
    if unknown:
        raise SuiteError(f"{path}: unknown top-level table(s) {sorted(unknown)}: allowed: defaults, matrix")
    defaults = doc.get("defaults", {})
    cells, seen = [], set()
    for i, entry in enumerate(doc.get("matrix", [])):
        where = f"{path}: [[matrix]] entry {i + 1}"
        merged = {**defaults, **entry}
        bad = set(merged) - RUN_FIELDS - set(FIELDS)
        if bad:
            raise SuiteError(f"{where}: unknown field(s) {sorted(bad)}: allowed: "
                             f"{', '.join(sorted(RUN_FIELDS | set(FIELDS)))}")
        if "backend" not in merged:
            raise SuiteError(f"{where}: no backend given")
        lists = {k: v if isinstance(v, list) else [v] for k, v in merged.items()}
        for values in itertools.product(*lists.values()):
            cell = dict(zip(lists, values))
            if cell["backend"] not in available_backends():
                raise SuiteError(f"{where}: unknown backend {cell['backend']!r}: available: "
                                 f"{', '.join(available_backends())}")
            layouts = backend_layouts(cell["backend"])
            layout = cell.get("layout", "native")
            cell["layout"] = layouts[0] if layout == "native" else layout
            if cell["layout"] not in layouts:
                raise SuiteError(f"{where}: backend {cell['backend']!r} has no layout {layout!r}: "
                                 f"allowed: native, {', '.join(layouts)}")
            try:
                cell["spec"] = spec_for(cell)
            except (ConfigError, TypeError) as e:
                raise SuiteError(f"{where}: {e}") from e
            key = repr(sorted((k, v) for k, v in cell.items() if k != "spec"))
            if key not in seen:  # e.g. layout "native" == "padded" for tensorflow
                seen.add(key)
                cells.append(cell)
    if not cells:
        raise SuiteError(f"{path}: no cells: add [[matrix]] tables")
    return cells


def spec_for(cell: dict, device: str = "auto", data_dir=None) -> dict:
    cfg = make_config(cell.get("preset", "small"), **{k: v for k, v in cell.items()
                                                        if k in FIELDS and k != "preset"})
    return run_spec(cfg, cell["backend"], cell["layout"], device, cell.get("threads"), cell.get("steps"),
                    cell.get("epochs"), cell.get("warmup", 10), cell.get("eval", "valid"), data_dir,
                    cell.get("target_ppl"), cell.get("eval_batches"),
                    epoch_batches=cell.get("epoch_batches"))


def has_gpu() -> bool:
    if any(Path("/dev").glob("nvidia[0-9]*")):
        return True
    smi = shutil.which("nvidia-smi")
    return bool(smi) and subprocess.run([smi, "-L"], capture_output=True).returncode == 0


def run_suite(suite: str, device="auto", results_dir="results", resume=False, report=True,
              data_dir=None, out=sys.stderr) -> int:
    from tqdm import tqdm

    cells = load_suite(suite_path(suite))
    if device == "cuda" and not has_gpu():
        raise SuiteError("--device cuda: this machine has no NVIDIA GPU (no /dev/nvidia*, no working "
                         "nvidia-smi); use --device cpu or auto")
    commit, dirty = env.git_state()
    machine_dir = Path(results_dir) / env.machine_key()
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    results_file = machine_dir / f"{stamp}-{(commit or 'nogit')[:10]}{'-dirty' if dirty else ''}.jsonl"
    done: dict[tuple, int] = {}
    if resume and machine_dir.is_dir():
        try:
            for r in load_records([machine_dir], warn=lambda m: print(m, file=out)):
                if r["status"] == "ok" and r.get("git_commit") == commit:
                    done[cell_key(r)] = done.get(cell_key(r), 0) + 1
        except ResultsError:
            pass
    todo = []
    for cell in cells:
        spec = spec_for(cell, device, data_dir)
        key = cell_key({"backend": spec["backend"], "layout": spec["layout"], "config": spec["config"],
                        "run": {k: spec.get(k) for k in RECORDED_RUN_FIELDS}})
        for _ in range(cell.get("repeats", 1)):
            if done.get(key, 0) > 0:
                done[key] -= 1
                continue
            todo.append((cell, spec))
    skipped = sum(cell.get("repeats", 1) for cell in cells) - len(todo)
    print(f"suite {suite}: {len(todo)} run(s) to do"
          + (f", {skipped} already recorded for commit {(commit or '')[:10]}" if skipped else "")
          + f"; records go to {results_file}", file=out)
    failed = 0
    bar = tqdm(todo, unit="run", file=out, dynamic_ncols=True)
    for cell, spec in bar:
        name = label({"backend": spec["backend"], "layout": spec["layout"], "config": spec["config"]})
        bar.set_description(name)

        def progress(event, bar=bar):
            if event.get("words_per_sec"):
                bar.set_postfix_str(f"{event['phase']} {event['step']}/{event['steps']} "
                                    f"{event['words_per_sec']:,.0f} words/s")
        record = run_isolated(spec, timeout=cell.get("timeout"), on_progress=progress)
        record["suite"] = str(suite)
        append_record(results_file, record)
        if record["status"] != "ok":
            failed += 1
            bar.write(f"FAILED {name}: {record['error'].splitlines()[0][:300]}")
        else:
            bar.write(f"ok     {name}: {record['metrics']['train_words_per_sec']:,.0f} train words/s")
    bar.close()
    if report and results_file.exists():
        from .report import write_report

        paths = write_report([results_file], Path(results_dir) / "report", warn=lambda m: print(m, file=out))
        print(f"report: {', '.join(map(str, paths))}", file=out)
    print(f"suite {suite}: {len(todo) - failed} ok, {failed} failed", file=out)
    return 1 if failed else 0


def cmd_bench(a) -> int:
    from .cli import Fail

    try:
        return run_suite(a.suite, a.device, a.results_dir, a.resume, a.report, a.data_dir)
    except (SuiteError, ResultsError) as e:
        raise Fail(str(e)) from e


def add_parser(sub) -> None:
    p = sub.add_parser("bench", help="run a benchmark suite (one process per cell) and report")
    p.add_argument("--suite", default="default", help="a name in suites/ or a .toml file")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--results-dir", default=os.environ.get("LMBENCH_RESULTS_DIR", "results"))
    p.add_argument("--resume", action="store_true", help="skip cells already recorded for this commit")
    p.add_argument("--no-report", dest="report", action="store_false")
    p.add_argument("--data-dir", default=None)
    p.set_defaults(func=cmd_bench)
