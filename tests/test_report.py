"""`lmbench report` from recorded fixtures; the HTML rendered by a real headless browser."""
from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess

import pytest
from records import record

from lmbench.cli import main as cli_main


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    records = [
        record("torch", "packed", "random", 1200, seed=1, padding=0.45),
        record("torch", "packed", "random", 1000, seed=2, padding=0.45),  # a repeat: median 1100
        record("torch", "padded", "random", 800, seed=3, padding=0.45),
        record("paddle", "lod", "bucketed", 2200, seed=4, padding=0.01),
        record("torch", "packed", "random", 1500, seed=5, batch_size=64),
        record("torch", "packed", mode="stream", words_per_sec=1600, seed=6, valid_ppl=130.5, padding=0.0,
               epoch_log=[{"epoch": 1, "lr": 1.0, "train_ppl": 300.0, "valid_ppl": 180.0, "wall_seconds": 60.0},
                          {"epoch": 2, "lr": 1.0, "train_ppl": 160.0, "valid_ppl": 130.5, "wall_seconds": 120.0}]),
        record("tensorflow", "padded", status="failed", seed=7),
    ]
    results = tmp / "results.jsonl"
    results.write_text("".join(json.dumps(r) + "\n" for r in records) + "{not json\n")
    (tmp / "peak.json").write_text(json.dumps({"torch": {"gflops": 100.0}}))
    assert cli_main(["report", str(results), "--out", str(tmp / "out")]) == 0
    return tmp / "out"


def test_headline_table_holds_the_right_numbers(report):
    md = (report / "report.md").read_text()
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in md.splitlines()
            if line.startswith("| ")]
    header = rows[0]
    col = {name: header.index(name) for name in header}

    def row(backend, layout, batching="random", batch_size="20"):
        return next(r for r in rows if (r[0], r[1], r[col["batching"]], r[col["batch_size"]])
                    == (backend, layout, batching, batch_size))

    packed = row("torch", "packed")
    assert packed[col["train_words_per_sec"]] == "1100"  # median of the two repeats
    assert packed[col["runs"]] == "2"
    assert row("paddle", "lod", "bucketed")[col["vs_fastest"]] == "1"
    assert row("torch", "padded")[col["vs_fastest"]] == "0.364"  # 800 / 2200
    # utilisation: 1100 words/s * 15.8 MFLOP = 17.38 GFLOP/s of a 100 GFLOP/s peak
    assert packed[col["pct_of_peak"]] == "17.4"
    assert "tensorflow/padded" in md and "RuntimeError: boom" in md  # failed runs listed
    assert "Zaremba" in md and "114.5" in md  # trained stream run vs the published numbers


def test_plots_exist_and_are_pngs(report):
    for name in ("throughput", "padding", "batch_size", "ppl_vs_time"):
        data = (report / f"{name}.png").read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000, name


def test_html_is_self_contained(report):
    page = (report / "report.html").read_text()
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) == 4
    assert all(base64.b64decode(i)[:4] == b"\x89PNG" for i in images)
    assert "<table" in page and "http" not in page.replace("http-equiv", "")


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_html_renders_in_headless_chromium(report, tmp_path):
    url = (report / "report.html").as_uri()
    js_probe = tmp_path / "probe.html"
    # count what the browser actually decoded and laid out
    js_probe.write_text(f"""<!doctype html><body><iframe id=f src="{url}" width=1200 height=3000></iframe>
<script>document.getElementById('f').onload = () => {{
  const d = document.getElementById('f').contentDocument;
  const imgs = [...d.images];
  document.title = 'rows=' + d.querySelectorAll('table.headline tbody tr').length +
    ' images=' + imgs.length + ' decoded=' + imgs.filter(i => i.complete && i.naturalWidth > 100).length;
}};</script></body>""")
    common = [CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--allow-file-access-from-files"]
    dom = subprocess.run(common + ["--virtual-time-budget=5000", "--dump-dom", js_probe.as_uri()],
                         capture_output=True, text=True, timeout=180).stdout
    assert "rows=5 images=4 decoded=4" in dom, dom[:2000]
    shot = tmp_path / "shot.png"
    subprocess.run(common + ["--window-size=1200,2000", f"--screenshot={shot}", url],
                   capture_output=True, timeout=180)
    assert shot.read_bytes()[:4] == b"\x89PNG" and shot.stat().st_size > 20_000
