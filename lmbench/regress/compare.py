"""`lmbench compare BASELINE CANDIDATE`: a regression verdict a CI job can trust.

The run is the unit of replication: on a shared machine the noise that matters (another
tenant, the clock frequency, the cache) hits whole runs, so the steps of one run are not
independent samples. Runs are matched by configuration (backend, layout, config, run
settings, device); a throughput drop is a REGRESSION only if

  * the median train words/s over the candidate's runs is more than --max-slowdown below
    the baseline's (default 10%), AND
  * the candidate's per-run words/s are significantly lower: one-sided Mann-Whitney U
    over the runs (one figure per process), exact, p < ALPHA = 0.01.

A rank test over n runs per side cannot give p below 1 / C(2n, n): 0.05 with 3 runs per
side, 0.014 with 4, 0.004 with 5. So 5 runs per side is the minimum (the check suite runs
5); a slowdown seen with fewer runs is printed as untestable and does not fail. The
per-step times add a secondary view, paired by batch (every run sees the same batches in
the same order): the median over steps of baseline/candidate step time; it is printed,
never tested on its own. Perplexity rises beyond --max-ppl-rise are regressions as they
are. A baseline configuration that is missing, failed or diverged in the candidate fails
the verdict unless --allow-missing. Results from different machine kinds (the machine
key: CPU model, core count, family/model/stepping and ISA flags, GPU) or devices are
refused unless --force.

The baseline must be fit to judge by (admission), else compare refuses it (exit 2) and
says why: every cell needs >= 5 runs, all of one commit and one framework version and
machine, their words/s spread ((max - min) / median) within the machine's calibrated limit
(`lmbench calibrate --save`) or else 15%, and no run recorded while the machine was busy
(measured around each run's timed window: other processes' CPU time or CPU steal).
Exit 0: no regression; 1: a regression or a missing cell; 2: unusable input.
"""
from __future__ import annotations

import json
import math
import os
import statistics
import sys
from collections import defaultdict
from math import comb
from pathlib import Path

from .. import env
from ..ranks import p_greater
from ..results import ResultsError, label, load_records
from ..runspec import record_identity

ALPHA = 0.01
MIN_RUNS = next(n for n in range(1, 20) if 1 / comb(2 * n, n) < ALPHA)  # 5
RULE = (f"a throughput drop is a regression if the median train words/s over runs falls by more than "
        f"--max-slowdown AND the candidate's per-run words/s are lower by a one-sided exact "
        f"Mann-Whitney U test at p < {ALPHA} (needs >= {MIN_RUNS} runs per side; fewer runs are "
        f"reported as untestable, not failed)")


def _percent(text: str) -> float:
    try:
        value = float(str(text).rstrip("%"))
    except ValueError:
        raise ResultsError(f"invalid threshold {text!r}: give a percentage such as 10%") from None
    if not math.isfinite(value) or value < 0:  # nan compares false with everything: the gate would be off
        raise ResultsError(f"invalid threshold {text!r}: must be a finite percentage >= 0")
    return value / 100


# what may differ between a baseline and its candidate: that is what they compare (the
# machine must be the same, checked apart with its own message)
ACROSS = ("machine", "framework_version", "ab_side", "ab_sources")


def _key(r, device: bool = True) -> tuple:
    """Same run settings (lmbench.runspec identity), on the same kind of device; a run that
    failed early may not know its device (device=False leaves it out)."""
    return record_identity(r, without=ACROSS + (() if device else ("ran_on",)))


def _group(records, ok=True):
    groups = defaultdict(list)
    for r in records:
        if (r["status"] == "ok" and bool(r.get("metrics"))) == ok:
            groups[_key(r)].append(r)
    return groups


def _machine(records) -> set:
    # ok runs only: a skipped run never built a model to know its device, a failed one (a
    # timeout, a crash at import) may have died before it knew it
    return {(env.record_machine_key(r), r.get("device"), (r.get("environment") or {}).get("device_name"))
            for r in records if r["status"] == "ok"}


# Admission of a baseline: the (max - min) / median of a cell's words/s over its runs above
# which the baseline is refused, where `lmbench calibrate --save` measured no limit for the
# machine: half again the 10% slowdown the gate looks for, so that a baseline's own runs
# cannot differ by more than a regression does.
DEFAULT_SPREAD_LIMIT = 0.15
CALIBRATION_FILE = "calibration.json"
REFUSED = 2


