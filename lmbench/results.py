"""Reading run records back: JSONL files or directories of them, bad lines reported."""
from __future__ import annotations

import json
from pathlib import Path

from .runner import SCHEMA_VERSION


class ResultsError(ValueError):
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


def load_records(paths, warn=print, future_is_error: bool = False) -> list[dict]:
    """Every good record in `paths`; a corrupt, truncated or future-schema line is skipped
    with a warning naming file and line (or, with future_is_error, raises)."""
    files = _files(paths)
    if not files:
        raise ResultsError(f"no .jsonl results in {', '.join(map(str, paths))}: run `lmbench bench` "
                           f"or `lmbench run --out FILE.jsonl` first")
    records = []
    for f in files:
        for n, line in enumerate(f.read_text(errors="replace").splitlines(), 1):
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
                msg = (f"{f}:{n}: record has schema_version {record['schema_version']}, this lmbench "
                       f"reads {SCHEMA_VERSION}")
                if future_is_error:
                    raise ResultsError(msg + "; compare results written by the same lmbench version")
                warn(f"warning: {msg}; skipped")
                continue
            record["_source"] = f"{f}:{n}"
            records.append(record)
    return records


def cell_key(record: dict) -> tuple:
    """What makes two runs the same measurement: backend, layout, config, run settings."""
    run = {k: v for k, v in (record.get("run") or {}).items() if k != "device"}
    return (record["backend"], record["layout"], json.dumps(record["config"], sort_keys=True),
            json.dumps(run, sort_keys=True))


def label(record: dict) -> str:
    c = record["config"]
    extra = f"/{c['batching']}" if c["mode"] == "sentence" else ""
    return f"{record['backend']}/{record['layout']} {c['preset']} {c['mode']}{extra} B={c['batch_size']}"
