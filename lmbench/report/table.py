"""The report's numbers: one row per run, then one row per cell (medians over repeats),
the device ceiling for utilisation, and the tables as readers see them (human headers,
units, formatted numbers) for both report.md and report.html.

Utilisation divides a run's achieved model FLOP/s by ONE ceiling per device: the best
float32 GEMM rate any framework reached on that device in `lmbench peak` (peak.json).
Dividing by each framework's own GEMM rate would credit a framework for a slow GEMM;
that own rate stays a column of its own in the details table.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..backend import available_backends, computes_padding, native_layout
from ..env import record_machine_key
from ..run.peak import ceiling_for, find_peaks
from ..results import variant
from ..runspec import EAGER, PRECISIONS, RunSpec, identity_text, record_identity, where

PUBLISHED = {"small": (120.7, 114.5), "medium": (86.2, 82.7), "large": (82.2, 78.4)}  # Zaremba 2014


# the identities a finding compares runs within: everything the same but what it is about
# (lmbench.runspec: a median or a ratio never mixes two identities)
COMPARED_WITHIN = {
    "identity": (),  # repeats of one run
    "across_frameworks": ("backend", "layout", "framework_version"),
    "across_layouts": ("layout",),
    "across_batchings": ("batching",),
    "variant_base": ("compile", "precision", "framework_version", "ran_on"),  # a variant vs its eager run
    "scaling_base": ("workers", "nodes", "scaling"),  # N workers vs 1
}


def comparison_keys(record: dict) -> dict[str, str]:
    """{name: identity text} of a record for every COMPARED_WITHIN grouping."""
    return {name: identity_text(record_identity(record, without)) for name, without in COMPARED_WITHIN.items()}


def device_ceiling(peaks: dict, device: str | None, precision: str = "fp32") -> tuple[float, str] | tuple[None, None]:
    """(GFLOP/s, framework) of the best GEMM in `precision` any framework reached on `device`
    (lmbench.run.peak.ceiling_for: a bf16 run by the bf16 ceiling; a figure above the device's
    theoretical peak is no ceiling)."""
    table = peaks if precision == "fp32" else peaks.get(precision) or {}
    best = [(e["gflops"], fw) for fw in (table if isinstance(table, dict) else {})
            if (e := ceiling_for(peaks, fw, precision, device))]
    return max(best) if best else (None, None)


def _same_machine(peaks: dict, record: dict) -> dict:
    """The peak entries measured on the record's machine kind (its machine key, or for older
    entries without one, its CPU model)."""
    key = record_machine_key(record)

    def mine(e):
        if not isinstance(e, dict):
            return False
        if e.get("machine_key"):
            return e["machine_key"] == key
        return e.get("cpu_model", record.get("cpu_model")) == record.get("cpu_model")
    out = {fw: e for fw, e in peaks.items() if fw not in PRECISIONS and mine(e)}
    for precision in PRECISIONS:
        if isinstance(peaks.get(precision), dict):
            out[precision] = {fw: e for fw, e in peaks[precision].items() if mine(e)}
    return out


def frame(records: list[dict], search=()) -> pd.DataFrame:
    """One row per successful run; fields a record lacks become NaN/None."""
    rows = []
    for r in records:
        if r.get("status") != "ok" or not r.get("metrics"):
            continue
        m, c, spec = r["metrics"], r["config"], RunSpec.from_record(r)
        # a backend that takes no per-step samples (JAX on CPU, TF on GPU) records None
        st = {k: np.nan if v is None else v for k, v in (m.get("step_time_ms") or {}).items()}
        # only GEMM rates measured on this record's machine kind (a peak.json found in a
        # directory above may belong to another machine)
        peaks = _same_machine(find_peaks(r, list(search)), r)
        framework = (r.get("environment") or {}).get("framework") or r["backend"]
        own = ceiling_for(peaks, framework, spec.precision, r.get("device")) or {}
        own_gflops = own.get("gflops")
        ceiling, ceiling_by = device_ceiling(peaks, r.get("device"), spec.precision)
        busy = m.get("busy") if isinstance(m.get("busy"), dict) else {}
        gflops = (m.get("achieved_flops_per_sec") or np.nan) / 1e9
        mem = m.get("peak_memory_bytes")
        # timed steps: all steps but the untimed warm-up
        steps = (m["steps"] - (m.get("warmup_steps") or 0) if m.get("steps")
                 else (r.get("run") or {}).get("steps"))
        timed = m.get("timed_tokens")
        tokens_per_step = timed / steps if steps and timed else np.nan
        rows.append({
            **comparison_keys(r), "machine": dict(where(r))["machine"], "suite": r.get("suite"),
            "ab_side": r.get("ab_side"), "compiled": bool((r.get("run") or {}).get("compile")),
            "precision": (r.get("run") or {}).get("precision") or "fp32",
            "backend": r["backend"], "layout": r["layout"], "preset": c["preset"], "mode": c["mode"],
            "batching": c["batching"] if c["mode"] == "sentence" else "-", "batch_size": c["batch_size"],
            "hidden": c.get("hidden"), "device": r.get("device") or "-",
            "workers": (r.get("run") or {}).get("workers") or 1,
            "epochs": spec.epochs, "steps": spec.steps, "lr": c.get("lr"),
            # a 2-epoch and a 13-epoch training are different cells, not repeats
            "length": f"{spec.epochs} epochs" if spec.epochs else f"{spec.steps} steps",
            "train_words_per_sec": m["train_words_per_sec"], "step_ms_median": st.get("median", np.nan),
            "step_ms_p10": st.get("p10", np.nan), "step_ms_p90": st.get("p90", np.nan),
            # the median step's time over the mean real tokens per timed step
            "us_per_token": 1e3 * st.get("median", np.nan) / tokens_per_step,
            "eval_words_per_sec": m.get("eval_words_per_sec", np.nan),
            "valid_ppl": m.get("valid_ppl", np.nan), "test_ppl": m.get("test_ppl", np.nan),
            "peak_memory_mib": mem / 2 ** 20 if mem else np.nan,
            "padding_fraction": m.get("padding_fraction", np.nan), "achieved_gflops": gflops,
            "own_gemm_gflops": own_gflops or np.nan, "ceiling_gflops": ceiling or np.nan,
            "ceiling_by": ceiling_by, "threads": spec.threads,
            "ceiling_threads": (peaks if spec.precision == "fp32" else peaks.get(spec.precision, {}))[ceiling_by]
            .get("threads") if ceiling_by else None,
            "busy": busy.get("busy"), "busy_why": busy.get("why"),
            "pct_of_ceiling": 100 * gflops / ceiling if ceiling else np.nan,
            "cold_shapes_ms": (m.get("cold_shapes") or {}).get("extra_ms_median", np.nan)
            if isinstance(m.get("cold_shapes"), dict) else np.nan,
            "epoch_log": m.get("epoch_log") or None, "target_ppl": m.get("target_ppl"),
            "time_to_target_seconds": m.get("time_to_target_seconds"),
            # the run variant and what it did (lmbench.report.variants)
            "variant": variant(r), "first_step_ms": m.get("first_step_ms", np.nan),
            "warmup_seconds": m.get("warmup_seconds", np.nan), "compile": m.get("compile"),
            "lstm_kernel": (r.get("environment") or {}).get("lstm_kernel"),
            "lstm_computes_padding": _computes_padding(r),
            # a --steps run's projection of a first epoch with every compile in it (lmbench.run.worker)
            "first_epoch_seconds": _number((m.get("first_epoch") or {}).get("seconds")),
            "first_epoch_wps": _number((m.get("first_epoch") or {}).get("words_per_sec")),
        })
    df = pd.DataFrame(rows)
    for col in ("valid_ppl", "test_ppl", "eval_words_per_sec"):  # None -> NaN for medians
        if col in df:
            df[col] = pd.to_numeric(df[col], errors="coerce")
    return df


def _number(x) -> float:
    return np.nan if x is None else x


def _computes_padding(r: dict) -> bool | None:
    """Whether the run's LSTM ran over padded positions: the record's own answer, else (records
    from before it was recorded) the backend's declaration for the layout and device."""
    known = (r.get("environment") or {}).get("lstm_computes_padding")
    if known is not None or r["backend"] not in available_backends():
        return known
    return computes_padding(r["backend"], r["layout"], r.get("device") or "cpu")