def spread(words: list[float]) -> float:
    """Run-to-run spread of a cell: (max - min) / median of its runs' words/s."""
    return (max(words) - min(words)) / statistics.median(words)


def calibration_for(machine_key: str, results_dir=None) -> dict | None:
    """RESULTS_DIR/<machine>/calibration.json (`lmbench calibrate --save`), or None."""
    path = Path(results_dir or os.environ.get("LMBENCH_RESULTS_DIR", "results")) / machine_key / CALIBRATION_FILE
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def spread_limit_for(machine_key: str, results_dir=None) -> tuple[float, str]:
    """(limit, where it comes from): the calibrated spread limit of the machine, else the default."""
    cal = calibration_for(machine_key, results_dir)
    if cal and isinstance(cal.get("spread_limit"), (int, float)):
        return float(cal["spread_limit"]), f"calibrated for {machine_key} ({cal.get('utc_time', '?')})"
    return DEFAULT_SPREAD_LIMIT, f"default; `lmbench calibrate --save` on {machine_key} calibrates it"


def busy_of(record: dict) -> dict | None:
    """The busy measurement around the record's timed window (lmbench.env.busy_entry), or None
    for a record made before lmbench took it (such records carry at most a load_average read
    between cells)."""
    busy = (record.get("metrics") or {}).get("busy")
    return busy if isinstance(busy, dict) else None


def load_of(record: dict) -> float | None:
    """The load average during the run: the mean of the window's start and end, or the old
    between-cells reading."""
    busy = busy_of(record)
    if busy and busy.get("load_average"):
        return statistics.mean(busy["load_average"])
    return record.get("load_average")


def admission_problems(records: list[dict], min_runs: int = MIN_RUNS, spread_limit: float | None = None,
                       limit_source: str = "") -> list[str]:
    """Why these records cannot serve as a baseline (empty: they can): per cell, too few runs,
    several commits, framework versions or machines, a spread above the limit, runs without a
    busy measurement or recorded while the machine was busy."""
    problems = []
    groups = _group(records)
    if not groups:
        return ["it holds no successful run"]
    for runs in groups.values():
        name, why = label(runs[0]), []
        if len(runs) < min_runs:
            why.append(f"{len(runs)} run(s); the test needs >= {min_runs} per side to reach p < {ALPHA}")
        for what, values in (("commits", {r.get("git_commit") for r in runs}),
                             ("framework versions", {(r.get("environment") or {}).get("framework_version")
                                                     for r in runs}),
                             ("machines", {env.record_machine_key(r) for r in runs})):
            if len(values) > 1:
                why.append(f"runs of {len(values)} {what} ({', '.join(sorted(str(v)[:12] for v in values))})")
        words = [r["metrics"]["train_words_per_sec"] for r in runs]
        limit = DEFAULT_SPREAD_LIMIT if spread_limit is None else spread_limit
        if len(runs) > 1 and spread(words) > limit:
            why.append(f"run-to-run spread {spread(words):.0%} ({min(words):,.0f}-{max(words):,.0f} words/s) "
                       f"above the limit {limit:.0%}" + (f" ({limit_source})" if limit_source else ""))
        unmeasured = [r for r in runs if busy_of(r) is None or busy_of(r).get("busy") is None]
        busy = [busy_of(r) for r in runs if busy_of(r) and busy_of(r).get("busy")]
        if unmeasured:
            loads = [load_of(r) for r in unmeasured if load_of(r) is not None]
            why.append(f"{len(unmeasured)} run(s) without a busy measurement around the timed window "
                       f"(recorded by an older lmbench" + (f"; load average then {min(loads):.1f}-{max(loads):.1f}"
                                                           if loads else "") + ")")
        if busy:
            why.append(f"{len(busy)} run(s) recorded while the machine was busy ({busy[0]['why']})")
        problems += [f"{name}: {w}" for w in why]
    return problems


def admit_baseline(records: list[dict], source: str, results_dir=None) -> None:
    """ResultsError (compare exits 2) naming every problem and how to re-record, if the
    records are unfit to be a baseline."""
    keys = sorted({env.record_machine_key(r) for r in records if r["status"] == "ok"})
    limit, where = spread_limit_for(keys[0], results_dir) if len(keys) == 1 else (DEFAULT_SPREAD_LIMIT, "default")
    problems = admission_problems(records, spread_limit=limit, limit_source=where)
    if problems:
        raise ResultsError(
            f"baseline {source} is unfit to judge a candidate by:\n  - " + "\n  - ".join(problems)
            + f"\nRe-record it on a quiet machine of this kind at one commit: `make bench-check-baseline` "
              f"(the check suite, {MIN_RUNS} runs per cell), with nothing else running; or compare two "
              f"versions side by side with `lmbench ab --ref REF`, which needs no baseline")


