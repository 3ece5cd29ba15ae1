"""`lmbench report` from recorded fixtures; the HTML rendered by a real headless browser;
`lmbench peak` measured for real once (one torch process)."""
from __future__ import annotations

import base64
import contextlib
import io
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from records import record

from lmbench import env
from lmbench.cli import main as cli_main
from lmbench.runner import SCHEMA_VERSION

EPOCHS = [{"epoch": 1, "lr": 1.0, "train_ppl": 300.0, "valid_ppl": 180.0, "wall_seconds": 60.0},
          {"epoch": 2, "lr": 1.0, "train_ppl": 160.0, "valid_ppl": 130.5, "wall_seconds": 120.0}]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    records = [
        record("torch", "packed", "random", 1200, seed=1, padding=0.45),
        record("torch", "packed", "random", 1000, seed=2, padding=0.45),  # a repeat: median 1100
        record("torch", "padded", "random", 800, seed=3, padding=0.45),
        record("paddle", "lod", "bucketed", 2200, seed=4, padding=0.01),
        record("torch", "packed", "random", 1500, seed=5, batch_size=64),
        record("torch", "packed", mode="stream", words_per_sec=1600, seed=6, valid_ppl=130.5, test_ppl=125.25,
               padding=0.0, epoch_log=EPOCHS, time_to_target=90.0),
        record("tensorflow", "padded", status="failed", seed=7),
    ]
    future = record(seed=8)
    future["schema_version"] = SCHEMA_VERSION + 1
    results = tmp / "results.jsonl"
    results.write_text("".join(json.dumps(r) + "\n" for r in records) + json.dumps(future) + "\n{not json\n")
    # torch's GEMM peak on this (fixture) machine; paddle has none measured
    (tmp / "peak.json").write_text(json.dumps({"torch": {"gflops": 100.0, "device": "cpu"}}))
    return tmp, results


@pytest.fixture(scope="module")
def written(report):
    tmp, results = report
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert cli_main(["report", str(results), "--out", str(tmp / "out")]) == 0
    return tmp / "out", err.getvalue()


def table_rows(md: str, after: str) -> tuple[dict, list[list[str]]]:
    section = md.split(after, 1)[1]
    lines = [line for line in section.splitlines() if line.startswith("|")]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines]
    rows = [r for r in rows if not set("".join(r)) <= set("-:")]
    header, body = rows[0], rows[1:]
    end = next((i for i, r in enumerate(body) if len(r) != len(header)), len(body))
    return {name: i for i, name in enumerate(header)}, body[:end]


def test_headline_table_holds_the_right_numbers(written):
    out, _ = written
    md = (out / "report.md").read_text()
    col, rows = table_rows(md, "## Headline")
    # mode and batch size vary in these runs, the preset does not: only the varying keys are columns
    assert "mode" in col and "batch_size" in col and "preset" not in col
    assert len(rows) == 5

    def row(backend, layout, batching="random", mode="sentence", batch_size="20"):
        return next(r for r in rows if (r[col["backend"]], r[col["layout"]], r[col["batching"]], r[col["mode"]],
                                        r[col["batch_size"]]) == (backend, layout, batching, mode, batch_size))

    packed = row("torch", "packed")
    assert packed[col["train_words_per_sec"]] == "1100" and packed[col["runs"]] == "2"  # median of repeats
    assert row("paddle", "lod", "bucketed")[col["vs_fastest"]] == "1"
    assert row("torch", "padded")[col["vs_fastest"]] == "0.364"  # 800 / 2200
    assert row("torch", "packed", batch_size="64")[col["vs_fastest"]] == "0.682"  # 1500 / 2200
    stream = row("torch", "packed", "-", "stream")
    assert stream[col["vs_fastest"]] == "1"  # the fastest of its mode
    assert stream[col["valid_ppl"]] == "130.5" and stream[col["test_ppl"]] == "125.25"
    assert packed[col["padding_fraction"]] == "0.45" and packed[col["peak_memory_mib"]] == "600"
    # utilisation: 1100 words/s * 15.8 MFLOP = 17.38 GFLOP/s of torch's 100 GFLOP/s peak; paddle: none
    assert packed[col["achieved_gflops"]] == "17.38" and packed[col["pct_of_peak"]] == "17.4"
    assert row("paddle", "lod", "bucketed")[col["pct_of_peak"]] == "-"
    assert "pct_of_peak = achieved model FLOP/s" in md


def test_failed_runs_environment_and_published_perplexity(written):
    out, warnings = written
    md = (out / "report.md").read_text()
    assert "7 run(s): 6 ok, 1 failed." in md
    col, failed = table_rows(md, "## Failed runs")
    assert failed == [["tensorflow/padded small sentence/random B=20", "crash", "RuntimeError: boom"]]
    assert "machine h: Test CPU, 2 CPUs" in md and "torch: torch 1.0 on cpu" in md
    col, ppl = table_rows(md, "## Perplexity vs Zaremba et al. (2014)")
    # 2 epochs in 120 s; valid ppl fell below the target (125) at 90 s
    assert ppl == [["torch/packed small stream", "2", "130.5", "125.25", "120.7", "114.5", "2", "125", "1.5"]]
    # bad lines are skipped with a warning naming the file and line; good records are used
    assert f"results.jsonl:8: record has schema_version {SCHEMA_VERSION + 1}" in warnings
    assert "results.jsonl:9: skipped a corrupt or truncated record" in warnings