# what a cell shows of its identity (one value per identity: taken from its first run)
CELL = ["preset", "mode", "batching", "batch_size", "length", "backend", "layout", "variant", "workers",
        "device", "threads", "machine", "suite", "ab_side", "compiled", "precision"] + list(COMPARED_WITHIN)


def headline(df: pd.DataFrame) -> pd.DataFrame:
    """One row per run identity (lmbench.runspec.record_identity): medians over its repeats,
    the spread across them (min-max words/s, and every run's words/s for the noise test),
    and throughput relative to the fastest eager fp32 single-worker cell of the same preset,
    mode and machine."""
    agg = {c: (c, "first") for c in CELL + ["lstm_computes_padding"] if c != "identity"}
    agg.update({"runs": ("train_words_per_sec", "size"), "wps_min": ("train_words_per_sec", "min"),
                "wps_max": ("train_words_per_sec", "max"), "wps_runs": ("train_words_per_sec", list),
                "peak_memory_mib": ("peak_memory_mib", "max"),
                "busy_runs": ("busy", lambda x: sum(v is True for v in x))})
    for col in ("train_words_per_sec", "step_ms_p10", "step_ms_median", "step_ms_p90", "us_per_token",
                "eval_words_per_sec", "valid_ppl", "test_ppl", "padding_fraction", "achieved_gflops",
                "own_gemm_gflops", "ceiling_gflops", "pct_of_ceiling", "cold_shapes_ms", "first_epoch_seconds",
                "first_epoch_wps"):
        agg[col] = (col, "median")
    t = df.groupby("identity", sort=False, dropna=False).agg(**agg).reset_index()
    plain = (t.variant == EAGER) & (t.workers == 1)
    best = t[plain].groupby(["machine", "preset", "mode"])["train_words_per_sec"].max()
    t["vs_fastest"] = [w / best.get((m, p, mo), np.nan) if ok else np.nan
                       for w, m, p, mo, ok in zip(t.train_words_per_sec, t.machine, t.preset, t["mode"], plain)]
    known = set(available_backends())  # an old record's backend may not be here
    t["native"] = [b in known and native_layout(b) == lay for b, lay in zip(t.backend, t.layout)]
    t = t.sort_values(["preset", "mode", "train_words_per_sec"], ascending=[True, True, False])
    return t.reset_index(drop=True)


