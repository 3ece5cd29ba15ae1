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
    return f"{r.backend}/{r.layout}{where}, B={r.batch_size}"


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
    """Per framework: the padding-free layouts against the 'padded' layout of the same cell,
    and bucketed against random batching for the same layout."""
    out = []
    sentence = t[t["mode"] == "sentence"]
    for (preset, batch, backend), g in sentence.groupby(["preset", "batch_size", "backend"], sort=True):
        parts = []
        for batching, b in sorted(g.groupby("batching"), key=lambda x: x[0] != "random"):
            padded = b[b.layout == "padded"]
            if padded.empty:
                continue
            for r in b[b.layout != "padded"].itertuples():
                parts.append(f"{r.layout} is {r.train_words_per_sec / padded.iloc[0].train_words_per_sec:.2f}× "
                             f"padded with {batching} batching ({r.padding_fraction:.0%} padding)")
        for layout, b in g.groupby("layout", sort=False):
            rnd, bkt = b[b.batching == "random"], b[b.batching == "bucketed"]
            if not rnd.empty and not bkt.empty:
                parts.append(f"bucketing makes {layout} {bkt.iloc[0].train_words_per_sec / rnd.iloc[0].train_words_per_sec:.2f}× "
                             f"faster than random batching (padding {rnd.iloc[0].padding_fraction:.0%} → "
                             f"{bkt.iloc[0].padding_fraction:.1%})")
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
        word = "agree" if spread <= PPL_AGREE else "DISAGREE"
        out.append(f"Validation perplexity ({key[0]} {key[1]}, {length}): frameworks {word} within "
                   f"{spread:.1%} ({values}).")
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
