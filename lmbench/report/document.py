"""The report document: run records -> blocks (`build`) -> report.md and a self-contained
report.html (`write_report`); the package docstring (lmbench/report/__init__.py) says what
it holds and in which order."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .efficiency import section as efficiency_section
from .findings import findings as findings_of, verify_verdicts
from .plots import FORMAT, plots as plots_of
from .render import to_html, to_markdown
from .scaling import section as scaling_section
from .variants import variants_table
from .table import DETAILS, HEADLINE, PUBLISHED, cells, frame, headline
from ..files import write_atomic
from ..results import ResultsError, label, load_records


def environment(records: list[dict]) -> list[str]:
    """Machines, framework versions and the commits the runs came from, each said once."""
    machines, frameworks = {}, set()
    for r in records:
        e = r.get("environment") or {}
        commit = (r.get("git_commit") or "no git")[:10] + (" (uncommitted changes)" if r.get("git_dirty") else "")
        machine = (f"machine {r.get('hostname')}: {r.get('cpu_model')}, {r.get('cpu_count')} CPUs, "
                   f"{r.get('platform')}, Python {r.get('python_version')}")
        machines.setdefault(machine, set()).add(commit)
        dev = r.get("device") or "-"
        if e.get("device_name") and e["device_name"] != dev:
            dev += f" ({e['device_name']}, CUDA {e.get('cuda_version')}, cuDNN {e.get('cudnn_version')})"
        if e:
            frameworks.add(f"{r['backend']}/{r['layout']}: {e.get('framework')} {e.get('framework_version')} on {dev}"
                           + (f"; LSTM kernel: {e['lstm_kernel']}" if e.get("lstm_kernel") else ""))
    lines = [f"{m}; commit{'s' * (len(c) > 1)} {', '.join(sorted(c))}" for m, c in sorted(machines.items())]
    return lines + sorted(frameworks)


def _published(df: pd.DataFrame) -> list:
    trained = df[df.epoch_log.notna() & df.preset.isin(PUBLISHED)]
    if trained.empty:
        return []

    def num(x, d=2):
        return (None, "–") if x is None or not np.isfinite(x) else (float(x), f"{x:,.{d}f}")

    rows = []
    for r in trained.itertuples():
        # the paper's figures are stream mode: a sentence-mode run has no published twin
        pub = PUBLISHED[r.preset] if r.mode == "stream" else None
        to_target = r.time_to_target_seconds
        rows.append([(r.backend, f"{r.backend}/{r.layout} {r.preset} {r.mode}"), num(len(r.epoch_log), 0),
                     num(r.valid_ppl), num(r.test_ppl),
                     (pub[1] if pub else None, f"{pub[0]} / {pub[1]}" if pub else "–"),
                     num(r.epoch_log[-1]["wall_seconds"] / 60, 1), num(r.target_ppl, 0),
                     num(to_target / 60 if to_target is not None else None, 1)])
    headers = ["Run", "Epochs", "Valid ppl", "Test ppl", "Published valid / test", "Wall minutes",
               "Target ppl", "Minutes to target"]
    return [("h2", "Perplexity vs Zaremba et al. (2014)"), ("table", headers, rows, "sortable"),
            ("p", "Published: Zaremba et al. 2014 after the preset's full schedule (small: 13 epochs), stream "
                  "mode. Minutes to target: wall time until validation perplexity first fell below the "
                  "target (– = never).")]


def _utilisation_note(df: pd.DataFrame) -> str:
    measured = df[df["ceiling_gflops"].notna()]
    if measured.empty:
        return ("No GEMM peak was measured for these runs' machine: run `lmbench peak` to see utilisation "
                "(% of the device ceiling).")
    ceilings = sorted({(d, c, by, th) for d, c, by, th in zip(measured.device, measured.ceiling_gflops,
                                                              measured.ceiling_by, measured.ceiling_threads)})
    text = "; ".join(f"{d}: {c:,.1f} GFLOP/s ({by}" + (f", {th:.0f} threads)" if th == th and th else ")")
                     for d, c, by, th in ceilings)
    note = ("Utilisation % of device ceiling = achieved model FLOP/s ÷ the best float32 GEMM rate any "
            f"framework reached on that device in `lmbench peak` ({text}). Each framework's own GEMM rate "
            "is the separate column Own GEMM GFLOP/s in the details.")
    other = measured[measured.threads.notna() & measured.ceiling_threads.notna()
                     & (measured.threads != measured.ceiling_threads)]
    if not other.empty:  # a 1-thread run against a 2-thread GEMM is not a like-for-like ratio
        note += (f" {len(other)} run(s) used {', '.join(sorted({f'{t:.0f}' for t in other.threads}))} thread(s), "
                 "not the GEMM's: run `lmbench peak --threads N` with the runs' thread count.")
    return note


def _history(paths: list[Path], out_dir: Path) -> list:
    """The history over commits (lmbench.regress.history) for a results directory given to the report."""
    try:
        from ..regress.history import history_section
    except ImportError:  # history is optional: a report without it is still a report
        return []
    blocks = []
    for d in [p for p in paths if p.is_dir()]:
        try:
            section = history_section(d, out_dir)
        except (ResultsError, OSError, ValueError) as e:
            blocks.append(("p", f"History over commits unavailable for {d}: {e}"))
            continue
        if section:
            text, pngs = section
            text = text.split("\n", 1)[1] if text.startswith("## ") else text  # the summary is the heading
            blocks.append(("details", f"History over commits ({d})",
                           [("markdown", text, {p.name: p.read_bytes() for p in pngs})]))
    return blocks


def _not_ok(records: list[dict]) -> list:
    bad = [r for r in records if r.get("status") != "ok"]
    if not bad:
        return []
    rows = []
    for r in bad:
        why = r.get("error") or r.get("reason") or r.get("skip_reason") or ""
        first = why.strip().splitlines()[0] if why.strip() else ""
        rows.append([(label(r), label(r)), (r.get("error_kind"), r.get("error_kind") or "–"),
                     (r.get("status"), r.get("status") or "?"), (first, first)])
    return [("h2", "Failed and skipped runs"), ("table", ["Run", "Kind", "Status", "Reason"], rows, "sortable failed")]


def build(records: list[dict], paths: list[Path], out_dir: Path) -> tuple[list, dict[str, bytes]]:
    """The report's blocks and the plot files to write beside report.md."""
    df = frame(records, paths)
    t = headline(df) if not df.empty else None
    statuses = pd.Series([r.get("status") or "?" for r in records], dtype=object).value_counts()
    counts = ", ".join([f"{statuses.get('ok', 0)} ok", f"{statuses.get('failed', 0)} failed"]
                       + [f"{n} {s}" for s, n in sorted(statuses.items()) if s not in ("ok", "failed")])
    blocks = [("h2", "Findings"),
              ("ul", findings_of(df, t, records, verify_verdicts(paths), label), "findings"),
              ("p", f"{len(records)} run(s): {counts}. Generated from the records; words/s count real target "
                    f"tokens only (never padding).")]
    files = {}
    if t is not None:
        blocks.append(("h2", "Headline"))
        for (preset, mode), g in t.groupby(["preset", "mode"], sort=True):
            headers, rows = cells(g, HEADLINE)
            blocks += [("h3", f"{preset} preset, {mode} mode"), ("table", headers, rows, "sortable headline")]
        blocks.append(("p", "Medians over repeats; [min–max] is the spread of the runs' words/s across repeats. "
                            "Step time: per-step p50 [p10–p90] within runs (with bucketing it mostly reflects "
                            "bucket sizes); µs per real token: the median step's time per real token it "
                            "carried. × fastest: train words/s ÷ the fastest cell of the same preset and mode. "
                            "Peak memory: device memory on GPU, process peak RSS on CPU. Click a header to sort."))
        blocks.append(("p", _utilisation_note(df)))
        headers, rows = cells(t, [("Preset", lambda r: r.preset, lambda r: r.preset),
                                  ("Mode", lambda r: r.mode, lambda r: r.mode)] + DETAILS)
        blocks.append(("details", "Details: FLOP/s, GEMM rates, test perplexity, first epoch, cold-shape cost",
                       [("table", headers, rows, "sortable details"),
                        ("p", "First epoch (projected, not measured): the time one epoch of training would "
                              "take with every first-time cost in it -- the epoch's real tokens at the "
                              "steady-state words/s, plus the median cold-shape extra for each other step "
                              "that meets a new batch shape (a compile per shape, for JAX and TensorFlow "
                              "--compile), plus the first step. Steady-state words/s answers how fast once "
                              "warm; the first-epoch figure, how long a short training takes. LSTM runs "
                              "over padding: whether the layout's LSTM computes padded positions on that "
                              "device (declared per backend; the GPU entries are read from the kernels, "
                              "not measured).")]))
        blocks += variants_table(df, records)
        blocks += _published(df)
        made = plots_of(df, t)
        if made:
            blocks.append(("h2", "Plots"))
            for name, (caption, image) in made.items():
                blocks.append(("figure", name, caption, image))
                files[f"{name}.{FORMAT}"] = image
    elif any(r.get("status") == "skipped" for r in records):  # only skipped variants: still say why
        blocks += variants_table(df, records)
    scaling_blocks, scaling_files = scaling_section(records)
    blocks += scaling_blocks
    files.update(scaling_files)
    blocks += efficiency_section(records)
    blocks += _history(paths, out_dir)
    blocks += [("h2", "Environment"), ("ul", environment(records))]
    blocks += _not_ok(records)
    return blocks, files


