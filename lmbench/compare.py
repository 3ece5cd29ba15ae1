"""`lmbench compare BASELINE CANDIDATE`: a regression verdict a CI job can trust.

Runs are matched by configuration (backend, layout, config, run settings). A throughput
drop counts as a regression only if it is larger than --max-slowdown AND the candidate's
per-step times are significantly slower than the baseline's (one-sided Mann-Whitney U,
p < 0.01, over all repeats' samples) -- airspeed-velocity's rule, so that noise on a shared
machine is not flagged. Perplexity rises beyond --max-ppl-rise are regressions as they
are (they do not depend on timing). Exit 0: no regression; 1: a regression; 2: unusable
input.
"""
from __future__ import annotations

import statistics
from collections import defaultdict

from .results import ResultsError, cell_key, label, load_records

P_VALUE = 0.01


def _percent(text: str) -> float:
    try:
        value = float(str(text).rstrip("%"))
    except ValueError:
        raise ResultsError(f"invalid threshold {text!r}: give a percentage such as 10%") from None
    if value < 0:
        raise ResultsError(f"invalid threshold {text!r}: must be >= 0")
    return value / 100


def _group(records):
    groups = defaultdict(list)
    for r in records:
        if r["status"] == "ok":
            groups[cell_key(r)].append(r)
    return groups


def _machine(records) -> set:
    return {(r.get("cpu_model"), r.get("cpu_count"), r.get("device"),
             (r.get("environment") or {}).get("device_name")) for r in records}


def compare(baseline, candidate, max_slowdown="10%", max_ppl_rise="2%", force=False, print_=print) -> int:
    from scipy.stats import mannwhitneyu

    slow, rise = _percent(max_slowdown), _percent(max_ppl_rise)
    base = load_records([baseline], warn=print_, future_is_error=True)
    cand = load_records([candidate], warn=print_, future_is_error=True)
    if _machine(base) != _machine(cand) and not force:
        raise ResultsError(f"baseline and candidate come from different machines or devices "
                           f"({sorted(map(str, _machine(base)))} vs {sorted(map(str, _machine(cand)))}); "
                           f"timings are not comparable. Pass --force to compare anyway")
    b, c = _group(base), _group(cand)
    matched = [k for k in c if k in b]
    if not matched:
        raise ResultsError(f"no run in {candidate} matches a run in {baseline} by configuration "
                           f"(backend, layout, config and run settings must be equal)")
    regressions = 0
    print_(f"{'run':<58}{'metric':<22}{'baseline':>12}{'candidate':>12}{'ratio':>8}  verdict")
    for key in matched:
        rb, rc = b[key], c[key]
        name = label(rc[0])
        tb = statistics.median(r["metrics"]["train_words_per_sec"] for r in rb)
        tc = statistics.median(r["metrics"]["train_words_per_sec"] for r in rc)
        sb = [s for r in rb for s in r["metrics"]["step_time_ms"]["samples"]]
        sc = [s for r in rc for s in r["metrics"]["step_time_ms"]["samples"]]
        p = mannwhitneyu(sc, sb, alternative="greater").pvalue if sb and sc else 1.0
        ratio = tc / tb
        if ratio < 1 - slow and p < P_VALUE:
            verdict = f"REGRESSION (p={p:.1e})"
        elif ratio < 1 - slow:
            verdict = f"noise (p={p:.2f})"
        else:
            verdict = "ok"
        regressions += verdict.startswith("REGRESSION")
        print_(f"{name:<58}{'train words/s':<22}{tb:>12,.0f}{tc:>12,.0f}{ratio:>8.3f}  {verdict}")
        for metric in ("eval_words_per_sec", "valid_ppl", "test_ppl"):
            vb = [r["metrics"].get(metric) for r in rb if r["metrics"].get(metric) is not None]
            vc = [r["metrics"].get(metric) for r in rc if r["metrics"].get(metric) is not None]
            if not vb or not vc:
                continue
            mb, mc = statistics.median(vb), statistics.median(vc)
            if metric.endswith("ppl"):
                bad = mc > mb * (1 + rise)
                verdict = "REGRESSION" if bad else "ok"
                regressions += bad
            else:
                verdict = "info"  # eval timing has no per-step samples to test against noise
            print_(f"{'':<58}{metric:<22}{mb:>12,.2f}{mc:>12,.2f}{mc / mb:>8.3f}  {verdict}")
    unmatched = len(c) - len(matched)
    print_(f"{len(matched)} run(s) matched" + (f", {unmatched} candidate run(s) without a baseline" if unmatched else "")
           + f"; {regressions} regression(s) (thresholds: slowdown {max_slowdown}, perplexity rise {max_ppl_rise})")
    return 1 if regressions else 0


def cmd_compare(a) -> int:
    import sys

    try:
        return compare(a.baseline, a.candidate, a.max_slowdown, a.max_ppl_rise, a.force)
    except ResultsError as e:
        print(f"lmbench compare: error: {e}", file=sys.stderr)
        return 2


def add_parser(sub) -> None:
    p = sub.add_parser("compare", help="regression verdict between two result sets (exit 1 on regression)")
    p.add_argument("baseline")
    p.add_argument("candidate")
    p.add_argument("--max-slowdown", default="10%")
    p.add_argument("--max-ppl-rise", default="2%")
    p.add_argument("--force", action="store_true", help="compare results from different machines/devices")
    p.set_defaults(func=cmd_compare)
