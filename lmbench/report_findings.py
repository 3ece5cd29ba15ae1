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

PPL_AGREE = 0.02  # relative spread of validation perplexity still called agreement


def _name(r) -> str:
    where = f", {r.batching} batching" if r.batching != "-" else ""
    workers = f", {r.workers} workers" if getattr(r, "workers", 1) > 1 else ""
    return f"{r.backend}/{r.layout}{where}, B={r.batch_size}{workers}"


def fastest(t: pd.DataFrame) -> list[str]:
    out = []
    for (preset, mode), g in t.groupby(["preset", "mode"], sort=True):
        g = g.sort_values("train_words_per_sec", ascending=False)
        top = g.iloc[0]
        text = f"Fastest in {preset} {mode} mode: {_name(top)} at {top.train_words_per_sec:,.0f} words/s"
        others = g[g.backend != top.backend]
        if not others.empty:
            nxt = others.iloc[0]
            text += (f", {top.train_words_per_sec / nxt.train_words_per_sec:.2f}× the best other framework "
                     f"({_name(nxt)}, {nxt.train_words_per_sec:,.0f})")
        if len(g) > 1:
            low = g.iloc[-1]
            text += f"; the slowest ({_name(low)}) reaches {low.vs_fastest:.0%} of it"
        out.append(text + ".")
    return out


def padding_cost(t: pd.DataFrame) -> list[str]:
    """Per framework: its padding-free layouts against its 'padded' layout in the same cell,
    and bucketed against random batching for each layout."""
    out = []
    sentence = t[t["mode"] == "sentence"]
    for (preset, batch, backend), g in sentence.groupby(["preset", "batch_size", "backend"], sort=True):
        parts = []
        for layout in [lay for lay in dict.fromkeys(g.layout) if lay != "padded"]:
            ratios = []
            for batching in ("random", "bucketed"):
                mine, padded = (g[(g.layout == lay) & (g.batching == batching)] for lay in (layout, "padded"))
                if not mine.empty and not padded.empty:
                    ratios.append(f"{mine.iloc[0].train_words_per_sec / padded.iloc[0].train_words_per_sec:.2f}× "
                                  f"with {batching} batching ({mine.iloc[0].padding_fraction:.0%} padding)")
            if ratios:
                parts.append(f"{layout} vs padded layout " + ", ".join(ratios))
        gains = []
        for layout, b in g.groupby("layout", sort=False):
            rnd, bkt = b[b.batching == "random"], b[b.batching == "bucketed"]
            if not rnd.empty and not bkt.empty:
                gains.append(f"{layout} {bkt.iloc[0].train_words_per_sec / rnd.iloc[0].train_words_per_sec:.2f}×")
                cut = f" (padding {rnd.iloc[0].padding_fraction:.0%} → {bkt.iloc[0].padding_fraction:.1%})"
        if gains:
            parts.append("bucketed vs random batching " + ", ".join(gains) + cut)
        if parts:
            out.append(f"Padding, {backend} ({preset}, B={batch}): " + "; ".join(parts) + ".")
    return out


def perplexity_agreement(df: pd.DataFrame, verdicts: list[dict]) -> list[str]:
    """Validation perplexity across frameworks, within runs of the same configuration and
    training length (a 60-step run's perplexity is not a 13-epoch one's)."""
    out = []
    have = df[df["valid_ppl"].notna()]
    keys = ["preset", "mode", "batching", "batch_size", "epochs", "steps"]
    for key, g in have.fillna({"epochs": -1, "steps": -1}).groupby(keys, sort=True):
        per = g.groupby("backend")["valid_ppl"].median()
        if len(per) < 2:
            continue
        spread = per.max() / per.min() - 1
        length = f"{int(key[4])} epochs" if key[4] != -1 else f"{int(key[5])} steps"
        values = ", ".join(f"{b} {v:.2f}" for b, v in per.items())
        verdict = (f"frameworks agree within {spread:.1%}" if spread <= PPL_AGREE else
                   f"frameworks differ by {spread:.1%}, more than the {PPL_AGREE:.0%} called agreement")
        out.append(f"Validation perplexity ({key[0]} {key[1]}, {length}): {verdict} ({values}).")
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
        out += fastest(t) + padding_cost(t) + perplexity_agreement(df, verdicts)
    return out + not_ok(records, label)