def _median(records, metric):
    values = [r["metrics"].get(metric) for r in records if r["metrics"].get(metric) is not None]
    return statistics.median(values) if values else None


def min_p_value(n_base: int, n_cand: int) -> float:
    """The smallest p-value an exact rank test can give with these many runs per side."""
    return 1 / comb(n_base + n_cand, n_base)


def paired_step_ratio(base: list[dict], cand: list[dict]) -> float | None:
    """Median over step positions of (baseline / candidate) median step time: every run sees
    the same batches in the same order, so step i is the same work on both sides."""
    def per_step(records):
        runs = [(r["metrics"].get("step_time_ms") or {}).get("samples") or [] for r in records]
        n = min(map(len, runs), default=0)
        return [statistics.median(run[i] for run in runs) for i in range(n)]
    sb, sc = per_step(base), per_step(cand)
    n = min(len(sb), len(sc))
    return statistics.median(sb[i] / sc[i] for i in range(n)) if n else None


def throughput_verdict(base: list[dict], cand: list[dict], max_slowdown: float,
                       alpha: float = ALPHA) -> tuple[float, float, float, str]:
    """(baseline words/s, candidate words/s, ratio of medians, verdict), one words/s per run."""
    wb = [r["metrics"]["train_words_per_sec"] for r in base]
    wc = [r["metrics"]["train_words_per_sec"] for r in cand]
    tb, tc = statistics.median(wb), statistics.median(wc)
    ratio = tc / tb
    if ratio >= 1 - max_slowdown:
        return tb, tc, ratio, "ok"
    if min_p_value(len(wb), len(wc)) >= alpha:
        return tb, tc, ratio, (f"slower, but untestable: {len(wb)}/{len(wc)} runs cannot reach p < {alpha} "
                               f"(need {MIN_RUNS} per side; not gated)")
    p = p_greater(wb, wc)  # the candidate's runs slower
    if p < alpha:
        return tb, tc, ratio, f"REGRESSION (runs slower, p={p:.3f})"
    return tb, tc, ratio, f"noise (runs not significantly slower, p={p:.2f})"


def _missing(base_ok, cand) -> list[tuple[dict, str]]:
    """(baseline record, what happened) for every baseline configuration the candidate lacks
    or failed in (a failed run among ok ones counts too: it is a run that did not finish)."""
    cand_ok, cand_failed = _group(cand), defaultdict(list)
    for r in cand:
        if r["status"] != "ok":  # a run that failed early may not know its device
            cand_failed[_key(r, device=False)].append(r)
    out = []
    for key, runs in base_ok.items():
        failed = cand_failed.get(tuple(p for p in key if p[0] != "ran_on"), [])
        skipped = [r for r in failed if r["status"] == "skipped"]
        if skipped:  # ran in the baseline, skipped now: the candidate lost a variant
            out.append((runs[0], f"SKIPPED in the candidate: {skipped[0]['reason'].strip()[:120]}"))
        elif failed:
            kinds = sorted({r.get("error_kind") or "error" for r in failed})
            first = (failed[0].get("error") or "").strip().splitlines()[:1] or [""]
            out.append((runs[0], f"FAILED in {len(failed)} run(s) ({', '.join(kinds)}): {first[0][:120]}"))
        elif key not in cand_ok:
            out.append((runs[0], "MISSING from the candidate"))
    return out


