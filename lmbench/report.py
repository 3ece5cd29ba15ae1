"""`lmbench report`: run records -> report.md and a self-contained report.html.

Built with pandas and matplotlib (Agg): the headline table (medians over repeats), plots
embedded as base64 PNGs in the HTML (and written beside report.md), utilisation against
the GEMM peak of `lmbench peak`, the environment, and the failed runs with their errors.
"""
from __future__ import annotations

import base64
import html
import io
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from .peak import peak_for
from .results import ResultsError, label, load_records

PUBLISHED = {"small": (120.7, 114.5), "medium": (86.2, 82.7), "large": (82.2, 78.4)}  # Zaremba 2014
ROUND = {"train_words_per_sec": 0, "eval_words_per_sec": 0, "step_ms_p10": 1, "step_ms_median": 1,
         "step_ms_p90": 1, "valid_ppl": 2, "test_ppl": 2, "peak_memory_mib": 0, "padding_fraction": 3,
         "achieved_gflops": 3, "pct_of_peak": 1, "vs_fastest": 3}


def frame(records: list[dict], search: list[Path] = ()) -> pd.DataFrame:
    """One row per successful run."""
    rows = []
    for r in records:
        if r["status"] != "ok" or not r.get("metrics"):
            continue
        m, c = r["metrics"], r["config"]
        st = m.get("step_time_ms") or {}
        gflops = (m.get("achieved_flops_per_sec") or np.nan) / 1e9
        peak = peak_for(r, list(search))
        mem = m.get("peak_memory_bytes")
        rows.append({
            "backend": r["backend"], "layout": r["layout"], "preset": c["preset"], "mode": c["mode"],
            "batching": c["batching"] if c["mode"] == "sentence" else "-", "batch_size": c["batch_size"],
            "train_words_per_sec": m["train_words_per_sec"], "step_ms_median": st.get("median", np.nan),
            "step_ms_p10": st.get("p10", np.nan), "step_ms_p90": st.get("p90", np.nan),
            "eval_words_per_sec": m.get("eval_words_per_sec"), "valid_ppl": m.get("valid_ppl"),
            "test_ppl": m.get("test_ppl"), "peak_memory_mib": mem / 2 ** 20 if mem else np.nan,
            "padding_fraction": m.get("padding_fraction", np.nan), "achieved_gflops": gflops,
            "pct_of_peak": 100 * gflops / peak if peak else np.nan,
            "epoch_log": m.get("epoch_log") or None,
            "target_ppl": m.get("target_ppl"), "time_to_target_seconds": m.get("time_to_target_seconds"),
        })
    return pd.DataFrame(rows)


def headline(df: pd.DataFrame) -> pd.DataFrame:
    """backend x layout x batching (x preset/mode/batch size where they vary): medians over
    repeats, the step-time spread, and throughput relative to the fastest comparable run."""
    keys = ["backend", "layout", "batching"] + [k for k in ("preset", "mode", "batch_size")
                                                if df[k].nunique() > 1]
    agg = {"runs": ("train_words_per_sec", "size")}
    for col in ("train_words_per_sec", "step_ms_p10", "step_ms_median", "step_ms_p90", "eval_words_per_sec",
                "valid_ppl", "test_ppl", "padding_fraction", "achieved_gflops", "pct_of_peak"):
        agg[col] = (col, "median")
    agg["peak_memory_mib"] = ("peak_memory_mib", "max")
    t = df.groupby(keys, sort=False, dropna=False).agg(**agg).reset_index()
    t = t.dropna(axis=1, how="all")  # e.g. no eval anywhere: no eval columns
    same = [k for k in ("preset", "mode") if k in keys]
    fastest = t.groupby(same)["train_words_per_sec"].transform("max") if same else t["train_words_per_sec"].max()
    t["vs_fastest"] = t["train_words_per_sec"] / fastest
    return t.sort_values(same + ["train_words_per_sec"], ascending=[True] * len(same) + [False])


