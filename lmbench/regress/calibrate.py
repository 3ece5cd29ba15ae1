"""`lmbench calibrate RECORDS...`: how often `compare`'s rule cries wolf, and what it catches.

From real repeats of the same code (many runs per cell, recorded in several sessions) it
draws comparisons the way a CI job meets them:

  * null, random split: 2 x n runs of a cell drawn without replacement from all sessions,
    the first n as baseline, the rest as candidate -- nothing changed, any alarm is false;
  * null, session vs session: every ordered pair of sessions, each session's runs as one
    side -- the drift between two recording times, the harder case;
  * slowdown s: a random split as above with every candidate run's words/s multiplied by
    (1 - s), i.e. a change that makes whole runs s slower.

and prints, per condition, the share of comparisons the rule flags (seeded: the same
records give the same table).

With --save it also writes RESULTS_DIR/<machine>/calibration.json for the records' machine
(one machine kind only): per cell and over all cells, the run-to-run spread limit
((max - min) / median of 5-run draws, 99th percentile) that `compare` admits a baseline
under, and the noise band of one run against another (2.5th-97.5th percentile of the
ratio of two runs) that `history` shows where a commit has too few runs for a verdict.
Calibrate on runs recorded while the machine was quiet: a limit drawn from loaded runs
admits loaded baselines.
"""
from __future__ import annotations

import datetime as dt
import itertools
import json
import os
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from .. import env
from .compare import CALIBRATION_FILE, MIN_RUNS, _key, _percent, busy_of, spread, throughput_verdict
from ..results import ResultsError, label, load_records

SLOWDOWNS = (0.10, 0.15, 0.25)


def _run(words: float) -> dict:
    return {"metrics": {"train_words_per_sec": words}}


def _flags(base: list[float], cand: list[float], max_slowdown: float) -> bool:
    return throughput_verdict(list(map(_run, base)), list(map(_run, cand)), max_slowdown)[3].startswith("REGRESSION")


