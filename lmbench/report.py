"""`lmbench report`: run records -> report.md and a self-contained report.html (plots inline)."""
from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd

from .results import ResultsError, label, load_records

PUBLISHED = {"small": (120.7, 114.5), "medium": (86.2, 82.7), "large": (82.2, 78.4)}  # Zaremba 2014


def frame(records: list[dict]) -> pd.DataFrame:
    """One row per successful run."""
    rows = []
    for r in records:
        if r["status"] != "ok":
            continue
        m, c, e = r["metrics"], r["config"], r.get("environment") or {}
        st = m["step_time_ms"]
        rows.append({
            "backend": r["backend"], "layout": r["layout"], "preset": c["preset"], "mode": c["mode"],
            "batching": c["batching"] if c["mode"] == "sentence" else "-", "batch_size": c["batch_size"],
            "train_words_per_sec": m["train_words_per_sec"], "step_ms_median": st["median"],
            "step_ms_p10": st["p10"], "step_ms_p90": st["p90"],
            "eval_words_per_sec": m.get("eval_words_per_sec"), "valid_ppl": m.get("valid_ppl"),
            "test_ppl": m.get("test_ppl"), "peak_memory_mib": m["peak_memory_bytes"] / 2 ** 20,
            "padding_fraction": m["padding_fraction"], "achieved_gflops": m["achieved_flops_per_sec"] / 1e9,
            "framework": f"{e.get('framework')} {e.get('framework_version')}", "device": r.get("device"),
            "device_name": e.get("device_name"), "epoch_log": m.get("epoch_log"),
        })
    return pd.DataFrame(rows)


def headline(df: pd.DataFrame) -> pd.DataFrame:
    """backend x layout x batching (x mode/preset/batch): medians over repeats, vs the fastest."""
    keys = ["backend", "layout", "preset", "mode", "batching", "batch_size"]
    g = df.groupby(keys, sort=False)
    t = g.agg(runs=("train_words_per_sec", "size"), train_words_per_sec=("train_words_per_sec", "median"),
              step_ms_p10=("step_ms_p10", "median"), step_ms_median=("step_ms_median", "median"),
              step_ms_p90=("step_ms_p90", "median"), eval_words_per_sec=("eval_words_per_sec", "median"),
              valid_ppl=("valid_ppl", "median"), peak_memory_mib=("peak_memory_mib", "max"),
              padding_fraction=("padding_fraction", "median"), achieved_gflops=("achieved_gflops", "median"),
              framework=("framework", "first")).reset_index()
    fastest = t.groupby(["preset", "mode"])["train_words_per_sec"].transform("max")
    t["vs_fastest"] = t["train_words_per_sec"] / fastest
    return t.sort_values(["preset", "mode", "train_words_per_sec"], ascending=[True, True, False])


def _png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def plots(df: pd.DataFrame, table: pd.DataFrame) -> dict[str, bytes]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = {}
    sent = table[table["mode"] == "sentence"]
    if not sent.empty:
        fig, ax = plt.subplots(figsize=(9, 4))
        names = [f"{b}/{l}\n{bt}" for b, l, bt in zip(sent.backend, sent.layout, sent.batching)]
        err = [sent.train_words_per_sec * (1 - sent.step_ms_median / sent.step_ms_p90),
               sent.train_words_per_sec * (sent.step_ms_median / sent.step_ms_p10 - 1)]
        ax.bar(names, sent.train_words_per_sec, yerr=np.clip(err, 0, None), capsize=3)
        ax.set_ylabel("train words/s (real tokens)")
        ax.set_title("Throughput per backend and layout (error bars: step-time p10-p90)")
        ax.tick_params(axis="x", labelsize=7)
        out["throughput"] = _png(fig)
        # what padding costs: each layout's throughput next to its padding fraction
        fig, ax = plt.subplots(figsize=(6, 4))
        for backend, part in sent.groupby("backend"):
            ax.scatter(part.padding_fraction, part.train_words_per_sec, label=backend)
            for _, row in part.iterrows():
                ax.annotate(row.layout, (row.padding_fraction, row.train_words_per_sec), fontsize=7)
        ax.set_xlabel("padding fraction of the batches")
        ax.set_ylabel("train words/s (real tokens)")
        ax.set_title("Real vs padded work")
        ax.legend()
        out["padding"] = _png(fig)
    if df["batch_size"].nunique() > 1:
        fig, ax = plt.subplots(figsize=(6, 4))
        for (b, l), part in df.groupby(["backend", "layout"]):
            part = part.groupby("batch_size")["train_words_per_sec"].median()
            ax.plot(part.index, part.values, marker="o", label=f"{b}/{l}")
        ax.set_xlabel("batch size")
        ax.set_ylabel("train words/s")
        ax.legend(fontsize=7)
        out["batch_size"] = _png(fig)
    trained = df[df["epoch_log"].notna()]
    if not trained.empty:
        fig, ax = plt.subplots(figsize=(6, 4))
        for _, row in trained.iterrows():
            log = [e for e in row.epoch_log if "valid_ppl" in e]
            ax.plot([e["wall_seconds"] for e in log], [e["valid_ppl"] for e in log], marker="o",
                    label=f"{row.backend}/{row.layout}")
        ax.set_xlabel("wall-clock seconds")
        ax.set_ylabel("validation perplexity")
        ax.set_yscale("log")
        ax.legend(fontsize=7)
        out["ppl_vs_time"] = _png(fig)
    return out


