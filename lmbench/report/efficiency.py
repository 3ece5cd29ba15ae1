"""Harness efficiency: where a suite's wall time went, from its records.

Every record holds what its worker timed (metrics: train_seconds, warmup_seconds,
cold_shapes.seconds, eval_seconds, eval_cold_shapes.seconds, wall_seconds: the worker's
time from a built model to its result) and, written by `lmbench bench`, the bench's own
clock around the run (bench.run_seconds: child processes started to record back) and
around the GEMM peak measured before the first run (bench.peak_seconds, on that run's
record). What the run's clock holds beyond the worker's wall_seconds is process start,
framework import, data load and model build; what wall_seconds holds beyond the parts
named is the rest of a run (the all-reduce A/B, batching, reading the peak memory).
"""
from __future__ import annotations

from collections import defaultdict

# (key, what a reader is told it is), in the order printed
PARTS = [
    ("timed", "timed training steps"),
    ("warmup", "warm-up steps and cold-shape warm-up (untimed, necessary)"),
    ("eval", "evaluation (timed pass and its shape warm-up)"),
    ("start", "process start, imports, data load, model build"),
    ("other", "the rest of a run (all-reduce A/B, batching, bookkeeping)"),
    ("peak", "GEMM peak measurement"),
]


def _run_parts(r: dict) -> dict[str, float] | None:
    bench = r.get("bench") or {}
    m = r.get("metrics") or {}
    run = bench.get("run_seconds")
    if run is None:
        return None  # written before the bench timed its runs, or not by the bench
    parts = dict.fromkeys([key for key, _ in PARTS[:-1]], 0.0)
    parts["peak"] = bench.get("peak_seconds") or 0.0
    if r.get("status") != "ok" or not m:  # a failed or skipped run: all of it was overhead
        parts["start"] = run
        return parts
    parts["timed"] = m.get("train_seconds") or 0.0
    parts["warmup"] = (m.get("warmup_seconds") or 0.0) + ((m.get("cold_shapes") or {}).get("seconds") or 0.0)
    parts["eval"] = (m.get("eval_seconds") or 0.0) + ((m.get("eval_cold_shapes") or {}).get("seconds") or 0.0)
    wall = m.get("wall_seconds") or 0.0
    parts["start"] = max(0.0, run - wall)
    parts["other"] = max(0.0, wall - parts["timed"] - parts["warmup"] - parts["eval"])
    return parts


def breakdown(records: list[dict]) -> dict[str, dict]:
    """Per suite: {"parts": {key: seconds}, "total": seconds, "runs": n} over the records the
    bench timed; suites none of whose records it timed are left out."""
    out: dict[str, dict] = defaultdict(lambda: {"parts": dict.fromkeys(k for k, _ in PARTS), "total": 0.0,
                                                "runs": 0})
    for r in records:
        parts = _run_parts(r)
        if parts is None:
            continue
        s = out[str(r.get("suite") or "-")]
        for key, seconds in parts.items():
            s["parts"][key] = (s["parts"][key] or 0.0) + seconds
        s["total"] += sum(parts.values())
        s["runs"] += 1
    return dict(out)


def lines(b: dict, suite_seconds: float | None = None) -> list[str]:
    """What `lmbench bench` prints: one line per part, seconds and share of the suite."""
    total = suite_seconds or b["total"]
    out = [f"harness efficiency ({b['runs']} run(s), {total:,.0f} s"
           + (" of the suite's wall clock" if suite_seconds else "") + "):"]
    for key, what in PARTS:
        seconds = b["parts"][key] or 0.0
        out.append(f"  {100 * seconds / total:5.1f}%  {seconds:8,.1f} s  {what}" if total else f"  {what}: -")
    if suite_seconds:
        rest = suite_seconds - b["total"]
        out.append(f"  {100 * rest / total:5.1f}%  {rest:8,.1f} s  the bench itself (planning, records, between runs)")
    useful = (b["parts"]["timed"] or 0.0) + (b["parts"]["warmup"] or 0.0)
    if total:
        out.append(f"  {100 * useful / total:.0f}% inside timed or necessary warm-up work")
    return out


def section(records: list[dict]) -> list:
    """The report's harness-efficiency blocks (none when no record carries the bench's clock)."""
    suites = breakdown(records)
    if not suites:
        return []
    headers = ["Suite", "Runs"] + [what[0].upper() + what[1:] for _, what in PARTS] + ["Timed + warm-up"]
    rows = []
    for suite, b in sorted(suites.items()):
        total = b["total"]
        pct = [(b["parts"][k] or 0.0) / total if total else None for k, _ in PARTS]
        useful = ((b["parts"]["timed"] or 0.0) + (b["parts"]["warmup"] or 0.0)) / total if total else None
        rows.append([(suite, suite), (b["runs"], str(b["runs"]))]
                    + [(p, "–" if p is None else f"{100 * p:.0f}% ({b['parts'][k] or 0:,.0f} s)")
                       for p, (k, _) in zip(pct, PARTS)]
                    + [(useful, "–" if useful is None else f"{100 * useful:.0f}%")])
    note = ("Where each suite's time went, as shares of its runs' wall clock (the bench's clock around each "
            "child process, plus the GEMM peak it measured first): timed steps; untimed warm-up (the first "
            "steps and the shape warm-up that keeps first-time costs out of the timed window); evaluation; "
            "starting the process (interpreter, framework import, data, model). Records written before the "
            "bench kept its clock are not counted.")
    return [("h2", "Harness efficiency"), ("table", headers, rows, "sortable efficiency"), ("p", note)]
