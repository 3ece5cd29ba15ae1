"""`lmbench compare BASELINE CANDIDATE`: a regression verdict a CI job can trust.

Runs are matched by configuration (backend, layout, config, run settings, device). A throughput
drop counts as a regression only if it is larger than --max-slowdown AND the candidate's
per-step times are significantly slower than the baseline's (one-sided Mann-Whitney U,
p < 0.01, over all repeats' samples) -- airspeed-velocity's rule, so that noise on a shared
machine is not flagged. Perplexity rises beyond --max-ppl-rise are regressions as they
are (they do not depend on timing). Results from different machines or devices are
refused unless --force; a busier machine during the candidate runs (the load average
lmbench bench records) is pointed out. Exit 0: no regression; 1: a regression; 2: unusable
input.
"""
from __future__ import annotations

import statistics
import sys
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


def _key(r) -> tuple:
    """Same configuration and run settings, on the same kind of device."""
    return (*cell_key(r), r.get("device"))


def _group(records):
    groups = defaultdict(list)
    for r in records:
        if r["status"] == "ok" and r.get("metrics"):
            groups[_key(r)].append(r)
    return groups


def _machine(records) -> set:
    return {(r.get("cpu_model"), r.get("cpu_count"), r.get("device"),
             (r.get("environment") or {}).get("device_name")) for r in records}


def _median(records, metric):
    values = [r["metrics"].get(metric) for r in records if r["metrics"].get(metric) is not None]
    return statistics.median(values) if values else None


def throughput_verdict(base: list[dict], cand: list[dict], max_slowdown: float) -> tuple[float, float, float, str]:
    """(baseline words/s, candidate words/s, ratio, verdict). A slowdown past the threshold is
    a REGRESSION only if the candidate's step times (all repeats pooled) are significantly
    longer: one-sided Mann-Whitney U, p < P_VALUE."""
    from scipy.stats import mannwhitneyu

    tb, tc = _median(base, "train_words_per_sec"), _median(cand, "train_words_per_sec")
    sb = [s for r in base for s in (r["metrics"].get("step_time_ms") or {}).get("samples", [])]
    sc = [s for r in cand for s in (r["metrics"].get("step_time_ms") or {}).get("samples", [])]
    ratio = tc / tb
    if ratio >= 1 - max_slowdown:
        return tb, tc, ratio, "ok"
    if len(sb) < 3 or len(sc) < 3:
        return tb, tc, ratio, "slower, but too few step-time samples to test (not gated)"
    p = mannwhitneyu(sc, sb, alternative="greater").pvalue
    if p < P_VALUE:
        return tb, tc, ratio, f"REGRESSION (step times longer, p={p:.1e})"
    return tb, tc, ratio, f"noise (step times not significantly longer, p={p:.2f})"


def compare(baseline, candidate, max_slowdown="10%", max_ppl_rise="2%", force=False, print_=print,
            warn=lambda m: print(m, file=sys.stderr)) -> int:
    """Print the comparison table; 0 if nothing regressed, 1 otherwise (ResultsError: unusable)."""
    slow, rise = _percent(max_slowdown), _percent(max_ppl_rise)
    base = load_records([baseline], warn=warn, future_is_error=True)
    cand = load_records([candidate], warn=warn, future_is_error=True)
    if _machine(base) != _machine(cand) and not force:
        raise ResultsError(f"baseline and candidate come from different machines or devices "
                           f"({sorted(map(str, _machine(base)))} vs {sorted(map(str, _machine(cand)))}); "
                           f"timings are not comparable. Pass --force to compare anyway")
    b, c = _group(base), _group(cand)
    matched = [k for k in c if k in b]
    if not matched:
        raise ResultsError(f"no successful run in {candidate} matches one in {baseline} by configuration "
                           f"(backend, layout, config, run settings and device must be equal; baseline has "
                           f"{len(b)} configuration(s), candidate {len(c)})")
    regressions = 0
    width = max(len(label(c[k][0])) for k in matched) + 8
    print_(f"{'run':<{width}}{'metric':<20}{'baseline':>12}{'candidate':>12}{'ratio':>8}  verdict")
    for key in matched:
        rb, rc = b[key], c[key]
        name = f"{label(rc[0])} x{len(rb)}/{len(rc)}"
        tb, tc, ratio, verdict = throughput_verdict(rb, rc, slow)
        regressions += verdict.startswith("REGRESSION")
        print_(f"{name:<{width}}{'train words/s':<20}{tb:>12,.0f}{tc:>12,.0f}{ratio:>8.3f}  {verdict}")
        for metric in ("eval_words_per_sec", "train_ppl", "valid_ppl", "test_ppl"):
            mb, mc = _median(rb, metric), _median(rc, metric)
            if mb is None or mc is None:
                continue
            if metric.endswith("ppl"):
                bad = mc > mb * (1 + rise)
                verdict = f"REGRESSION (+{mc / mb - 1:.1%})" if bad else "ok"
                regressions += bad
            else:  # one figure per run, no per-step samples to test against noise
                verdict = "ok" if mc >= mb * (1 - slow) else "slower (no per-step samples: not gated)"
            print_(f"{'':<{width}}{metric:<20}{mb:>12,.2f}{mc:>12,.2f}{mc / mb:>8.3f}  {verdict}")
    unmatched = len(c) - len(matched)
    lb = [r["load_average"] for r in base if r.get("load_average") is not None]
    lc = [r["load_average"] for r in cand if r.get("load_average") is not None]
    if lb and lc and statistics.median(lc) > statistics.median(lb) + 1:
        print_(f"note: the machine was busier during the candidate runs (load average "
               f"{statistics.median(lc):.1f} vs {statistics.median(lb):.1f}): other work may explain a slowdown")
    print_(f"{len(matched)} configuration(s) matched"
           + (f", {unmatched} candidate configuration(s) without a baseline" if unmatched else "")
           + f"; {regressions} regression(s) (thresholds: slowdown {max_slowdown} with p < {P_VALUE}, "
             f"perplexity rise {max_ppl_rise})")
    return 1 if regressions else 0


def cmd_compare(a) -> int:
    try:
        return compare(a.baseline, a.candidate, a.max_slowdown, a.max_ppl_rise, a.force,
                       print_=lambda m: print(m, flush=True))
    except ResultsError as e:
        print(f"lmbench compare: error: {e}", file=sys.stderr)
        return 2


def add_parser(sub) -> None:
    p = sub.add_parser("compare", help="regression verdict between two result sets (exit 1 on regression)")
    p.add_argument("baseline")
    p.add_argument("candidate")
    p.add_argument("--max-slowdown", default="10%", help="train words/s drop that may count (default 10%%)")
    p.add_argument("--max-ppl-rise", default="2%", help="perplexity rise that counts (default 2%%)")
    p.add_argument("--force", action="store_true", help="compare results from different machines/devices")
    p.set_defaults(func=cmd_compare)
