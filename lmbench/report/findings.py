"""The findings paragraph: sentences computed from the cells, never written by hand.

Each function returns sentences (plain text, numbers formatted) or nothing when the data
cannot say it: the fastest framework+layout per preset and mode and its lead, what
padding costs per framework (native vs padded layout, random vs bucketed batching),
whether perplexities agree across frameworks (and `lmbench verify`'s verdict where one
is recorded), and the runs that failed or were skipped.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from . import noise
from ..runspec import EAGER

PPL_AGREE = 0.02  # relative spread of validation perplexity still called agreement


def _name(r) -> str:
    where = f", {r.batching} batching" if r.batching != "-" else ""
    return f"{r.backend}/{r.layout}{where}, B={r.batch_size}"


def _context(r) -> str:
    """What the compared runs share, said once per sentence."""
    where = f"{r.batching} batching, " if r.batching != "-" else ""
    return f"{where}B={r.batch_size}, {r.length}, {r.threads:.0f} thread(s), {r.variant}"


def plain(t: pd.DataFrame) -> pd.DataFrame:
    """The cells findings set side by side: eager float32, one worker, no A/B side. A variant
    is compared only with its own eager run (the variants table), data-parallel runs only
    with their 1-worker run (the scaling section), A/B sides only with each other (compare)."""
    return t[(t.variant == EAGER) & (t.workers == 1) & t.ab_side.isna()]


def spread(t: pd.DataFrame) -> noise.Spread:
    """The noise band of these runs' machine (lmbench.report.noise.spread_of)."""
    from ..regress.compare import calibration_for

    machines = set(t.machine) if "machine" in t else set()
    cal = calibration_for(next(iter(machines))) if len(machines) == 1 else None
    band = (((cal or {}).get("cells") or {}).get("all") or {}).get("pair_band")
    return noise.spread_of(list(t.wps_runs), band)


def fastest(t: pd.DataFrame) -> list[str]:
    """Per group of runs alike in everything but framework and layout: the fastest, and how
    it stands against the best of another framework -- beyond noise or tied."""
    out, band = [], spread(t)
    for _, g in plain(t).groupby("across_frameworks", sort=False):
        if g.backend.nunique() < 2:
            continue
        g = g.sort_values("train_words_per_sec", ascending=False)
        top = g.iloc[0]
        nxt = g[g.backend != top.backend].iloc[0]
        verdict = noise.compare(top.wps_runs, nxt.wps_runs, band)
        head = f"{top.preset} {top['mode']} mode ({_context(top)})"
        if verdict.beyond_noise:
            text = (f"Fastest in {head}: {top.backend}/{top.layout} at {top.train_words_per_sec:,.0f} words/s, "
                    f"{verdict.ratio:.2f}× the best other framework ({nxt.backend}/{nxt.layout}, "
                    f"{nxt.train_words_per_sec:,.0f}; {verdict.how})")
        else:
            text = (f"No framework is fastest beyond noise in {head}: {top.backend}/{top.layout} "
                    f"{top.train_words_per_sec:,.0f} and {nxt.backend}/{nxt.layout} {nxt.train_words_per_sec:,.0f} "
                    f"words/s are tied within noise ({verdict.ratio:.2f}×; {verdict.how})")
        low = g.iloc[-1]
        if len(g) > 2 and low.name != nxt.name:
            text += f"; the slowest ({low.backend}/{low.layout}) reaches {low.vs_fastest / top.vs_fastest:.0%} of it"
        out.append(text + ".")
    return out


def _ratio_text(a, b, band) -> str:
    v = noise.compare(a.wps_runs, b.wps_runs, band)
    if v.beyond_noise or (v.ratio < 1 and noise.compare(b.wps_runs, a.wps_runs, band).beyond_noise):
        return f"{v.ratio:.2f}×"
    return f"{v.ratio:.2f}× (tied within noise)"


def padding_cost(t: pd.DataFrame) -> list[str]:
    """Per framework: its padding-free layouts against its 'padded' layout in otherwise
    identical runs, and bucketed against random batching for each layout."""
    out, band = [], spread(t)
    sentence = plain(t[t["mode"] == "sentence"])
    alike = ["preset", "batch_size", "backend", "length", "threads", "machine"]  # one context per sentence
    for (preset, batch, backend, length, threads, _), g in sentence.groupby(alike, sort=True):
        parts = []
        for layout in [lay for lay in dict.fromkeys(g.layout) if lay != "padded"]:
            ratios = []
            for _, pair in g[g.layout.isin([layout, "padded"])].groupby("across_layouts", sort=False):
                mine, padded = pair[pair.layout == layout], pair[pair.layout == "padded"]
                if len(mine) == 1 and len(padded) == 1:
                    m, p = mine.iloc[0], padded.iloc[0]
                    ratios.append((m.batching != "random", f"{_ratio_text(m, p, band)} with {m.batching} "
                                                             f"batching ({m.padding_fraction:.0%} padding)"))
            if ratios:
                parts.append(f"{layout} vs padded layout " + ", ".join(text for _, text in sorted(ratios)))
        gains, cut = [], ""
        for _, pair in g.groupby("across_batchings", sort=False):
            rnd, bkt = pair[pair.batching == "random"], pair[pair.batching == "bucketed"]
            if len(rnd) == 1 and len(bkt) == 1:
                gains.append(f"{rnd.iloc[0].layout} {_ratio_text(bkt.iloc[0], rnd.iloc[0], band)}")
                cut = f" (padding {rnd.iloc[0].padding_fraction:.0%} → {bkt.iloc[0].padding_fraction:.1%})"
        if gains:
            parts.append("bucketed vs random batching " + ", ".join(gains) + cut)
        if parts:
            runs = sorted({int(n) for n in g.runs})
            out.append(f"Padding, {backend} ({preset}, B={batch}, {length}, {threads:.0f} thread(s), "
                       f"{'/'.join(map(str, runs))} run(s) per cell): "
                       + "; ".join(parts) + ".")
    return out