def _num(x, digits=0) -> str:
    return "–" if x is None or (isinstance(x, float) and not np.isfinite(x)) else f"{x:,.{digits}f}"


def _sig(x) -> str:
    """Three significant figures for rates whose size varies (GFLOP/s, µs/token)."""
    if x is None or not np.isfinite(x):
        return "–"
    return _num(x, max(0, 2 - int(np.floor(np.log10(abs(x))))) if x else 0)


# (header, value for sorting, text) per column; a column is shown only where some row has a value
HEADLINE = [
    ("Framework", lambda r: r.backend, lambda r: r.backend),
    ("Layout", lambda r: r.layout, lambda r: r.layout + (" (native)" if r.native else "")),
    ("Variant", lambda r: r.variant, lambda r: r.variant),
    ("Batching", lambda r: r.batching, lambda r: r.batching),
    ("Batch", lambda r: r.batch_size, lambda r: str(r.batch_size)),
    ("Workers", lambda r: r.workers, lambda r: str(r.workers)),
    ("Threads", lambda r: r.threads, lambda r: _num(r.threads)),
    ("Trained for", lambda r: r.length, lambda r: r.length),
    ("Machine", lambda r: r.machine, lambda r: r.machine),
    ("A/B side", lambda r: r.ab_side, lambda r: r.ab_side or "–"),
    ("Runs", lambda r: r.runs, lambda r: str(r.runs)),
    ("Train words/s [repeat min–max]", lambda r: r.train_words_per_sec,
     lambda r: _num(r.train_words_per_sec) + (f" [{_num(r.wps_min)}–{_num(r.wps_max)}]" if r.runs > 1 else "")),
    ("Step time ms p50 [p10–p90]", lambda r: r.step_ms_median,
     # a run without per-step samples (JAX, TensorFlow on GPU: step_time_source) has no spread either
     lambda r: f"{_num(r.step_ms_median, 1)} [{_num(r.step_ms_p10, 1)}–{_num(r.step_ms_p90, 1)}]"
     if r.step_ms_median == r.step_ms_median else "–"),
    ("µs per real token (p50 step ÷ mean tokens per step)", lambda r: r.us_per_token,
     lambda r: _sig(r.us_per_token)),
    ("Eval words/s", lambda r: r.eval_words_per_sec, lambda r: _num(r.eval_words_per_sec)),
    ("Valid ppl", lambda r: r.valid_ppl, lambda r: _num(r.valid_ppl, 2)),
    ("Peak memory MiB", lambda r: r.peak_memory_mib, lambda r: _num(r.peak_memory_mib)),
    ("Padding %", lambda r: r.padding_fraction, lambda r: _num(100 * r.padding_fraction, 1)),
    ("Utilisation % of device ceiling", lambda r: r.pct_of_ceiling, lambda r: _num(r.pct_of_ceiling, 1)),
    ("Runs on a busy machine", lambda r: r.busy_runs or None, lambda r: str(r.busy_runs)),
    ("× fastest", lambda r: r.vs_fastest, lambda r: "–" if _missing(r.vs_fastest) else f"{r.vs_fastest:.2f}×"),
]
DETAILS = [
    ("Framework", lambda r: r.backend, lambda r: r.backend),
    ("Layout", lambda r: r.layout, lambda r: r.layout),
    ("Batching", lambda r: r.batching, lambda r: r.batching),
    ("Batch", lambda r: r.batch_size, lambda r: str(r.batch_size)),
    ("Achieved GFLOP/s", lambda r: r.achieved_gflops, lambda r: _sig(r.achieved_gflops)),
    ("Own GEMM GFLOP/s", lambda r: r.own_gemm_gflops, lambda r: _sig(r.own_gemm_gflops)),
    ("Device ceiling GFLOP/s", lambda r: r.ceiling_gflops, lambda r: _sig(r.ceiling_gflops)),
    ("Test ppl", lambda r: r.test_ppl, lambda r: _num(r.test_ppl, 2)),
    ("Steady-state train words/s", lambda r: r.train_words_per_sec, lambda r: _num(r.train_words_per_sec)),
    ("First epoch words/s incl. every compile (projected)", lambda r: r.first_epoch_wps,
     lambda r: _num(r.first_epoch_wps)),
    ("First epoch s (projected)", lambda r: r.first_epoch_seconds, lambda r: _num(r.first_epoch_seconds)),
    ("First-step extra ms (cold shape, p50)", lambda r: r.cold_shapes_ms, lambda r: _num(r.cold_shapes_ms, 1)),
    ("LSTM runs over padding", lambda r: r.lstm_computes_padding,
     lambda r: "–" if _missing(r.lstm_computes_padding) else ("yes" if r.lstm_computes_padding else "no")
     + (" (GPU: from reading the kernels, not measured)" if r.device == "cuda" else "")),
]


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and not np.isfinite(v))


def cells(t: pd.DataFrame, columns) -> tuple[list[str], list[list[tuple[object, str]]]]:
    """(headers, rows of (sort value, text)); columns with no value anywhere (no eval run,
    no peak measured, one batch size) are left out so the table fits the page."""
    rows = list(t.itertuples())
    keep = []
    for header, key, text in columns:
        values = [key(r) for r in rows]
        if all(_missing(v) for v in values):
            continue
        if header in ("Batching", "Batch", "Workers", "Threads", "Trained for", "Variant", "Machine",
                      "A/B side") and len(set(values)) == 1:
            continue
        keep.append((header, key, text))
    return ([h for h, _, _ in keep],
            [[(None if _missing(key(r)) else key(r), text(r)) for _, key, text in keep] for r in rows])
