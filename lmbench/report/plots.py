"""The report's plots: one style, one colour per framework in every plot, layouts told
apart by hatching, units on every axis, a title that states what the plot shows.

Error bars are the spread across repeats (min-max of the runs' words/s), never the
step-time p10-p90: with bucketing, step times mostly differ because buckets hold
different numbers of words, which is not noise. A cell with one run has no bar.
"""
from __future__ import annotations

import io

import numpy as np
import pandas as pd

COLOURS = {"torch": "#d62728", "tensorflow": "#ff7f0e", "paddle": "#1f77b4"}
OTHER = ["#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]
HATCHES = ["", "//", "..", "xx", "\\\\", "oo"]
# SVG, so a plot is sharp at any width and zoom. 8 inches = 768 CSS px: at an 800 px wide
# window (page padding leaves ~740 px) a plot is shown at ~0.96 of its size, so the 10 pt
# legend reads as ~13 px; on a wider page it is shown at full size, never enlarged.
WIDTH = 8  # inches, every figure: one scale on the page
LEGEND_PT = 10
FORMAT = "svg"


def colour(backend: str, seen: list[str]) -> str:
    if backend in COLOURS:
        return COLOURS[backend]
    if backend not in seen:
        seen.append(backend)
    return OTHER[seen.index(backend) % len(OTHER)]


def _style():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 10, "axes.spines.top": False, "axes.spines.right": False,
                         "axes.grid": True, "grid.alpha": 0.3, "axes.axisbelow": True,
                         "axes.titlesize": 11, "axes.titleweight": "bold", "legend.frameon": False,
                         # text stays text (selectable, searchable, crisp); fixed ids: the same
                         # records give the same file
                         "svg.fonttype": "none", "svg.hashsalt": "lmbench"})
    return plt


def _legend_below(ax, columns: int) -> None:
    """The legend under the axes, inside the fixed canvas (constrained layout): every plot is
    WIDTH inches wide, so the page shows all plots at one scale."""
    ax.figure.legend(*ax.get_legend_handles_labels(), fontsize=LEGEND_PT, ncol=min(columns, 3),
                     loc="outside lower center")


def _image(fig) -> bytes:
    """The figure as SVG bytes (no date in it: the same records give the same file)."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format=FORMAT, metadata={"Date": None})
    plt.close(fig)
    return buf.getvalue()


def _main_slice(t: pd.DataFrame) -> pd.DataFrame:
    """Eager float32 single-worker cells of the most common machine, preset, batch size,
    length and thread count: bars set side by side only runs alike in all but framework,
    layout and batching (lmbench.report.findings.plain)."""
    from .findings import plain

    t = plain(t)
    for column in ("machine", "preset", "batch_size", "length", "threads"):
        if t.empty:
            return t
        t = t[t[column] == t[column].mode()[0]]
    return t


def throughput(t: pd.DataFrame, plt) -> tuple[str, bytes] | None:
    """Bars per framework/layout, grouped by batching (stream mode as its own group)."""
    t = _main_slice(t)
    if t.empty:
        return None
    t = t.assign(group=[b if m == "sentence" else "stream" for m, b in zip(t["mode"], t["batching"])])
    groups = [g for g in ("random", "bucketed", "stream") if g in set(t.group)]
    native = {(b, lay) for b, lay, n in zip(t.backend, t.layout, t.native) if n}
    layouts = {b: sorted(set(t[t.backend == b].layout), key=lambda lay, b=b: ((b, lay) not in native, lay))
               for b in sorted(set(t.backend))}
    bars = [(b, lay) for b, lays in layouts.items() for lay in lays]
    width = 0.8 / len(bars)
    fig, ax = plt.subplots(figsize=(WIDTH, 4.8), layout="constrained")
    seen: list[str] = []
    for i, (backend, layout) in enumerate(bars):
        xs, ys, lo, hi = [], [], [], []
        for gi, group in enumerate(groups):
            row = t[(t.group == group) & (t.backend == backend) & (t.layout == layout)]
            if row.empty:
                continue
            r = row.iloc[0]
            xs.append(gi + (i - (len(bars) - 1) / 2) * width)
            ys.append(r.train_words_per_sec)
            one = r.runs < 2  # a single run has no spread to show: no bar, not a zero-length one
            lo.append(np.nan if one else r.train_words_per_sec - r.wps_min)
            hi.append(np.nan if one else r.wps_max - r.train_words_per_sec)
        if not xs:
            continue
        ax.bar(xs, ys, width=width * 0.95, color=colour(backend, seen), edgecolor="black", linewidth=0.5,
               hatch=HATCHES[layouts[backend].index(layout) % len(HATCHES)],
               label=f"{backend} / {layout}" + " (native)" * ((backend, layout) in native),
               yerr=[lo, hi], capsize=0 if all(np.isnan(lo)) else 3, error_kw={"elinewidth": 1})
    ax.set_xticks(range(len(groups)), [f"{g} batching" if g != "stream" else "stream mode" for g in groups])
    ax.set_ylabel("train words/s (real tokens, median of runs)")
    best = t.loc[t.train_words_per_sec.idxmax()]
    ax.set_title(f"Fastest: {best.backend}/{best.layout} ({best.group}), {best.train_words_per_sec:,.0f} words/s")
    _legend_below(ax, len(bars))
    runs = int(t.runs.min())
    caption = (f"Training throughput per framework and layout, grouped by batching ({t.preset.iloc[0]} preset, "
               f"B={t.batch_size.iloc[0]}). Error bars: min–max of the runs' words/s across repeats "
               + ("(one run per cell: no bars)." if t.runs.max() == 1 else f"(≥{runs} run(s) per cell)."))
    return caption, _image(fig)


def padding(t: pd.DataFrame, plt) -> tuple[str, bytes] | None:
    """Per framework and batching: each layout's words/s relative to the padded layout."""
    t = _main_slice(t[t["mode"] == "sentence"])
    rows = []
    for (backend, batching), g in t.groupby(["backend", "batching"], sort=True):
        padded = g[g.layout == "padded"]
        for r in g[g.layout != "padded"].itertuples() if not padded.empty else []:
            rows.append((backend, batching, r.layout, r.train_words_per_sec / padded.iloc[0].train_words_per_sec,
                         r.padding_fraction))
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(WIDTH, 0.45 * len(rows) + 1.6), layout="constrained")
    seen: list[str] = []
    names = [f"{b} {lay}, {bt} ({pad:.0%} padding)" for b, bt, lay, _, pad in rows]
    ax.barh(range(len(rows)), [x for *_, x, _ in rows], color=[colour(b, seen) for b, *_ in rows],
            edgecolor="black", linewidth=0.5)
    ax.axvline(1.0, color="black", linewidth=1)
    ax.set_yticks(range(len(rows)), names, fontsize=LEGEND_PT)
    ax.invert_yaxis()
    ax.set_xlabel("train words/s relative to the same framework's padded layout (×)")
    top = max(rows, key=lambda x: x[3])
    ax.set_title(f"Skipping padding pays most for {top[0]} {top[2]} with {top[1]} batching: {top[3]:.2f}×")
    return ("What padding costs: each padding-free layout against its framework's padded layout, same "
            "batching; > 1 means skipping padding is faster.", _image(fig))


