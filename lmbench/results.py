"""Reading run records back: JSONL files or directories of them, bad lines reported."""
from __future__ import annotations

from .errors import UserError

import json
import math
from pathlib import Path

from .config import ConfigError
from .run.runner import SCHEMA_VERSION
from .runspec import RunSpec, variant_label


class ResultsError(UserError, ValueError):
    """Unusable results input; the message names the file and the problem."""


def _files(paths) -> list[Path]:
    files = []
    for p in map(Path, paths):
        if p.is_dir():
            files += sorted(f for f in p.rglob("*.jsonl") if "baselines" not in f.parts or p.name == "baselines")
        elif p.is_file():
            files.append(p)
        else:
            raise ResultsError(f"{p}: no such file or directory")
    return files


CONFIG_KEYS = ("preset", "mode", "batching", "batch_size")  # what labels, keys and reports read

# The one schema records are read against: the type of every field a reader (report,
# history, compare, calibrate, bench --resume) uses, where it is there at all (older records
# lack newer fields). NUMBER may be NaN (a diverged perplexity is recorded as NaN).
STR, INT, NUMBER, BOOL, TABLE, LIST = "a string", "an integer", "a number", "true or false", "a table", "a list"
_CHECKS = {
    STR: lambda v: isinstance(v, str),
    INT: lambda v: isinstance(v, int) and not isinstance(v, bool),
    NUMBER: lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    BOOL: lambda v: isinstance(v, bool),
    TABLE: lambda v: isinstance(v, dict),
    LIST: lambda v: isinstance(v, list),
}
SCHEMA = {
    "": {"run_id": STR, "utc_time": STR, "device": STR, "threads": INT, "git_commit": STR, "git_dirty": BOOL,
         "lmbench_version": STR, "hostname": STR, "cpu_model": STR, "cpu_count": INT, "environment": TABLE,
         "load_average": NUMBER, "warnings": LIST, "suite": STR, "error_kind": STR, "metrics": TABLE},
    "config": {"preset": STR, "mode": STR, "batching": STR, "batch_size": INT, "hidden": INT, "layers": INT,
               "num_steps": INT, "vocab_size": INT, "epochs": INT, "seed": INT, "lr": NUMBER},
    "run": {"steps": INT, "epochs": INT, "warmup": INT, "eval": STR, "eval_batches": INT, "epoch_batches": INT,
            "device": STR, "threads": INT, "workers": INT, "scaling": STR, "nodes": INT, "node_rank": INT,
            "compile": BOOL, "precision": STR},
    "environment": {"framework": STR, "framework_version": STR, "device_name": STR},
    "metrics": {"train_words_per_sec": NUMBER, "eval_words_per_sec": NUMBER, "train_seconds": NUMBER,
                "steps": INT, "warmup_steps": INT, "tokens": INT, "timed_tokens": INT, "train_ppl": NUMBER,
                "valid_ppl": NUMBER, "test_ppl": NUMBER, "peak_memory_bytes": NUMBER, "padding_fraction": NUMBER,
                "achieved_flops_per_sec": NUMBER, "flops_per_token": NUMBER, "first_step_ms": NUMBER,
                "warmup_seconds": NUMBER, "time_to_target_seconds": NUMBER, "target_ppl": NUMBER,
                "step_time_ms": TABLE, "epoch_log": LIST, "data_parallel": TABLE, "cold_shapes": TABLE,
                "compile": TABLE},
    "metrics.step_time_ms": {"median": NUMBER, "p10": NUMBER, "p90": NUMBER, "samples": LIST},
}


def _wrong_type(record: dict) -> str | None:
    """The first field (dotted path) whose value is not of its SCHEMA type; null is allowed."""
    for where, fields in SCHEMA.items():
        table = record
        for part in filter(None, where.split(".")):
            table = table.get(part) if isinstance(table, dict) else None
        if not isinstance(table, dict):
            continue  # absent or null (a failed run has no metrics); a wrong type is caught one level up
        for name, kind in fields.items():
            value = table.get(name)
            if value is not None and not _CHECKS[kind](value):
                return f"{where + '.' if where else ''}{name} is {value!r:.40}, not {kind}"
    samples = ((record.get("metrics") or {}).get("step_time_ms") or {}).get("samples") or []
    if not all(_CHECKS[NUMBER](v) for v in samples):
        return "metrics.step_time_ms.samples holds a value that is not a number"
    epochs = (record.get("metrics") or {}).get("epoch_log") or []
    if not all(isinstance(e, dict) and all(v is None or _CHECKS[NUMBER](v) for v in e.values()) for e in epochs):
        return "metrics.epoch_log holds an entry that is not a table of numbers"
    return None