def perplexity_agreement(df: pd.DataFrame, verdicts: list[dict]) -> list[str]:
    """Validation perplexity across frameworks. Only whole-epoch trainings of one
    configuration are held to agreement; a run of some steps at the preset's lr leaves the
    model far from trained, where perplexity moves fast with every step and with each
    framework's numerics: a smoke value, and equivalence is `lmbench verify`'s verdict."""
    out = []
    have = df[df["valid_ppl"].notna() & (df.variant == EAGER) & (df.workers == 1)]
    keys = ["machine", "preset", "mode", "batching", "batch_size", "epochs", "steps"]
    for key, g in have.fillna({"epochs": -1, "steps": -1}).groupby(keys, sort=True):
        per = g.groupby(["backend", "layout"])["valid_ppl"].median()
        layouts = per.index.get_level_values("backend").value_counts()
        if len(layouts) < 2:
            continue
        # a framework with several layouts here (tensorflow padded and unrolled in stream
        # mode) is named per layout: a median over layouts would be no run's perplexity
        values = ", ".join(f"{b}/{lay} {v:.2f}" if layouts[b] > 1 else f"{b} {v:.2f}" for (b, lay), v in per.items())
        if key[5] == -1:  # a run of steps: smoke values
            out.append(f"Validation perplexity after {int(key[6])} steps at lr {g.iloc[0].get('lr', 1):g} "
                       f"({key[1]} {key[2]}): {values}: smoke values, not comparable across frameworks "
                       f"(equivalence is `lmbench verify`'s verdict below).")
            continue
        spread_ = per.max() / per.min() - 1
        verdict = (f"frameworks agree within {spread_:.1%}" if spread_ <= PPL_AGREE else
                   f"frameworks differ by {spread_:.1%}, more than the {PPL_AGREE:.0%} called agreement")
        out.append(f"Validation perplexity ({key[1]} {key[2]}, {int(key[5])} epochs): {verdict} ({values}).")
    for v in verdicts:
        out.append(f"`lmbench verify` ({v.get('preset', '?')} preset, commit {str(v.get('git_commit') or '?')[:7]}): "
                   f"{v.get('verdict')}.")
    if not verdicts and out:
        out.append("No `lmbench verify` verdict is recorded with these results.")
    return out


def verify_verdicts(paths) -> list[dict]:
    """Hook for `lmbench verify` verdicts kept beside results: every verify.json under the
    given directories, {"verdict": "PASS"|"FAIL", "preset": ..., "git_commit": ...}."""
    found = []
    for p in map(Path, paths):
        for f in sorted(p.rglob("verify.json")) if p.is_dir() else []:
            try:
                v = json.loads(f.read_text())
            except (OSError, ValueError):
                continue
            if isinstance(v, dict) and v.get("verdict") in ("PASS", "FAIL"):
                found.append(v)
    return found


def busy(df: pd.DataFrame) -> list[str]:
    """Runs timed while other work used the machine (metrics.busy, measured around the timed
    window): said, since their numbers carry that work's noise."""
    if "busy" not in df or not (df.busy == True).any():  # noqa: E712 -- None is unknown, not False
        return []
    hit = df[df.busy == True]  # noqa: E712
    why = sorted({w for w in hit.busy_why if isinstance(w, str)})
    return [f"{len(hit)} of {len(df)} run(s) were timed while the machine was busy"
            + (f" ({'; '.join(why[:3])})" if why else "") + ": their words/s carry that load's noise; "
            "re-run them on a quiet machine before quoting them."]


def not_ok(records: list[dict], label) -> list[str]:
    bad = [r for r in records if r.get("status") != "ok"]
    if not bad:
        return [f"All {len(records)} runs succeeded."] if records else []
    by_status: dict[str, list[str]] = {}
    for r in bad:
        reason = r.get("error_kind") or r.get("reason") or (r.get("error") or "").strip().split("\n")[0][:60]
        by_status.setdefault(r.get("status") or "unknown", []).append(f"{label(r)} ({reason})")
    return [f"{len(runs)} run(s) {status}: " + "; ".join(runs) + "." for status, runs in sorted(by_status.items())]


def findings(df: pd.DataFrame, t: pd.DataFrame | None, records: list[dict], verdicts: list[dict], label) -> list[str]:
    out = []
    if t is not None and not t.empty:
        out += fastest(t) + padding_cost(t) + perplexity_agreement(df, verdicts) + busy(df)
    return out + not_ok(records, label)
