"""`lmbench history [RESULTS_DIR]`: throughput per cell over commits, as asv shows it.

Results accumulate per machine under RESULTS_DIR/<machine>/ (lmbench bench files them
there). For every machine and cell this orders the recorded commits as `git log` does
(oldest first; commits not on the current branch last, by time), shows each commit's runs
as median and spread (min-max), and marks the commits where `lmbench compare`'s rule
(against the previous commit with runs) would have fired. A commit is judged only where the
rule could fire (>= 5 runs on both sides); with fewer (one run per commit, as a nightly
job records) it shows, instead of a verdict, the ratio to the previous commit beside the
machine's calibrated noise band of one run against another (`lmbench calibrate --save`).
It writes history.md and one PNG per machine into RESULTS_DIR/report/; history_section()
gives the same to a report.
"""
from __future__ import annotations

import io
import statistics
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

from .. import env
from .compare import MIN_RUNS, _key, calibration_for, throughput_verdict
from ..files import write_atomic
from ..results import ResultsError, label, load_records

MAX_SLOWDOWN = 0.10


def _machine_of(r: dict) -> str:
    if r.get("machine_key"):  # the key bench filed it under (CPU kind, and the GPU where there is one)
        return r["machine_key"]
    device = (r.get("environment") or {}).get("device_name") if r.get("device") == "cuda" else None
    return env.machine_key(device) if device else env.record_machine_key(r)


def machine_records(results_dir) -> dict[str, list[dict]]:
    """Records of RESULTS_DIR/<machine>/*.jsonl whose machine is the directory's name (so that
    baselines/, report/ or copies filed elsewhere are left out)."""
    out = defaultdict(list)
    for d in sorted(p for p in Path(results_dir).iterdir() if p.is_dir()):
        files = sorted(d.glob("*.jsonl"))
        if not files:
            continue
        for r in load_records(files, warn=lambda m: print(m, file=sys.stderr)):
            if _machine_of(r) == d.name and r["status"] == "ok" and r.get("metrics"):
                out[d.name].append(r)
    return dict(out)


def commit_order(repo: Path | None = None) -> list[str]:
    repo = repo or Path(__file__).resolve().parents[2]
    log = subprocess.run(["git", "-C", str(repo), "log", "--format=%H", "--reverse"], capture_output=True,
                         text=True)
    return log.stdout.split() if log.returncode == 0 else []