def test_plots_exist_and_are_pngs(written):
    out, _ = written
    for name in ("throughput", "padding", "batch_size", "ppl_vs_time"):
        data = (out / f"{name}.png").read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000, name


def test_html_is_self_contained(written):
    out, _ = written
    page = (out / "report.html").read_text()
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) == 4
    assert all(base64.b64decode(i)[:8] == b"\x89PNG\r\n\x1a\n" and len(base64.b64decode(i)) > 5000 for i in images)
    assert page.count("<table") == 3  # headline, published perplexity, failed runs
    assert not re.search(r'(src|href)="(?!data:)', page)  # nothing fetched from elsewhere


def test_bad_input_gets_a_clear_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert cli_main(["report", str(tmp_path / "empty"), "--out", str(tmp_path / "o")]) == 2
    assert "no .jsonl results in" in capsys.readouterr().err
    assert cli_main(["report", str(tmp_path / "nope.jsonl"), "--out", str(tmp_path / "o")]) == 2
    assert "nope.jsonl: no such file or directory" in capsys.readouterr().err


def test_only_failed_runs_still_give_a_report(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps(record(status="failed")) + "\n")
    assert cli_main(["report", str(path), "--out", str(tmp_path / "o")]) == 0
    md = (tmp_path / "o" / "report.md").read_text()
    assert "1 run(s): 0 ok, 1 failed." in md and "## Headline" not in md and "RuntimeError: boom" in md


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_html_renders_in_headless_chromium(written, tmp_path):
    out, _ = written
    url = (out / "report.html").as_uri()
    probe = tmp_path / "probe.html"
    # count what the browser actually parsed, decoded and laid out
    probe.write_text(f"""<!doctype html><body><iframe id=f src="{url}" width=1200 height=3000></iframe>
<script>document.getElementById('f').onload = () => {{
  const d = document.getElementById('f').contentDocument;
  const imgs = [...d.images];
  document.title = 'rows=' + d.querySelectorAll('table.headline tbody tr').length +
    ' images=' + imgs.length + ' decoded=' + imgs.filter(i => i.complete && i.naturalWidth > 100).length;
}};</script></body>""")
    common = [CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--allow-file-access-from-files"]
    dom = subprocess.run(common + ["--virtual-time-budget=5000", "--dump-dom", probe.as_uri()],
                         capture_output=True, text=True, timeout=180).stdout
    assert "rows=5 images=4 decoded=4" in dom, dom[:2000]
    shot = tmp_path / "shot.png"
    subprocess.run(common + ["--window-size=1200,2000", f"--screenshot={shot}", url], capture_output=True, timeout=180)
    data = shot.read_bytes()
    assert data[:4] == b"\x89PNG" and len(data) > 20_000  # a blank page compresses to a few KB


def test_peak_is_measured_and_used_by_the_report(tmp_path, capsys):
    """One real `lmbench peak` (torch, small GEMM), then a report that divides by it."""
    results = tmp_path / "results"
    assert cli_main(["peak", "--frameworks", "torch", "--size", "256", "--reps", "2",
                     "--results-dir", str(results)]) == 0
    assert "torch:" in capsys.readouterr().out
    peak_json = results / env.machine_key() / "peak.json"
    entry = json.loads(peak_json.read_text())["torch"]
    assert entry["gflops"] > 0 and entry["device"] == "cpu" and entry["size"] == 256
    # a run recorded on this machine, filed where `lmbench bench` files it
    run = record(cpu=env.cpu_model(), words_per_sec=1000)
    run["cpu_count"] = env.cpu_count()
    (results / env.machine_key() / "x.jsonl").write_text(json.dumps(run) + "\n")
    assert cli_main(["report", str(results), "--out", str(tmp_path / "o")]) == 0
    md = (tmp_path / "o" / "report.md").read_text()
    col, rows = table_rows(md, "## Headline")
    assert float(rows[0][col["pct_of_peak"]]) == pytest.approx(100 * 15.8 / entry["gflops"], abs=0.06)
    assert cli_main(["peak", "--frameworks", "jax"]) == 2
    assert "unknown framework(s) jax: allowed: torch, tensorflow, paddle" in capsys.readouterr().err


def test_no_peak_is_said(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps(record()) + "\n")
    assert cli_main(["report", str(path), "--out", str(tmp_path / "o")]) == 0
    assert "no GEMM peak was measured" in (tmp_path / "o" / "report.md").read_text()


def test_report_module_imports_no_framework():
    src = Path(__file__).resolve().parent.parent / "lmbench"
    for mod in ("report", "compare", "bench", "suite", "peak"):
        top = [line for line in (src / f"{mod}.py").read_text().splitlines() if line.startswith(("import", "from"))]
        assert not any(re.search(r"\b(torch|tensorflow|paddle)\b", line) for line in top), mod