def pools(records) -> dict[tuple, dict[str, list[float]]]:
    """Per cell: words/s of every ok run, by session (the file a run was recorded in)."""
    out: dict[tuple, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in records:
        if r["status"] == "ok" and r.get("metrics"):
            out[_key(r)][r["_source"].rsplit(":", 1)[0]].append(r["metrics"]["train_words_per_sec"])
    return out


def calibrate(records, draws=2000, runs=MIN_RUNS, max_slowdown=0.10, seed=0, slowdowns=SLOWDOWNS) -> dict:
    """{"cells": [label...], "rows": [(condition, [(flagged, total) per cell])]}"""
    rng = np.random.default_rng(seed)
    by_cell = pools(records)
    names = {k: label(next(r for r in records if r["status"] == "ok" and _key(r) == k)) for k in by_cell}
    for k, sessions in by_cell.items():
        n = sum(map(len, sessions.values()))
        if n < 2 * runs:
            raise ResultsError(f"{names[k]}: {n} run(s); a comparison of {runs} vs {runs} runs needs at least "
                               f"{2 * runs} (record more repeats)")
    rows = []
    for s in (0.0, *slowdowns):
        counts = []
        for k, sessions in by_cell.items():
            pool = np.array([w for ws in sessions.values() for w in ws])
            flagged = 0
            for _ in range(draws):
                pick = rng.choice(len(pool), 2 * runs, replace=False)
                flagged += _flags(pool[pick[:runs]], pool[pick[runs:]] * (1 - s), max_slowdown)
            counts.append((flagged, draws))
        rows.append(("no change, runs drawn from all sessions" if s == 0 else f"{s:.0%} slower runs", counts))
        if s == 0:
            counts = []
            for k, sessions in by_cell.items():
                pairs = [(a, b) for a, b in itertools.permutations(sessions.values(), 2)
                         if len(a) >= runs and len(b) >= runs]
                counts.append((sum(_flags(a[:runs], b[:runs], max_slowdown) for a, b in pairs), len(pairs)))
            rows.append(("no change, one session vs another", counts))
    return {"cells": [names[k] for k in by_cell], "rows": rows,
            "sessions": {names[k]: {s: len(w) for s, w in v.items()} for k, v in by_cell.items()}}


def noise(records, runs=MIN_RUNS, draws=2000, seed=0) -> dict:
    """The machine's noise, per cell label and over all cells ("all"): {"spread_limit": the 99th
    percentile of spread() over draws of `runs` runs, "pair_band": [2.5th, 97.5th percentile]
    of one run's words/s over another's, "runs": n}."""
    rng = np.random.default_rng(seed)
    by_cell = pools(records)
    names = {k: label(next(r for r in records if r["status"] == "ok" and _key(r) == k)) for k in by_cell}
    out, spreads, pairs = {}, [], []
    for k, sessions in by_cell.items():
        pool = np.array([w for ws in sessions.values() for w in ws])
        if len(pool) < runs:
            raise ResultsError(f"{names[k]}: {len(pool)} run(s); the noise of {runs}-run draws needs at least {runs}")
        cell_spreads = [spread(list(pool[rng.choice(len(pool), runs, replace=False)])) for _ in range(draws)]
        i, j = rng.integers(len(pool), size=(2, draws))
        keep = i != j
        cell_pairs = list(pool[i[keep]] / pool[j[keep]])
        out[names[k]] = {"spread_limit": round(float(np.percentile(cell_spreads, 99)), 4),
                         "pair_band": [round(float(q), 4) for q in np.percentile(cell_pairs, [2.5, 97.5])],
                         "runs": int(len(pool))}
        spreads += cell_spreads
        pairs += cell_pairs
    out["all"] = {"spread_limit": round(float(np.percentile(spreads, 99)), 4),
                  "pair_band": [round(float(q), 4) for q in np.percentile(pairs, [2.5, 97.5])],
                  "runs": int(sum(c["runs"] for c in out.values()))}
    return out


def save_calibration(records, results_dir, runs=MIN_RUNS, seed=0) -> Path:
    """Write RESULTS_DIR/<machine>/calibration.json (the records' one machine kind)."""
    keys = sorted({env.record_machine_key(r) for r in records if r["status"] == "ok"})
    if len(keys) != 1:
        raise ResultsError(f"the records come from {len(keys)} machine kinds ({', '.join(keys)}): a calibration "
                           f"belongs to one; give the records of one machine")
    loud = [r for r in records if r["status"] == "ok" and not (busy_of(r) and busy_of(r).get("busy") is False)]
    if loud:
        busy = [r for r in loud if busy_of(r)]
        raise ResultsError(f"{len(loud)} run(s) were not measured quiet ({len(busy)} recorded while the machine was "
                           f"busy, {len(loud) - len(busy)} without a busy measurement, i.e. by an older lmbench): a "
                           f"limit drawn from them would admit loaded baselines; calibrate runs recorded on a quiet "
                           f"machine by this lmbench")
    cells = noise(records, runs, seed=seed)
    data = {"machine_key": keys[0], "spread_limit": cells["all"]["spread_limit"], "cells": cells,
            "runs_per_draw": runs, "utc_time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "sources": sorted({r["_source"].rsplit(":", 1)[0] for r in records})}
    path = Path(results_dir) / keys[0] / CALIBRATION_FILE
    from ..files import write_atomic

    write_atomic(path, json.dumps(data, indent=1) + "\n")
    return path


def markdown(result: dict) -> str:
    cells = result["cells"]
    lines = ["| condition | " + " | ".join(cells) + " | all cells |", "|---|" + "---:|" * (len(cells) + 1)]
    for condition, counts in result["rows"]:
        flagged, total = sum(f for f, _ in counts), sum(t for _, t in counts)
        per_cell = " | ".join(f"{f / t:.1%} ({f}/{t})" if t else "-" for f, t in counts)
        lines.append(f"| {condition} | {per_cell} | " + (f"{flagged / total:.1%} |" if total else "- |"))
    return "\n".join(lines)


def cmd_calibrate(a) -> int:
    try:
        for name, value in (("--runs", a.runs), ("--draws", a.draws)):
            if value < 1:  # before reading anything
                raise ResultsError(f"{name} {value}: give a positive number (default {MIN_RUNS if name == '--runs' else 2000})")
        records = load_records(a.records, warn=lambda m: print(m, file=sys.stderr))
        slowdowns = tuple(_percent(s) for s in a.slowdowns.split(","))
        result = calibrate(records, a.draws, a.runs, _percent(a.max_slowdown), a.seed, slowdowns)
    except ResultsError as e:
        print(f"lmbench calibrate: error: {e}", file=sys.stderr)
        return 2
    runs = {c: sum(s.values()) for c, s in result["sessions"].items()}
    print(f"{a.runs} vs {a.runs} runs per comparison, --max-slowdown {a.max_slowdown}, {a.draws} draws per cell "
          f"and condition (seed {a.seed}); runs per cell: " + ", ".join(f"{c}: {n}" for c, n in runs.items())
          + f"; sessions: {max(len(s) for s in result['sessions'].values())}")
    print(markdown(result))
    if a.save:
        try:
            path = save_calibration(records, a.results_dir, a.runs, a.seed)
        except ResultsError as e:
            print(f"lmbench calibrate: error: {e}", file=sys.stderr)
            return 2
        data = json.loads(path.read_text())
        print(f"calibration saved in {path}: spread limit {data['spread_limit']:.1%} (compare's admission of a "
              f"baseline), one run vs another {data['cells']['all']['pair_band'][0]:.3f}-"
              f"{data['cells']['all']['pair_band'][1]:.3f} (history's noise band)")
    return 0


def add_parser(sub) -> None:
    import argparse

    p = sub.add_parser("calibrate", help="false-alarm and detection rates of compare's rule on recorded repeats",
                       description=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("records", nargs="+", help="result files or directories: many runs of the same code per cell, "
                   "one file per recording session")
    p.add_argument("--draws", type=int, default=2000)
    p.add_argument("--runs", type=int, default=MIN_RUNS, help="runs per side (default %(default)s)")
    p.add_argument("--max-slowdown", default="10%")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--slowdowns", default="10%,15%,25%", help="comma-separated slowdowns to apply (default %(default)s)")
    p.add_argument("--save", action="store_true", help="write RESULTS_DIR/<machine>/calibration.json: the spread "
                   "limit compare admits baselines under, the noise band history shows (calibrate quiet runs)")
    p.add_argument("--results-dir", default=os.environ.get("LMBENCH_RESULTS_DIR", "results"))
    p.set_defaults(func=cmd_calibrate)