def _png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def plots(df: pd.DataFrame) -> dict[str, tuple[str, bytes]]:
    """name -> (caption, PNG bytes); only the plots the data supports."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = {}
    base = df[(df["mode"] == "sentence") & (df["preset"] == df["preset"].mode()[0])]
    base = base[base["batch_size"] == base["batch_size"].mode()[0]] if not base.empty else base
    if not base.empty:
        g = base.groupby(["backend", "layout", "batching"], sort=True).agg(
            wps=("train_words_per_sec", "median"), med=("step_ms_median", "median"),
            p10=("step_ms_p10", "median"), p90=("step_ms_p90", "median"),
            pad=("padding_fraction", "median")).reset_index()
        # words/s is tokens / step time: the p90 step time gives the low end, p10 the high end
        err = np.clip([g.wps - g.wps * g.med / g.p90, g.wps * g.med / g.p10 - g.wps], 0, None)
        fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(g)), 4.5))
        ax.bar([f"{b}/{l}\n{bt}" for b, l, bt in zip(g.backend, g.layout, g.batching)], g.wps,
               yerr=np.nan_to_num(err), capsize=3, color=[f"C{sorted(set(g.backend)).index(b)}" for b in g.backend])
        ax.set_ylabel("train words/s (real tokens)")
        ax.tick_params(axis="x", labelsize=7, labelrotation=30)
        plt.setp(ax.get_xticklabels(), ha="right", rotation_mode="anchor")  # long names must not overlap
        out["throughput"] = ("Training throughput per backend, layout and batching "
                             "(error bars: step-time p10-p90)", _png(fig))
        # what padding costs: every layout of a framework side by side, per batching
        fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(g)), 4))
        groups = list(g.groupby(["backend", "batching"], sort=True))
        for gi, ((backend, batching), part) in enumerate(groups):
            for li, row in enumerate(part.itertuples()):
                x = gi + (li - (len(part) - 1) / 2) * 0.8 / len(part)
                ax.bar(x, row.wps, width=0.8 / len(part), color=f"C{li}", edgecolor="black",
                       hatch="" if li == 0 else "//")
                ax.annotate(row.layout, (x, row.wps), ha="center", va="bottom", fontsize=7)
        ax.set_xticks(range(len(groups)), [f"{b} {bt}\npadding {part.pad.median():.0%}"
                                           for (b, bt), part in groups], fontsize=7)
        ax.set_ylabel("train words/s (real tokens)")
        out["padding"] = ("What padding costs: each framework's layouts side by side; the label gives "
                          "the fraction of padded positions in the batches", _png(fig))
    if df["batch_size"].nunique() > 1:
        fig, ax = plt.subplots(figsize=(6, 4))
        for (b, l, bt, mode), part in df.groupby(["backend", "layout", "batching", "mode"]):
            part = part.groupby("batch_size")["train_words_per_sec"].median()
            ax.plot(part.index, part.values, marker="o", label=f"{b}/{l} {mode} {bt}".replace(" -", ""))
        ax.set_xlabel("batch size")
        ax.set_ylabel("train words/s")
        ax.legend(fontsize=7)
        out["batch_size"] = ("Throughput vs batch size", _png(fig))
    trained = df[df["epoch_log"].notna()]
    if not trained.empty:
        fig, ax = plt.subplots(figsize=(6, 4))
        for row in trained.itertuples():
            log = [e for e in row.epoch_log if e.get("valid_ppl") is not None]
            ax.plot([e["wall_seconds"] for e in log], [e["valid_ppl"] for e in log], marker="o",
                    label=f"{row.backend}/{row.layout} {row.preset} {row.mode}")
        ax.set_xlabel("wall-clock seconds")
        ax.set_ylabel("validation perplexity")
        ax.set_yscale("log")
        ax.legend(fontsize=7)
        out["ppl_vs_time"] = ("Validation perplexity vs wall-clock time (runs trained for epochs)", _png(fig))
    return out


def environment(records: list[dict]) -> list[str]:
    lines = set()
    for r in records:
        e = r.get("environment") or {}
        commit = (r.get("git_commit") or "no git")[:10] + (" (uncommitted changes)" if r.get("git_dirty") else "")
        dev = r.get("device") or "-"
        if e.get("device_name") and e["device_name"] != dev:
            dev += f" ({e['device_name']}, CUDA {e.get('cuda_version')}, cuDNN {e.get('cudnn_version')})"
        lines.add(f"machine {r.get('hostname')}: {r.get('cpu_model')}, {r.get('cpu_count')} CPUs, "
                  f"{r.get('platform')}, Python {r.get('python_version')}; commit {commit}")
        if e:
            lines.add(f"{r['backend']}: {e.get('framework')} {e.get('framework_version')} on {dev}"
                      + (f"; LSTM kernel: {e['lstm_kernel']}" if e.get("lstm_kernel") else ""))
    return sorted(lines)


def write_report(paths, out_dir="results/report", warn=print) -> list[Path]:
    """Read records (bad lines skipped with a warning) and write report.md + report.html."""
    paths = [Path(p) for p in paths]
    records = load_records(paths, warn=warn)
    df = frame(records, paths)
    failed = [r for r in records if r["status"] != "ok"]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    md = ["# lmbench report", "", f"{len(records)} run(s): {len(records) - len(failed)} ok, {len(failed)} failed.", ""]
    body = ["<h1>lmbench report</h1>", f"<p>{len(records)} run(s): {len(records) - len(failed)} ok, "
            f"{len(failed)} failed.</p>"]
    if not df.empty:
        table = headline(df)
        shown = table.round({k: v for k, v in ROUND.items() if k in table})
        md += ["## Headline", "", shown.astype(object).where(shown.notna(), "-").to_markdown(index=False), ""]
        body += ["<h2>Headline</h2>", shown.to_html(index=False, na_rep="-", classes="headline")]
        notes = ["words/s count real target tokens only (never padding); medians over repeats; "
                 "step_ms = per-step time p10/median/p90; vs_fastest = train words/s / the fastest run of "
                 "the same preset and mode"]
        if df["pct_of_peak"].notna().any():
            notes.append("pct_of_peak = achieved model FLOP/s as a percentage of the framework's float32 GEMM "
                         "rate on the same device, measured by `lmbench peak`")
        else:
            notes.append("no GEMM peak was measured for these runs' machine: run `lmbench peak` to see "
                         "utilisation (pct_of_peak)")
        md += [f"- {n}" for n in notes] + [""]
        body += ["<ul>"] + [f"<li>{html.escape(n)}</li>" for n in notes] + ["</ul>"]
        trained = df[df.epoch_log.notna() & df.preset.isin(PUBLISHED)]
        if not trained.empty:
            ppl = pd.DataFrame([{
                "run": f"{r.backend}/{r.layout} {r.preset} {r.mode}", "epochs": len(r.epoch_log),
                "valid_ppl": r.valid_ppl, "test_ppl": r.test_ppl, # the paper's figures are stream mode: a sentence-mode run has no published twin
                "published_valid": PUBLISHED[r.preset][0] if r.mode == "stream" else None,
                "published_test": PUBLISHED[r.preset][1] if r.mode == "stream" else None, "minutes": r.epoch_log[-1]["wall_seconds"] / 60,
                "target_ppl": r.target_ppl,
                # time-to-quality: wall minutes until validation perplexity first fell below the target
                "minutes_to_target": (r.time_to_target_seconds / 60
                                    if r.time_to_target_seconds is not None and r.time_to_target_seconds == r.time_to_target_seconds
                                    else None),
            } for r in trained.itertuples()]).round(2)
            md += ["## Perplexity vs Zaremba et al. (2014)", "", ppl.astype(object).where(ppl.notna(), "-").to_markdown(index=False), ""]
            body += ["<h2>Perplexity vs Zaremba et al. (2014)</h2>", ppl.to_html(index=False, na_rep="-")]
            note = ("published = Zaremba et al. 2014 after the preset's full schedule (small: 13 epochs); "
                    "minutes_to_target empty = validation perplexity never fell below target_ppl")
            md += [f"- {note}", ""]
            body += [f"<p>{html.escape(note)}</p>"]
        md += ["## Plots", ""]
        body += ["<h2>Plots</h2>"]
        for name, (caption, png) in plots(df).items():
            (out_dir / f"{name}.png").write_bytes(png)
            md += [f"![{caption}]({name}.png)", "", f"*{caption}*", ""]
            body.append(f'<figure><img alt="{html.escape(name)}" src="data:image/png;base64,'
                        f'{base64.b64encode(png).decode()}"><figcaption>{html.escape(caption)}</figcaption></figure>')
    env_lines = environment(records)
    md += ["## Environment", ""] + [f"- {x}" for x in env_lines] + [""]
    body += ["<h2>Environment</h2><ul>"] + [f"<li>{html.escape(x)}</li>" for x in env_lines] + ["</ul>"]
    if failed:
        rows = [(label(r), r.get("error_kind") or "error", (r.get("error") or "").strip().splitlines()[:1] or [""])
                for r in failed]
        md += ["## Failed runs", "", "| run | kind | error |", "|---|---|---|"]
        md += [f"| {n} | {k} | {e[0].replace('|', '/')} |" for n, k, e in rows] + [""]
        body += ["<h2>Failed runs</h2><table class='failed'><thead><tr><th>run</th><th>kind</th><th>error</th>"
                 "</tr></thead><tbody>"]
        body += [f"<tr><td>{html.escape(n)}</td><td>{html.escape(k)}</td><td>{html.escape(e[0])}</td></tr>"
                 for n, k, e in rows] + ["</tbody></table>"]
    (out_dir / "report.md").write_text("\n".join(md))
    style = ("body{font-family:sans-serif;margin:2em;max-width:1400px}table{border-collapse:collapse;"
             "font-size:13px}td,th{border:1px solid #bbb;padding:3px 6px;text-align:right}"
             "img{max-width:100%}figure{margin:1em 0}figcaption{color:#444;font-size:13px}")
    (out_dir / "report.html").write_text(
        "<!doctype html><html><head><meta charset='utf-8'><title>lmbench report</title>"
        f"<style>{style}</style></head><body>{''.join(body)}</body></html>")
    return [out_dir / "report.md", out_dir / "report.html"]


def cmd_report(a) -> int:
    from .cli import Fail

    try:
        paths = write_report(a.results or ["results"], a.out, warn=lambda m: print(m, file=sys.stderr))
    except ResultsError as e:
        raise Fail(str(e)) from e
    print("wrote " + ", ".join(map(str, paths)))
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("report", help="tables and plots from run records (report.md, report.html)")
    p.add_argument("results", nargs="*", help="JSONL files or directories (default: results/)")
    p.add_argument("--out", default="results/report")
    p.set_defaults(func=cmd_report)