def compare_records(base: list[dict], cand: list[dict], max_slowdown="10%", max_ppl_rise="2%",
                    force=False, allow_missing=False, names=("baseline", "candidate")) -> dict:
    """The comparison as data: rows, missing cells, notes and the exit code (ResultsError: unusable)."""
    slow, rise = _percent(max_slowdown), _percent(max_ppl_rise)
    if _machine(base) != _machine(cand) and _machine(cand) and not force:  # no ok run: no timing to mismatch
        raise ResultsError(f"{names[0]} and {names[1]} come from different machine kinds or devices "
                           f"({sorted(map(str, _machine(base)))} vs {sorted(map(str, _machine(cand)))}); "
                           f"timings are not comparable (a key without f<family>m<model>s<stepping> is an "
                           f"older record's, which did not say which CPU generation it ran on). Pass "
                           f"--force to compare anyway")
    b, c = _group(base), _group(cand)
    matched = [k for k in c if k in b]
    if not matched and not b:
        raise ResultsError(f"the {names[0]} holds no successful run to compare with")
    rows, regressions = [], 0
    for key in matched:
        rb, rc = b[key], c[key]
        name = f"{label(rc[0])} x{len(rb)}/{len(rc)}"
        tb, tc, ratio, verdict = throughput_verdict(rb, rc, slow)
        paired = paired_step_ratio(rb, rc)
        if paired is not None and verdict != "ok":
            verdict += f"; step-paired ratio {paired:.3f}"
        regressions += verdict.startswith("REGRESSION")
        rows.append((name, "train words/s", tb, tc, ratio, verdict))
        for metric in ("eval_words_per_sec", "train_ppl", "valid_ppl", "test_ppl"):
            mb, mc = _median(rb, metric), _median(rc, metric)
            if mb is None or mc is None:
                continue
            if metric.endswith("ppl"):
                bad = mc > mb * (1 + rise)
                verdict = f"REGRESSION (+{mc / mb - 1:.1%})" if bad else "ok"
                regressions += bad
            else:  # secondary figure: shown, not gated
                verdict = "ok" if mc >= mb * (1 - slow) else "slower (not gated)"
            rows.append(("", metric, mb, mc, mc / mb, verdict))
    missing = _missing(b, cand)
    notes = []
    lb = [load_of(r) for r in base if load_of(r) is not None]
    lc = [load_of(r) for r in cand if load_of(r) is not None]
    if lb and lc and statistics.median(lc) > statistics.median(lb) + 1:
        notes.append(f"the machine was busier during the {names[1]} runs (load average "
                     f"{statistics.median(lc):.1f} vs {statistics.median(lb):.1f}): other work may explain "
                     f"a slowdown")
    busy = [r for r in cand if (busy_of(r) or {}).get("busy")]
    if busy:
        notes.append(f"{len(busy)} {names[1]} run(s) were recorded while the machine was busy "
                     f"({busy_of(busy[0])['why']}): other work may explain a slowdown")
    unmatched = len([k for k in c if k not in b])
    summary = (f"{len(matched)} configuration(s) matched"
               + (f", {unmatched} {names[1]} configuration(s) without a {names[0]}" if unmatched else "")
               + (f", {len(missing)} {names[0]} configuration(s) missing or failed"
                  + (" (allowed)" if allow_missing else "") if missing else "")
               + f"; {regressions} regression(s) (slowdown > {max_slowdown} with per-run p < {ALPHA}, "
                 f"perplexity rise > {max_ppl_rise})")
    failed = regressions or (missing and not allow_missing)
    return {"rows": rows, "missing": missing, "notes": notes, "summary": summary,
            "regressions": regressions, "code": 1 if failed else 0, "names": names}


def print_table(result: dict, print_=print) -> None:
    names = result["names"]
    width = max([len(r[0]) for r in result["rows"]] + [len(label(b)) for b, _ in result["missing"]] + [20]) + 2
    print_(f"{'run':<{width}}{'metric':<20}{names[0]:>12}{names[1]:>12}{'ratio':>8}  verdict")
    for name, metric, vb, vc, ratio, verdict in result["rows"]:
        fmt = ",.0f" if "words" in metric else ",.2f"
        print_(f"{name:<{width}}{metric:<20}{vb:>12{fmt}}{vc:>12{fmt}}{ratio:>8.3f}  {verdict}")
    for b, what in result["missing"]:
        print_(f"{label(b):<{width}}{'train words/s':<20}{b['metrics']['train_words_per_sec']:>12,.0f}"
               f"{'-':>12}{'-':>8}  {what}")
    for note in result["notes"]:
        print_(f"note: {note}")
    print_(result["summary"])