def _peaks(results_paths) -> dict:
    from .peak import load_peaks

    return load_peaks(results_paths)


def write_report(paths, out_dir="results/report", warn=print) -> list[Path]:
    records = load_records(paths, warn=warn)
    df = frame(records)
    failed = [r for r in records if r["status"] != "ok"]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    md, body = ["# lmbench report", ""], ["<h1>lmbench report</h1>"]
    envs = sorted({(r.get("hostname"), r.get("cpu_model"), r.get("device"), (r.get("git_commit") or "")[:10])
                   for r in records})
    versions = sorted({f"{(r.get('environment') or {}).get('framework')} "
                       f"{(r.get('environment') or {}).get('framework_version')}" for r in records
                       if r.get("environment")})
    env_lines = [f"machine {h} ({cpu}), device {d}, commit {c}" for h, cpu, d, c in envs]
    env_lines.append("frameworks: " + ", ".join(versions))
    md += ["## Environment", ""] + [f"- {line}" for line in env_lines] + [""]
    body += ["<h2>Environment</h2><ul>"] + [f"<li>{html.escape(x)}</li>" for x in env_lines] + ["</ul>"]
    images = {}
    if not df.empty:
        table = headline(df)
        peaks = _peaks(paths)
        fw = table.framework.str.split().str[0]
        table["pct_of_peak"] = [100 * g / peaks[f] if peaks.get(f) else np.nan
                                for g, f in zip(table.achieved_gflops, fw)]
        shown = table.drop(columns=["framework"]).round(
            {"train_words_per_sec": 0, "eval_words_per_sec": 0, "step_ms_p10": 1, "step_ms_median": 1,
             "step_ms_p90": 1, "valid_ppl": 2, "peak_memory_mib": 0, "padding_fraction": 3,
             "achieved_gflops": 3, "vs_fastest": 3, "pct_of_peak": 1})
        md += ["## Headline", "", shown.to_markdown(index=False), ""]
        body += ["<h2>Headline</h2>", shown.to_html(index=False, na_rep="-", classes="headline")]
        note = ("achieved model FLOP/s as % of the framework's float32 GEMM peak measured by `lmbench peak`"
                if peaks else "no GEMM peak measured on this machine: run `lmbench peak` for utilisation")
        md += [f"pct_of_peak: {note}.", ""]
        body += [f"<p>pct_of_peak: {html.escape(note)}.</p>"]
        trained = df[df.epoch_log.notna() & df.preset.isin(PUBLISHED)]
        if not trained.empty:
            rows = [{"run": f"{r.backend}/{r.layout} {r.preset} {r.mode}", "valid_ppl": r.valid_ppl,
                     "test_ppl": r.test_ppl, "published_valid": PUBLISHED[r.preset][0],
                     "published_test": PUBLISHED[r.preset][1]} for r in trained.itertuples()]
            ppl = pd.DataFrame(rows).round(2)
            md += ["## Perplexity vs Zaremba et al. (2014)", "", ppl.to_markdown(index=False), ""]
            body += ["<h2>Perplexity vs Zaremba et al. (2014)</h2>", ppl.to_html(index=False, na_rep="-")]
        images = plots(df, table)
        md += ["## Plots", ""]
        body += ["<h2>Plots</h2>"]
        for name, png in images.items():
            (out_dir / f"{name}.png").write_bytes(png)
            md += [f"![{name}]({name}.png)", ""]
            body.append(f'<figure><img alt="{name}" src="data:image/png;base64,'
                        f'{base64.b64encode(png).decode()}"><figcaption>{name}</figcaption></figure>')
    if failed:
        md += ["## Failed runs", ""] + [f"- {label(r)}: {r['error'].splitlines()[0]}" for r in failed] + [""]
        body += ["<h2>Failed runs</h2><ul>"] + [f"<li>{html.escape(label(r))}: "
                                                f"{html.escape(r['error'].splitlines()[0])}</li>"
                                                for r in failed] + ["</ul>"]
    (out_dir / "report.md").write_text("\n".join(md))
    style = ("body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;font-size:13px}"
             "td,th{border:1px solid #bbb;padding:3px 6px;text-align:right}img{max-width:100%}")
    (out_dir / "report.html").write_text(
        f"<!doctype html><html><head><meta charset='utf-8'><title>lmbench report</title>"
        f"<style>{style}</style></head><body>{''.join(body)}</body></html>")
    (out_dir / "report.json").write_text(json.dumps({"runs": len(records), "failed": len(failed)}))
    return [out_dir / "report.md", out_dir / "report.html"]


def cmd_report(a) -> int:
    from .cli import Fail

    try:
        paths = write_report(a.results or ["results"], a.out)
    except ResultsError as e:
        raise Fail(str(e)) from e
    print("wrote " + ", ".join(map(str, paths)))
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("report", help="tables and plots from run records")
    p.add_argument("results", nargs="*", help="JSONL files or directories (default: results/)")
    p.add_argument("--out", default="results/report")
    p.set_defaults(func=cmd_report)