def by_size(df: pd.DataFrame, column: str, name: str, plt) -> tuple[str, bytes] | None:
    """Throughput vs batch size or hidden size: one line per cell that differs in that
    column only (same preset, or same batch size for hidden sizes), where it has 2+ values."""
    from .findings import plain

    df = plain(df)
    fixed = ["backend", "layout", "batching", "mode", "preset" if column == "batch_size" else "batch_size"]
    same = ["machine", "length", "threads"]  # alike beyond the line's own label
    lines = [(k[:len(fixed)], g) for k, g in df.groupby(fixed + same, sort=True) if g[column].nunique() > 1]
    if not lines:
        return None
    fig, ax = plt.subplots(figsize=(WIDTH, 4.5), layout="constrained")
    seen: list[str] = []
    for i, ((b, lay, bt, mode, other), part) in enumerate(lines):
        part = part.groupby(column)["train_words_per_sec"].median()
        ax.plot(part.index, part.values, marker="o", color=colour(b, seen), linestyle=["-", "--", ":", "-."][i % 4],
                label=f"{b}/{lay} {mode} {bt} ".replace(" - ", " ")
                + (other if column == "batch_size" else f"B={other}"))
    ax.set_xlabel(name)
    ax.set_ylabel("train words/s (real tokens)")
    ax.set_title(f"Throughput vs {name}")
    _legend_below(ax, 3)
    return f"Training throughput vs {name} (median of runs).", _image(fig)


def ppl_vs_time(df: pd.DataFrame, plt) -> tuple[str, bytes] | None:
    trained = df[df["epoch_log"].notna()]
    if trained.empty:
        return None
    fig, ax = plt.subplots(figsize=(WIDTH, 4.5), layout="constrained")
    seen: list[str] = []
    ends = []
    for row in trained.itertuples():
        log = [e for e in row.epoch_log if e.get("valid_ppl") is not None and e.get("wall_seconds") is not None]
        if not log:
            continue
        ax.plot([e["wall_seconds"] / 60 for e in log], [e["valid_ppl"] for e in log], marker="o",
                color=colour(row.backend, seen), linestyle="-" if row.mode == "stream" else "--",
                label=f"{row.backend}/{row.layout} {row.mode}, {len(log)} epochs")
        ends.append((log[-1]["valid_ppl"], row.backend, log[-1]["wall_seconds"] / 60))
    if not ends:
        plt.close(fig)
        return None
    ax.set_xlabel("wall-clock minutes (training + validation)")
    ax.set_ylabel("validation perplexity (log scale)")
    ax.set_yscale("log")
    from matplotlib.ticker import FuncFormatter

    for axis in (ax.yaxis.set_major_formatter, ax.yaxis.set_minor_formatter):  # 120, not 1.2 × 10²
        axis(FuncFormatter(lambda v, _: f"{v:g}"))
    best = min(ends)
    ax.set_title(f"Lowest validation perplexity: {best[1]}, {best[0]:.1f} after {best[2]:.0f} min")
    _legend_below(ax, 3)
    return ("Validation perplexity vs wall-clock time (runs trained for whole epochs; solid: stream mode, "
            "dashed: sentence mode).", _image(fig))


def plots(df: pd.DataFrame, t: pd.DataFrame) -> dict[str, tuple[str, bytes]]:
    """name -> (caption, SVG bytes); only the plots the data supports."""
    plt = _style()
    made = {"throughput": throughput(t, plt), "padding": padding(t, plt),
            "batch_size": by_size(df, "batch_size", "batch size", plt),
            "hidden": by_size(df, "hidden", "hidden size", plt) if "hidden" in df else None,
            "ppl_vs_time": ppl_vs_time(df, plt)}
    return {k: v for k, v in made.items() if v is not None}