def series(records: list[dict], order: list[str]) -> dict[tuple, list[dict]]:
    """Per cell: [{commit, runs, words, median, testable, fired, ratio}] in commit order; testable:
    both this commit and the previous have enough runs for the rule to fire."""
    rank = {c: i for i, c in enumerate(order)}
    by_cell: dict[tuple, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for r in records:
        by_cell[_key(r)][r.get("git_commit") or "unknown"].append(r)
    out = {}
    for key, commits in by_cell.items():
        ordered = sorted(commits, key=lambda c: (c not in rank, rank.get(c, 0),
                                                 min(r.get("utc_time") or "" for r in commits[c])))
        points, previous = [], None
        for c in ordered:
            runs = commits[c]
            words = [r["metrics"]["train_words_per_sec"] for r in runs]
            point = {"commit": c, "on_branch": c in rank, "runs": runs, "words": words,
                     "median": statistics.median(words), "dirty": any(r.get("git_dirty") for r in runs),
                     "fired": False, "ratio": None, "testable": False}
            if previous:
                _, _, point["ratio"], verdict = throughput_verdict(previous["runs"], runs, MAX_SLOWDOWN)
                point["testable"] = min(len(previous["runs"]), len(runs)) >= MIN_RUNS
                point["fired"] = point["testable"] and verdict.startswith("REGRESSION")
            points.append(point)
            previous = point
        out[key] = points
    return out


def _plot(machine: str, cells: dict[tuple, list[dict]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    commits = []
    for points in cells.values():
        for p in points:
            if p["commit"] not in commits:
                commits.append(p["commit"])
    x_of = {c: i for i, c in enumerate(commits)}
    fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(commits) + 3), 4.5))
    for key, points in cells.items():
        xs = [x_of[p["commit"]] for p in points]
        line, = ax.plot(xs, [p["median"] for p in points], marker="o", label=label(points[0]["runs"][0]))
        for p, x in zip(points, xs):
            ax.vlines(x, min(p["words"]), max(p["words"]), color=line.get_color(), alpha=0.5)
            ax.scatter([x] * len(p["words"]), p["words"], s=8, color=line.get_color(), alpha=0.4)
            if p["fired"]:
                ax.scatter([x], [p["median"]], s=160, facecolors="none", edgecolors="red", linewidths=2)
    ax.set_xticks(range(len(commits)), [c[:7] for c in commits], rotation=45, ha="right")
    ax.set_ylabel("train words/s (median, runs, min-max)")
    ax.set_title(f"{machine}: throughput per commit (red circle: compare's rule fired)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=100)
    plt.close(fig)
    write_atomic(path, png.getvalue())


def history_section(results_dir, out_dir=None) -> tuple[str, list[Path]] | None:
    """Markdown (tables per machine and cell) and the PNG plots it refers to, written to
    out_dir (default RESULTS_DIR/report); None if no machine has recorded runs."""
    results_dir = Path(results_dir)
    machines = machine_records(results_dir) if results_dir.is_dir() else {}
    if not machines:
        return None
    out_dir = Path(out_dir or results_dir / "report")
    out_dir.mkdir(parents=True, exist_ok=True)
    order, pngs = commit_order(), []
    lines = ["## History", "",
             f"Train words/s per commit (git log order; median and min-max over the commit's runs). "
             f"**fired**: `lmbench compare`'s rule against the previous commit (> {MAX_SLOWDOWN:.0%} slower "
             f"and per-run p < 0.01), judged only where both have >= {MIN_RUNS} runs; with fewer, the ratio is "
             f"set beside the machine's calibrated noise band of one run against another.", ""]
    for machine, records in machines.items():
        cells = series(records, order)
        calibration = calibration_for(machine, results_dir) or {}
        png = out_dir / f"history-{machine}.png"
        _plot(machine, cells, png)
        pngs.append(png)
        lines += [f"### {machine}", "", f"![history {machine}]({png.name})", ""]
        for points in cells.values():
            lines += [f"**{label(points[0]['runs'][0])}**", "",
                      "| commit | runs | median words/s | min-max | vs previous | compare |",
                      "|---|---:|---:|---:|---:|---|"]
            band = (calibration.get("cells") or {}).get(label(points[0]["runs"][0])) or \
                (calibration.get("cells") or {}).get("all")
            previous = None
            for p in points:
                name = p["commit"][:10] + ("+dirty" if p["dirty"] else "") + ("" if p["on_branch"] else " (not in git log)")
                ratio = f"{p['ratio']:.3f}" if p["ratio"] is not None else ""
                lines.append(f"| {name} | {len(p['words'])} | {p['median']:,.0f} | {min(p['words']):,.0f}-"
                             f"{max(p['words']):,.0f} | {ratio} | {_judgement(p, previous, band)} |")
                previous = p
            lines.append("")
    return "\n".join(lines), pngs


def _judgement(point: dict, previous: dict | None, band: dict | None) -> str:
    """The compare column: the rule's mark where it could fire, else the noise band, no verdict."""
    if previous is None:
        return ""
    if point["testable"]:
        return "**fired**" if point["fired"] else ""
    runs = f"{len(previous['words'])}/{len(point['words'])} runs: no verdict"
    if not band or not band.get("pair_band"):
        return f"{runs}; no calibrated noise band (`lmbench calibrate --save`)"
    lo, hi = band["pair_band"]
    where = "inside" if lo <= point["ratio"] <= hi else "OUTSIDE"
    return f"{runs}; {where} the noise band {lo:.3f}-{hi:.3f} of one run vs another"


def cmd_history(a) -> int:
    try:
        section = history_section(a.results_dir, a.out)
    except ResultsError as e:
        print(f"lmbench history: error: {e}", file=sys.stderr)
        return 2
    if section is None:
        print(f"lmbench history: error: no recorded runs under {a.results_dir}/<machine>/ (run `lmbench bench` "
              f"first, or give the results directory)", file=sys.stderr)
        return 2
    text, pngs = section
    out = Path(a.out or Path(a.results_dir) / "report") / "history.md"
    write_atomic(out, text + "\n")
    print(f"history: {out}, {', '.join(map(str, pngs))}")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("history", help="throughput per cell over commits (table + plot), regressions marked")
    p.add_argument("results_dir", nargs="?", default="results")
    p.add_argument("--out", help="directory for history.md and the plots (default RESULTS_DIR/report)")
    p.set_defaults(func=cmd_history)