def _incomplete(record: dict) -> str | None:
    """Why a JSON-valid record cannot be used (it would break a reader), or None."""
    for key in ("backend", "layout"):
        if not isinstance(record.get(key), str):
            return f"no {key!r}"
    config = record.get("config")
    if not isinstance(config, dict) or any(k not in config for k in CONFIG_KEYS):
        return f"'config' lacks one of {', '.join(CONFIG_KEYS)}"
    if not isinstance(record.get("run", {}) or {}, dict):
        return "'run' is not a table of run settings"
    wrong = _wrong_type(record)
    if wrong:
        return wrong
    try:
        RunSpec.from_record(record)
    except (ConfigError, TypeError) as e:
        return f"its settings are not a run this lmbench can read ({e})"
    if record.get("status") not in ("ok", "failed", "skipped"):
        return f"status {record.get('status')!r} is none of 'ok', 'failed', 'skipped'"
    if record["status"] == "ok":
        m = record.get("metrics")
        wps = m.get("train_words_per_sec") if isinstance(m, dict) else None
        if (not isinstance(wps, (int, float)) or isinstance(wps, bool) or not math.isfinite(wps)
                or wps <= 0):
            return f"an ok record whose train_words_per_sec is {wps!r}, not a positive number"
    elif record["status"] == "skipped":
        if not isinstance(record.get("reason"), str):
            return "a skipped record without a 'reason'"
    elif not isinstance(record.get("error"), str):
        return "a failed record without an 'error' message"
    return None


def _lines(f: Path) -> list[str]:
    try:
        return f.read_bytes().decode("utf-8", errors="replace").split("\n")  # JSONL: \n only, not \x0c etc.
    except OSError as e:
        raise ResultsError(f"{f}: cannot be read ({e.strerror})") from e


def load_records(paths, warn=print, future_is_error: bool = False) -> list[dict]:
    """Every good record in `paths`; a corrupt, truncated, incomplete or future-schema line is
    skipped with a warning naming file and line. With future_is_error (strict, as `compare`
    reads), a future schema or a file that holds no usable record raises ResultsError."""
    files = _files(paths)
    if not files:
        raise ResultsError(f"no .jsonl results in {', '.join(map(str, paths))}: run `lmbench bench` "
                           f"or `lmbench run --out FILE.jsonl` first")
    records = []
    for f in files:
        before = len(records)
        for n, line in enumerate(_lines(f), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                if not isinstance(record, dict) or "schema_version" not in record:
                    raise ValueError("not a run record")
            except ValueError as e:
                warn(f"warning: {f}:{n}: skipped a corrupt or truncated record ({e})")
                continue
            if record["schema_version"] != SCHEMA_VERSION:
                msg = (f"{f}:{n}: record has schema_version {record['schema_version']!r}, this lmbench "
                       f"reads {SCHEMA_VERSION}")
                if future_is_error:
                    raise ResultsError(msg + "; compare results written by the same lmbench version")
                warn(f"warning: {msg}; skipped")
                continue
            problem = _incomplete(record)
            if problem:
                warn(f"warning: {f}:{n}: skipped an incomplete record ({problem})")
                continue
            record["_source"] = f"{f}:{n}"
            records.append(record)
        if future_is_error and len(records) == before:
            raise ResultsError(f"{f}: holds no usable run record (empty, or every line was skipped): "
                               f"give a .jsonl file written by `lmbench run --out` or `lmbench bench`")
    return records


def variant(record: dict) -> str:
    """The run variant: "eager fp32" (the default), "compile: embedding+head", "bf16", ...; the
    compile scope the record names, else the one its backend declares (older records)."""
    from .backend import compile_scope

    run = record.get("run") or {}
    scope = None
    if run.get("compile"):
        scope = (record.get("environment") or {}).get("compile_scope") or compile_scope(str(record.get("backend")))
    return variant_label(bool(run.get("compile")), run.get("precision") or "fp32", scope)


def label(record: dict) -> str:
    """One line naming the run: backend/layout preset mode/batching B=... [variant] xN workers."""
    try:
        return RunSpec.from_record(record).label
    except (ConfigError, TypeError, KeyError):  # a record this lmbench cannot read as a run
        return f"{record.get('backend')}/{record.get('layout')} (unreadable settings)"
