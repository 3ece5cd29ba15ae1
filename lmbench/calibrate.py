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
"""
from __future__ import annotations

import itertools
import sys
from collections import defaultdict

import numpy as np

from .compare import MIN_RUNS, _key, _percent, throughput_verdict
from .results import ResultsError, label, load_records

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
    p.set_defaults(func=cmd_calibrate)