def markdown_table(result: dict, title: str = "lmbench compare") -> str:
    """The comparison as GitHub-flavoured markdown (for $GITHUB_STEP_SUMMARY)."""
    names = result["names"]
    cell = lambda s: str(s).replace("|", "\\|").replace("\n", " ")  # noqa: E731
    verdict = "no regression" if result["code"] == 0 else "**regression**"
    lines = [f"### {cell(title)}: {verdict}", "",
             f"| run | metric | {names[0]} | {names[1]} | ratio | verdict |",
             "|---|---|---:|---:|---:|---|"]
    for name, metric, vb, vc, ratio, v in result["rows"]:
        fmt = ",.0f" if "words" in metric else ",.2f"
        lines.append(f"| {cell(name)} | {metric} | {vb:{fmt}} | {vc:{fmt}} | {ratio:.3f} | {cell(v)} |")
    for b, what in result["missing"]:
        lines.append(f"| {cell(label(b))} | train words/s | {b['metrics']['train_words_per_sec']:,.0f} | - | - "
                     f"| {cell(what)} |")
    lines.append("")
    lines += [f"> note: {cell(n)}" for n in result["notes"]]
    lines += [cell(result["summary"]), "", f"Rule: {RULE}.", ""]
    return "\n".join(lines)


def write_summary(path, result: dict, title: str = "lmbench compare") -> None:
    """Append the markdown table to `path` (GitHub appends every step's summary the same way)."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(markdown_table(result, title) + "\n")


def compare(baseline, candidate, max_slowdown="10%", max_ppl_rise="2%", force=False, print_=print,
            warn=lambda m: print(m, file=sys.stderr), allow_missing=False, summary=None,
            admit=True) -> int:
    """Print the comparison table; 0 if nothing regressed, 1 otherwise (ResultsError: unusable,
    an unfit baseline included unless admit=False)."""
    _percent(max_slowdown), _percent(max_ppl_rise)  # bad thresholds before reading anything
    base = load_records([baseline], warn=warn, future_is_error=True)
    if admit:
        admit_baseline(base, baseline)
    if candidate is None:
        print_(f"baseline {baseline}: fit to judge by ({len(_group(base))} configuration(s))")
        return 0
    cand = load_records([candidate], warn=warn, future_is_error=True)
    b, c = _group(base), _group(cand)
    if not any(k in b for k in c) and not _group(cand, ok=False):
        raise ResultsError(f"no successful run in {candidate} matches one in {baseline} by configuration "
                           f"(backend, layout, config, run settings and device must be equal; baseline has "
                           f"{len(b)} configuration(s), candidate {len(c)})")
    result = compare_records(base, cand, max_slowdown, max_ppl_rise, force, allow_missing)
    print_table(result, print_)
    if summary:
        write_summary(summary, result, f"lmbench compare {baseline} {candidate}")
    return result["code"]


def cmd_compare(a) -> int:
    try:
        if a.candidate is None and not a.check_baseline:
            raise ResultsError("give a CANDIDATE to compare with the baseline, or --check-baseline to only "
                               "check that BASELINE is fit to be one")
        return compare(a.baseline, None if a.check_baseline else a.candidate, a.max_slowdown, a.max_ppl_rise,
                       a.force, print_=lambda m: print(m, flush=True), allow_missing=a.allow_missing,
                       summary=a.summary, admit=not a.unfit_baseline)
    except ResultsError as e:
        print(f"lmbench compare: error: {e}", file=sys.stderr)
        return 2


def add_threshold_args(p) -> None:
    p.add_argument("--max-slowdown", default="10%", help="train words/s drop (median over runs) that may "
                   "count (default 10%%)")
    p.add_argument("--max-ppl-rise", default="2%", help="perplexity rise that counts (default 2%%)")
    p.add_argument("--allow-missing", action="store_true",
                   help="a baseline configuration missing or failed in the candidate does not fail the verdict")
    p.add_argument("--summary", metavar="FILE", help="append the table as markdown to FILE "
                   "(e.g. \"$GITHUB_STEP_SUMMARY\")")


def add_parser(sub) -> None:
    p = sub.add_parser("compare", help="regression verdict between two result sets (exit 1 on regression)",
                       description=__doc__.split("\n\n", 1)[1],
                       formatter_class=__import__("argparse").RawDescriptionHelpFormatter)
    p.add_argument("baseline")
    p.add_argument("candidate", nargs="?")
    add_threshold_args(p)
    p.add_argument("--force", action="store_true", help="compare results from different machine kinds/devices")
    p.add_argument("--check-baseline", action="store_true", help="only check that BASELINE is fit to be one "
                   "(exit 0) or say why not (exit 2); no candidate")
    p.add_argument("--unfit-baseline", action="store_true", help="compare against a baseline that admission "
                   "refuses (its verdicts may be wrong: too few, mixed, spread or busy runs)")
    p.set_defaults(func=cmd_compare)