def select(paths: list[Path], everything: bool = False, suite: str | None = None,
           commit: str | None = None) -> list[Path]:
    """What a report reads. Given files or directories: those (with --suite/--commit: the
    records of that suite / commit in them). Given nothing: the most recent suite run under
    results/ (one results file, the newest by its time stamp; not a single `lmbench run`'s
    run-*.jsonl), never the whole tree, where other machines, A/B runs and old commits lie;
    --all, --suite or --commit select more."""
    if paths:
        return paths
    root = Path("results")
    if everything or suite or commit:
        return [root]
    files = sorted(root.glob("*/*.jsonl"), key=lambda f: (f.stat().st_mtime, f.name))
    files = [f for f in files if f.parent.name not in ("baselines", "ab", "training", "variants", "check")
             and not f.name.startswith("run-")]  # `lmbench run`'s own records are no suite run
    if not files:
        raise ResultsError("no suite results under results/<machine>/: run `lmbench bench` first, or give "
                           "files or directories (`lmbench report results/` or --all for everything)")
    return [files[-1]]


def _filter(records: list[dict], suite: str | None, commit: str | None) -> list[dict]:
    if suite:
        records = [r for r in records if Path(str(r.get("suite") or "")).stem == Path(suite).stem]
    if commit:
        records = [r for r in records if str(r.get("git_commit") or "").startswith(commit)]
    if not records:
        raise ResultsError(f"no record of {'suite ' + suite if suite else ''}{' and ' if suite and commit else ''}"
                           f"{'commit ' + commit if commit else ''} in these results")
    return records


def write_report(paths, out_dir="results/report", warn=print, suite: str | None = None,
                 commit: str | None = None) -> list[Path]:
    """Read records (bad lines skipped with a warning) and write report.md + report.html."""
    paths = [Path(p) for p in paths]
    records = load_records(paths, warn=warn)
    if suite or commit:
        records = _filter(records, suite, commit)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    blocks, files = build(records, paths, out_dir)
    # each file whole or as it was (a full disk mid-report leaves no 0-byte page or plot)
    for name, data in files.items():
        write_atomic(out_dir / name, data)
    write_atomic(out_dir / "report.md", "# lmbench report\n\n" + to_markdown(blocks))
    write_atomic(out_dir / "report.html", to_html([("h1", "lmbench report")] + blocks, "lmbench report"))
    return [out_dir / "report.md", out_dir / "report.html"]
