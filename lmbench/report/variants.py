"""The report's variants table: per framework and layout, eager fp32 against each variant
(--compile, --precision) run on the same cell -- speedup, the first step (where tracing and
compiling happen) apart from the steady step time, recompiles, the LSTM kernel that ran,
and the variants a framework declined, with their reason."""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..backend import available_backends, compile_scope
from .table import comparison_keys
from ..results import variant
from ..runspec import EAGER, RunSpec

# a variant is compared with the eager fp32 run of its own identity (lmbench.runspec), the
# variant aside: variant_base is that identity's text, the rest what the table shows of it
BASE = ["preset", "mode", "batching", "batch_size", "length", "backend", "layout", "variant_base"]


def _num(x, digits=0) -> str:
    return "–" if x is None or (isinstance(x, float) and not np.isfinite(x)) else f"{x:,.{digits}f}"


def _skipped(records: list[dict]) -> pd.DataFrame:
    out = []
    for r in records:
        if r.get("status") != "skipped":
            continue
        c, spec = r["config"], RunSpec.from_record(r)
        length = f"{spec.epochs} epochs" if spec.epochs else f"{spec.steps} steps"
        out.append({"variant_base": comparison_keys(r)["variant_base"], "preset": c["preset"], "mode": c["mode"],
                    "batching": c["batching"] if c["mode"] == "sentence" else "-",
                    "batch_size": c["batch_size"], "length": length, "backend": r["backend"],
                    "layout": r["layout"], "variant": variant(r), "reason": r.get("reason") or ""})
    return pd.DataFrame(out, columns=BASE + ["variant", "reason"])


def _compiled(reports) -> str:
    """'graphs 4, graph breaks 0' from the runs' compile reports (the first run's: repeats agree)."""
    c = next((x for x in reports if isinstance(x, dict)), None)
    if not c:
        return "–"
    parts = [f"{k.replace('_', ' ')} {c[k]}" for k in ("graphs", "graph_breaks") if c.get(k) is not None]
    parts += [str(c["backend"])] if c.get("backend") else []
    return ", ".join(parts) or c.get("compiler", "–")


def _recompiles(reports) -> str:
    values = [x.get("recompiles") for x in reports if isinstance(x, dict) and x.get("recompiles") is not None]
    return _num(float(np.median(values))) if values else "–"


def _keys(frame: pd.DataFrame) -> set:
    return {tuple(k) for k in frame[BASE].itertuples(index=False)}


def _of(frame: pd.DataFrame, key: tuple) -> pd.DataFrame:
    return frame[[tuple(k) == key for k in frame[BASE].itertuples(index=False)]]


def variants_table(df: pd.DataFrame, records: list[dict]) -> list:
    """Report blocks (empty when no run used a variant)."""
    skipped = _skipped(records)
    ran = pd.DataFrame(columns=BASE + ["variant"])
    if not df.empty and "variant" in df:
        ran = df.groupby(BASE + ["variant"], sort=False, dropna=False).agg(
            runs=("train_words_per_sec", "size"), wps=("train_words_per_sec", "median"),
            step=("step_ms_median", "median"), first=("first_step_ms", "median"),
            warmup=("warmup_seconds", "median"), cold=("cold_shapes_ms", "median"),
            compile=("compile", list), kernel=("lstm_kernel", "first")).reset_index()
    groups = _keys(ran[ran.variant != EAGER]) | _keys(skipped)
    if not groups:
        return []
    rows = []
    for key in sorted(groups, key=lambda k: tuple(map(str, k))):
        mine, where = _of(ran, key), f"{key[5]}/{key[6]}"
        eager = mine[mine.variant == EAGER]
        base_wps = float(eager.wps.iloc[0]) if not eager.empty else np.nan
        for r in mine.sort_values("variant", key=lambda s: s != EAGER, kind="stable").itertuples():
            speed = r.wps / base_wps if np.isfinite(base_wps) else np.nan
            rows.append([(where, where), (r.variant, r.variant), (r.runs, str(r.runs)), (r.wps, _num(r.wps)),
                         (speed, "1.00× (baseline)" if r.variant == EAGER else
                          ("–" if not np.isfinite(speed) else f"{speed:.2f}×")),
                         (r.first, _num(r.first)), (r.warmup, _num(r.warmup, 1)), (r.step, _num(r.step, 1)),
                         (r.cold, _num(r.cold, 1)), (None, _recompiles(r.compile)), (None, _compiled(r.compile)),
                         (r.kernel, r.kernel or "–"), ("ok", "ok")])
        for r in _of(skipped, key).itertuples():
            rows.append([(where, where), (r.variant, r.variant), (0, "0")] + [(None, "–")] * 9
                        + [("skipped", f"skipped: {r.reason}")])
    headers = ["Run", "Variant", "Runs", "Train words/s", "Speedup vs eager fp32", "First step ms",
               "Warm-up s", "Steady step ms p50", "Cold-shape extra ms p50", "Recompiles",
               "Compiled graphs", "LSTM kernel", "Status"]
    hardware = {r.get("cpu_model"): r.get("bf16_hardware") for r in records if "bf16_hardware" in r}
    hw = "; ".join(f"{cpu}: {'has' if has else 'no'} bfloat16 hardware (avx512_bf16/amx_bf16)"
                   for cpu, has in sorted(hardware.items(), key=lambda kv: str(kv[0])))
    scopes = "; ".join(f"{b}: {compile_scope(b)}" for b in available_backends() if compile_scope(b))
    note = ("Each variant against the eager float32 run of the same cell (same preset, batching, batch and "
            "length). First step: the untimed first step, where tracing and compiling happen; warm-up: all "
            "untimed warm-up steps; cold-shape extra: what a new batch shape costs the first time (a "
            "recompile, for a compiled step); steady step: the timed steps' median. Recompiles and graphs as "
            "the framework's compiler counted them. A compile variant names what was compiled, which differs by "
            f"framework ({scopes}): compare such speedups knowing the scope. Speedups compare runs in separate "
            "processes: on a shared machine they are only as steady as the machine was (each record says how "
            "busy it was). "
            + (f"CPU: {hw}; bf16 speed claims hold only where the CPU has it." if hw else ""))
    return [("h2", "Variants: compiled and reduced precision"), ("table", headers, rows, "sortable variants"),
            ("p", note)]
