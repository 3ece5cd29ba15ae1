"""The report's data-parallel section: words/s, speedup and efficiency against workers.

Speedup(N) = words/s with N workers / words/s of the same cell run by 1 worker with the
same total threads (N workers get threads / N each, so the thread budget is the
machine's either way); efficiency = speedup / N. Medians over repeats. A cell with no
1-worker twin at the same thread count gets no speedup (the table says "no 1-worker run").

Equal work: N workers need not do the work 1 worker does. corpus.shard trims each shard to
its own longest row, so a layout whose LSTM runs over padded positions computes fewer of
them with N workers (0.91x with 2, 0.81x with 4 on the small preset's random batches).
The work ratio = the LSTM's positions per real token with N workers / with 1 (records'
metrics["work"], lmbench.run.worker.lstm_work), and the equal-work efficiency = efficiency x
work ratio: the scaling of positions computed per second rather than of words per second.
"""
from __future__ import annotations

import statistics
from collections import defaultdict

from .plots import FORMAT, WIDTH, _image, _legend_below, _style, colour
from ..runspec import RunSpec, identity_text, record_identity


def _cell(r: dict) -> tuple:
    """The run's identity but for how many workers ran it (lmbench.runspec): a 1-worker run is
    the baseline of an N-worker run only when everything else, compile and precision too,
    is the same. The scaling is kept: strong and weak are two rows against one baseline."""
    c, spec = r["config"], RunSpec.from_record(r)
    return (r["backend"], r["layout"], c["preset"], c["mode"], c["batching"] if c["mode"] == "sentence" else "-",
            c["batch_size"], spec.steps, spec.scaling, spec.threads, r.get("device"),
            identity_text(record_identity(r, without=("workers", "nodes", "scaling"))))


def scaling_rows(records: list[dict]) -> list[dict]:
    """One row per (cell, workers) for every cell that has a data-parallel run."""
    runs = defaultdict(list)
    for r in records:
        if r.get("status") == "ok" and r.get("metrics"):
            dp = r["metrics"].get("data_parallel") or {}  # the whole job's workers, every machine's
            runs[(_cell(r), dp.get("workers") or (r.get("run") or {}).get("workers") or 1)].append(r)
    parallel = {cell for cell, workers in runs if workers > 1}
    rows = []
    for (cell, workers), rs in sorted(runs.items(), key=lambda kv: (str(kv[0][0]), kv[0][1])):
        if cell not in parallel:
            continue
        wps = statistics.median(r["metrics"]["train_words_per_sec"] for r in rs)
        one = next((rs for (c, w), rs in runs.items() if w == 1 and c[-1] == cell[-1]), None)
        base = statistics.median(r["metrics"]["train_words_per_sec"] for r in one) if one else None
        dp = rs[0]["metrics"].get("data_parallel") or {}
        work = _work(rs)
        base_work = _work(one) if one else None
        ratio = work / base_work if work and base_work else None
        shares = [r["metrics"]["data_parallel"]["allreduce_share"] for r in rs
                  if (r["metrics"].get("data_parallel") or {}).get("allreduce_share") is not None]
        imbalance = [r["metrics"]["data_parallel"]["imbalance"] for r in rs
                     if (r["metrics"].get("data_parallel") or {}).get("imbalance") is not None]
        backend, layout, preset, mode, batching, batch, steps, scaling, threads, device, _ = cell
        rows.append({"backend": backend, "layout": layout, "preset": preset, "mode": mode, "batching": batching,
                     "scaling": scaling, "workers": workers, "threads": threads,
                     "per_worker_batch": "/".join(map(str, sorted(set(dp.get("per_worker_batch_size") or [batch])))),
                     "global_batch": dp.get("global_batch_size", batch), "words_per_sec": wps, "runs": len(rs),
                     "speedup": wps / base if base else None,
                     "efficiency": wps / base / workers if base else None,
                     "work_ratio": ratio,
                     "equal_work_efficiency": wps / base / workers * ratio if base and ratio else None,
                     "allreduce_share": statistics.median(shares) if shares else None,
                     "imbalance": statistics.median(imbalance) if imbalance else None,
                     "engine": ((rs[0].get("environment") or {}).get("data_parallel") or {}).get("engine")})
    return rows


def _work(runs: list[dict]) -> float | None:
    """Median positions the LSTM computed per real token over `runs` (None where unknown)."""
    values = [((r["metrics"].get("work") or {}).get("lstm_positions_per_token")) for r in runs]
    values = [v for v in values if v]
    return statistics.median(values) if values else None


def _fmt(x, spec, missing="–"):
    return missing if x is None else format(x, spec)


def section(records: list[dict]) -> tuple[list, dict[str, bytes]]:
    """Report blocks and plot files; nothing when no run had more than one worker."""
    rows = scaling_rows(records)
    if not rows:
        return [], {}
    headers = ["Framework / layout", "Mode", "Scaling", "Workers", "Threads", "Batch per worker / global",
               "Train words/s", "Speedup", "Efficiency", "Work ratio (N ÷ 1)", "Equal-work efficiency",
               "All-reduce share", "Worker imbalance"]
    table = [[(f"{r['backend']}/{r['layout']}", f"{r['backend']}/{r['layout']}"),
              (r["mode"], f"{r['preset']} {r['mode']}" + (f"/{r['batching']}" if r["batching"] != "-" else "")),
              (r["scaling"], r["scaling"]), (r["workers"], str(r["workers"])),
              (r["threads"], f"{r['threads']} ({r['threads'] // r['workers']} per worker)"),
              (r["global_batch"], f"{r['per_worker_batch']} / {r['global_batch']}"),
              (r["words_per_sec"], f"{r['words_per_sec']:,.0f}"),
              (r["speedup"], _fmt(r["speedup"], ".2f", "no 1-worker run")),
              (r["efficiency"], _fmt(r["efficiency"], ".0%")),
              (r["work_ratio"], _fmt(r["work_ratio"], ".3f")),
              (r["equal_work_efficiency"], _fmt(r["equal_work_efficiency"], ".0%")),
              (r["allreduce_share"], _fmt(r["allreduce_share"], ".0%")),
              (r["imbalance"], _fmt(r["imbalance"], ".0%"))] for r in rows]
    engines = sorted({f"{r['backend']}: {r['engine']}" for r in rows if r["engine"]})
    blocks = [("h2", "Data-parallel scaling"),
              ("table", headers, table, "sortable scaling"),
              ("p", "Speedup: train words/s (real tokens of all workers over the slowest worker's timed "
                    "region) ÷ the same cell run by 1 worker with the same total threads; efficiency = "
                    "speedup ÷ workers. Strong scaling splits the preset's batch over the workers, weak "
                    "gives each a whole one. All-reduce share: 1 − step time without the gradient all-reduce "
                    "÷ with it, same steps at lr 0, each leg timed by its slowest worker (time the engine "
                    "overlaps with backward is not counted); worker imbalance: the slowest worker's steps "
                    "without the all-reduce ÷ the fastest's − 1, the wait the share no longer counts. "
                    "Work ratio: positions the LSTM computed per real token with N workers ÷ with 1 (below 1 "
                    "where each worker's shard is trimmed to its own longest sentence and the layout's LSTM "
                    "runs over padding: N workers then do less work than 1); equal-work efficiency = "
                    "efficiency × work ratio. Quote the equal-work efficiency for how well a framework scales "
                    "(it does not credit the padding the shards leave out, which differs by layout); the "
                    "speedup is how much sooner this training ends. "
                    "Engines: " + "; ".join(engines) + ".")]
    image = _plot(rows)
    files = {}
    if image:
        blocks.append(("figure", "scaling", "Train words/s and scaling efficiency against data-parallel "
                                            "workers, per framework (same total threads).", image))
        files[f"scaling.{FORMAT}"] = image
    return blocks, files


def _plot(rows: list[dict]) -> bytes | None:
    plt = _style()
    lines = defaultdict(list)
    for r in rows:
        lines[(r["backend"], r["layout"], r["mode"], r["scaling"])].append(r)
    fig, (left, right) = plt.subplots(1, 2, figsize=(WIDTH, 4), layout="constrained")
    seen: list[str] = []
    for (backend, layout, mode, scaling), rs in sorted(lines.items()):
        rs = sorted(rs, key=lambda r: r["workers"])
        style = dict(color=colour(backend, seen), marker="o", linestyle="-" if mode == "sentence" else "--",
                     label=f"{backend}/{layout} {mode}" + (" (weak)" if scaling == "weak" else ""))
        left.plot([r["workers"] for r in rs], [r["words_per_sec"] for r in rs], **style)
        eff = [(r["workers"], r["efficiency"]) for r in rs if r["efficiency"] is not None]
        if eff:
            right.plot(*zip(*eff), **{**style, "label": None})
    workers = sorted({r["workers"] for r in rows} | {1})
    for ax in (left, right):
        ax.set_xticks(workers)
        ax.set_xlabel("data-parallel workers")
    left.set_ylim(bottom=0)  # from zero: a drop of 10% must look like 10%
    right.set_ylim(0, max(1.1, *(r["efficiency"] or 0 for r in rows)))
    left.set_ylabel("train words/s (all workers)")
    left.set_title("Throughput against workers")
    right.set_ylabel("scaling efficiency")
    right.axhline(1.0, color="grey", linewidth=0.8)
    right.set_title("Efficiency (1.0 = linear)")
    _legend_below(left, len(lines))
    return _image(fig)
