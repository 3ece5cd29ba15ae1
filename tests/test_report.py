"""`lmbench report` from recorded fixtures; the HTML rendered by a real headless browser;
`lmbench peak` measured for real once (one torch process)."""
from __future__ import annotations

import base64
import contextlib
import io
import itertools
import json
import os
import re
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from records import record

import html

import numpy as np

from lmbench import env

from lmbench.report import plots as report_plots
from lmbench.cli import main as cli_main
from lmbench.report.document import build
from lmbench.report.findings import padding_cost
from lmbench.report.render import to_markdown
from lmbench.report.table import device_ceiling, frame, headline
from lmbench.results import load_records
from lmbench.run.runner import SCHEMA_VERSION

EPOCHS = [{"epoch": 1, "lr": 1.0, "train_ppl": 300.0, "valid_ppl": 180.0, "wall_seconds": 60.0},
          {"epoch": 2, "lr": 1.0, "train_ppl": 160.0, "valid_ppl": 130.5, "wall_seconds": 120.0}]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    records = [
        record("torch", "packed", "random", 1200, seed=1, padding=0.45),
        record("torch", "packed", "random", 1000, seed=2, padding=0.45),  # a repeat: median 1100
        record("torch", "padded", "random", 800, seed=3, padding=0.45, spread=0.0),
        record("paddle", "lod", "bucketed", 2200, seed=4, padding=0.01),
        record("torch", "packed", "random", 1500, seed=5, batch_size=64),
        record("torch", "packed", mode="stream", words_per_sec=1600, seed=6, valid_ppl=130.5, test_ppl=125.25,
               padding=0.0, epoch_log=EPOCHS, time_to_target=90.0),
        record("paddle", "lod", mode="stream", words_per_sec=1200, seed=9, valid_ppl=132.0, padding=0.0),
        record("tensorflow", "padded", status="failed", seed=7),
    ]
    # a long unbroken reason must wrap, not push the page sideways
    records[-1]["error"] = "RuntimeError: boom in " + "0123456789" * 60 + "\nTraceback ..."
    future = record(seed=8)
    future["schema_version"] = SCHEMA_VERSION + 1
    results = tmp / "results.jsonl"
    results.write_text("".join(json.dumps(r) + "\n" for r in records) + json.dumps(future) + "\n{not json\n")
    # GEMM rates on this (fixture) machine: the cpu ceiling is paddle's 160, not torch's own 100;
    # a GPU entry must not count for cpu runs
    (tmp / "peak.json").write_text(json.dumps({"torch": {"gflops": 100.0, "device": "cpu"},
                                               "paddle": {"gflops": 160.0, "device": "cpu"},
                                               "tensorflow": {"gflops": 900.0, "device": "cuda"}}))
    return tmp, results


@pytest.fixture(scope="module")
def written(report):
    tmp, results = report
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert cli_main(["report", str(results), "--out", str(tmp / "out")]) == 0
    return tmp / "out", err.getvalue()


def table_rows(md: str, after: str) -> tuple[dict, list[list[str]]]:
    section = md.split(after, 1)[1].splitlines()
    start = next(i for i, line in enumerate(section) if line.startswith("|"))
    # the first table after the heading: its lines run until the first line that is not one
    lines = list(itertools.takewhile(lambda line: line.startswith("|"), section[start:]))
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines]
    rows = [r for r in rows if not set("".join(r)) <= set("-:")]
    header, body = rows[0], rows[1:]
    end = next((i for i, r in enumerate(body) if len(r) != len(header)), len(body))
    return {name: i for i, name in enumerate(header)}, body[:end]


def test_headline_table_holds_the_right_numbers(written):
    out, _ = written
    md = (out / "report.md").read_text()
    col, rows = table_rows(md, "### small preset, sentence mode")
    assert list(col)[:4] == ["Framework", "Layout", "Batching", "Batch"] and len(rows) == 4

    def row(backend, layout, batching="random", batch_size="20"):
        return next(r for r in rows if (r[col["Framework"]], r[col["Layout"]].split()[0], r[col["Batching"]],
                                        r[col["Batch"]]) == (backend, layout, batching, batch_size))

    packed = row("torch", "packed")
    # median of two repeats, their spread, formatted with thousands separators
    assert packed[col["Train words/s [repeat min–max]"]] == "1,100 [1,000–1,200]" and packed[col["Runs"]] == "2"
    assert packed[col["Layout"]] == "packed (native)" and row("torch", "padded")[col["Layout"]] == "padded"
    assert row("paddle", "lod", "bucketed")[col["× fastest"]] == "1.00×"
    assert row("torch", "padded")[col["× fastest"]] == "0.36×"  # 800 / 2200
    assert row("torch", "packed", batch_size="64")[col["× fastest"]] == "0.68×"  # 1500 / 2200
    assert packed[col["Padding %"]] == "45.0" and packed[col["Peak memory MiB"]] == "600"
    assert packed[col["Eval words/s"]] == "3,300"
    # 100 ms steps carrying 900/40 = 22.5 real tokens each: 4,444 µs per token
    assert row("torch", "padded")[col["µs per real token (p50 step ÷ mean tokens per step)"]] == "4,444"
    # no run evaluated on valid in sentence mode: no perplexity column in this table
    assert "Valid ppl" not in col
    col, stream = table_rows(md, "### small preset, stream mode")
    assert [r[col["Framework"]] for r in stream] == ["torch", "paddle"]
    assert stream[0][col["× fastest"]] == "1.00×" and stream[0][col["Valid ppl"]] == "130.50"
    assert "Batching" not in col  # stream mode has none


def test_utilisation_is_against_one_ceiling_per_device(written):
    """Ceiling = the best GEMM of any framework on the device (paddle's 160 GFLOP/s on cpu;
    tensorflow's cuda entry does not count); each framework's own rate is a separate column."""
    out, _ = written
    md = (out / "report.md").read_text()
    col, rows = table_rows(md, "### small preset, sentence mode")
    util = {(r[col["Framework"]], r[col["Layout"]].split()[0], r[col["Batching"]], r[col["Batch"]]):
            r[col["Utilisation % of device ceiling"]] for r in rows}
    assert util[("torch", "packed", "random", "20")] == "10.9"  # 1100 words/s x 15.8 MFLOP = 17.38 of 160
    assert util[("paddle", "lod", "bucketed", "20")] == "21.7"  # 34.76 of 160
    assert util[("torch", "padded", "random", "20")] == "7.9"  # 12.64 of 160
    col, details = table_rows(md, "**Details")
    own = {(r[col["Framework"]], r[col["Layout"]], r[col["Batching"]], r[col["Batch"]]): r for r in details}
    torch = own[("torch", "packed", "random", "20")]
    assert (torch[col["Achieved GFLOP/s"]], torch[col["Own GEMM GFLOP/s"]], torch[col["Device ceiling GFLOP/s"]]) \
        == ("17.4", "100", "160")
    assert own[("paddle", "lod", "bucketed", "20")][col["Own GEMM GFLOP/s"]] == "160"
    assert "cpu: 160.0 GFLOP/s (paddle)" in md and "thread(s), not the GEMM's" not in md


def test_device_ceiling_is_the_best_gemm_on_that_device():
    peaks = {"torch": {"gflops": 80.0, "device": "cpu"}, "paddle": {"gflops": 120.0, "device": "cpu"},
             "tensorflow": {"gflops": 95.0, "device": "cpu"}, "gpu": {"gflops": 9000.0, "device": "cuda"},
             "broken": "not an entry"}
    assert device_ceiling(peaks, "cpu") == (120.0, "paddle")
    assert device_ceiling(peaks, "cuda") == (9000.0, "gpu")
    assert device_ceiling({}, "cpu") == (None, None)


def test_findings_are_computed_from_the_data(written):
    out, _ = written
    md = (out / "report.md").read_text()
    found = md.split("## Findings", 1)[1].split("\n## ", 1)[0]
    # paddle bucketed and torch random/B=64 are not alike: no sentence-mode winner is named
    assert "Fastest in small sentence" not in found and "No framework is fastest" not in found
    assert ("Fastest in small stream mode (B=20, 40 steps, 2 thread(s), eager fp32): torch/packed at 1,600 "
            "words/s, 1.33× the best other framework (paddle/lod, 1,200; 1 vs 1 run: beyond the ±15% assumed "
            "run-to-run spread (no cell here has 3+ runs)).") in found
    assert ("Padding, torch (small, B=20, 40 steps, 2 thread(s), 1/2 run(s) per cell): packed vs padded layout 1.38× with random "
            "batching (45% padding).") in found
    assert ("Validation perplexity after 40 steps at lr 1 (small stream): paddle 132.00, torch 130.50: smoke "
            "values, not comparable across frameworks") in found and "agree" not in found
    assert "No `lmbench verify` verdict is recorded" in found
    assert "1 run(s) failed: tensorflow/padded small sentence/random B=20 (crash)." in found
    # the same findings, word for word, in the HTML
    page = html.unescape(re.sub(r"<[^>]+>", "", (out / "report.html").read_text()))
    for line in found.strip().splitlines():
        if line.startswith("- "):
            assert line[2:].replace("`", "") in page, line


def test_padding_cost_finding_compares_layouts_and_batchings():
    runs = [record("torch", "packed", "random", 1000, seed=1, padding=0.4),
            record("torch", "packed", "bucketed", 2000, seed=2, padding=0.01),
            record("torch", "padded", "random", 500, seed=3, padding=0.4),
            record("torch", "padded", "bucketed", 1900, seed=4, padding=0.01),
            record("tensorflow", "padded", "random", 400, seed=5, padding=0.4)]
    assert padding_cost(headline(frame(runs))) == [
        "Padding, torch (small, B=20, 40 steps, 2 thread(s), 1 run(s) per cell): packed vs padded layout 2.00× with random batching "
        "(40% padding), 1.05× (tied within noise) with bucketed batching (1% padding); bucketed vs random "
        "batching packed 2.00×, padded 3.80× (padding 40% → 1.0%)."]  # tensorflow: one layout, one batching -- nothing to say


def test_history_over_commits_is_included_for_a_results_directory(tmp_path):
    machine = tmp_path / "results" / "test-cpu-2cpu"  # where `lmbench bench` files this machine's runs
    machine.mkdir(parents=True)
    runs = [dict(record(words_per_sec=w, seed=i), git_commit=c) for i, (w, c) in
            enumerate([(1000, "aaa1111"), (1010, "aaa1111"), (700, "bbb2222"), (690, "bbb2222")])]
    (machine / "r.jsonl").write_text("".join(json.dumps(r) + "\n" for r in runs))
    assert cli_main(["report", str(tmp_path / "results"), "--out", str(tmp_path / "o")]) == 0
    md = (tmp_path / "o" / "report.md").read_text()
    assert "**History over commits" in md and "| aaa1111 (not in git log) | 2 | 1,005 |" in md
    assert "| bbb2222 (not in git log) | 2 | 695 | 690-700 | 0.692 |" in md
    page = (tmp_path / "o" / "report.html").read_text()
    assert "<details><summary>History over commits" in page and 'alt="history test-cpu-2cpu"' in page


def test_a_framework_with_two_layouts_has_each_layouts_perplexity_named(tmp_path):
    d = tmp_path / "results"
    d.mkdir()
    runs = [record("torch", "packed", valid_ppl=705.0, mode="stream", seed=1),
            record("tensorflow", "padded", valid_ppl=660.0, mode="stream", seed=2),
            record("tensorflow", "unrolled", valid_ppl=680.0, mode="stream", seed=3)]
    (d / "r.jsonl").write_text("".join(json.dumps(r) + "\n" for r in runs))
    blocks, _ = build(load_records([d]), [d], tmp_path / "out")
    md = to_markdown(blocks)
    assert "tensorflow/padded 660.00, tensorflow/unrolled 680.00, torch 705.00: smoke values" in md
    assert "tensorflow 670.00" not in md  # no median over layouts


def test_verify_verdict_and_skipped_runs_are_reported(tmp_path):
    d = tmp_path / "results"
    d.mkdir()
    runs = [record("torch", "packed", valid_ppl=120.0, mode="stream", seed=1),
            record("paddle", "lod", valid_ppl=140.0, mode="stream", seed=2)]
    for r in runs:  # whole-epoch trainings: held to agreement
        r["run"].update(steps=None, epochs=2)
    (d / "r.jsonl").write_text("".join(json.dumps(r) + "\n" for r in runs))
    (d / "verify.json").write_text(json.dumps({"verdict": "FAIL", "preset": "tiny", "git_commit": "abc1234def"}))
    skipped = dict(record("tensorflow", "padded", seed=3), status="skipped", metrics=None,
                   reason="tensorflow is not installed (pip install 'lmbench[tensorflow]')")
    records = load_records([d]) + [skipped]
    blocks, _ = build(records, [d], tmp_path / "out")
    md = to_markdown(blocks)
    assert ("Validation perplexity (small stream, 2 epochs): frameworks differ by 16.7%, more than the 2% "
            "called agreement (paddle 140.00, torch 120.00)") in md
    assert "`lmbench verify` (tiny preset, commit abc1234): FAIL." in md
    assert "1 run(s) skipped: tensorflow/padded small sentence/random B=20" in md
    assert "3 run(s): 2 ok, 0 failed, 1 skipped." in md
    col, rows = table_rows(md, "## Failed and skipped runs")
    assert rows == [["tensorflow/padded small sentence/random B=20", "–", "skipped",
                     "tensorflow is not installed (pip install 'lmbench[tensorflow]')"]]


def test_throughput_error_bars_are_the_spread_across_repeats(report, monkeypatch):
    """The bars' whiskers span the repeats' min-max words/s (1,000-1,200 for torch/packed),
    not the step-time p10-p90; a cell with one run has none."""
    tmp, results = report
    df = frame(load_records([results], warn=lambda m: None), [results])
    figures = []
    monkeypatch.setattr(report_plots, "_image", lambda fig: figures.append(fig) or b"")
    caption, _ = report_plots.throughput(headline(df), report_plots._style())
    assert "min–max of the runs' words/s across repeats" in caption
    ax = figures[0].axes[0]
    spans = {}
    for container in ax.containers:
        if getattr(container, "errorbar", None) is None:
            continue
        name = container.get_label()
        segments = container.errorbar.lines[2][0].get_segments()
        spans[name] = [tuple(np.round([seg[0][1], seg[1][1]])) for seg in segments
                       if len(seg) and np.isfinite(seg).all()]
    assert spans["torch / packed (native)"] == [(1000.0, 1200.0)]  # random; stream has one run: no bar
    assert spans["torch / padded"] == []  # one run: no zero-length cap either
    assert ax.get_title().startswith("Fastest: paddle/lod (bucketed), 2,200 words/s")
    # one colour per framework in every plot
    colours = {c.get_label(): c.patches[0].get_facecolor() for c in ax.containers if getattr(c, "patches", None)}
    assert colours["torch / packed (native)"] == colours["torch / padded"] != colours["paddle / lod (native)"]


def _is_svg(data: bytes) -> bool:
    return data.lstrip().startswith(b"<?xml") and b"<svg" in data[:1000] and data.rstrip().endswith(b"</svg>")


def test_plots_are_svg_files_that_report_md_links(written):
    """Every plot is an SVG beside report.md, with its text kept as text (the legend is
    searchable, not outlines), and report.md links each one."""
    out, _ = written
    md = (out / "report.md").read_text()
    for name in ("throughput", "padding", "batch_size", "ppl_vs_time"):
        data = (out / f"{name}.svg").read_bytes()
        assert _is_svg(data) and len(data) > 5000, name
        assert f"]({name}.svg)" in md, name
    assert b"torch / packed (native)" in (out / "throughput.svg").read_bytes()  # a legend label, as text
    assert not list(out.glob("*.png"))


def test_the_same_records_give_the_same_plot_files(report, tmp_path):
    """No date or random id in a plot: a committed plot can be checked against its records."""
    _, results = report
    for out in ("a", "b"):
        with contextlib.redirect_stderr(io.StringIO()):
            assert cli_main(["report", str(results), "--out", str(tmp_path / out)]) == 0
    assert (tmp_path / "a" / "throughput.svg").read_bytes() == (tmp_path / "b" / "throughput.svg").read_bytes()


def test_html_is_self_contained(written):
    out, _ = written
    page = (out / "report.html").read_text()
    images = re.findall(r'src="data:image/svg\+xml;base64,([^"]+)"', page)
    assert len(images) == 4
    assert all(_is_svg(base64.b64decode(i)) and len(base64.b64decode(i)) > 5000 for i in images)
    # headline per preset and mode (2), details, published perplexity, failed runs; each in a
    # wrapper that scrolls sideways
    assert page.count("<table") == 5 and page.count("class='sortable headline'") == 2
    assert page.count("<div class='scroll'><table") == 5
    assert not re.search(r'(src|href)="(?!data:)', page) and "<link" not in page  # nothing fetched from elsewhere


def test_failed_runs_environment_and_published_perplexity(written):
    out, warnings = written
    md = (out / "report.md").read_text()
    assert "8 run(s): 7 ok, 1 failed." in md
    col, failed = table_rows(md, "## Failed and skipped runs")
    assert len(failed) == 1 and failed[0][:3] == ["tensorflow/padded small sentence/random B=20", "crash", "failed"]
    assert failed[0][3].startswith("RuntimeError: boom in 0123456789")
    assert "machine h: Test CPU, 2 CPUs" in md and "torch/packed: torch 1.0 on cpu" in md
    col, ppl = table_rows(md, "## Perplexity vs Zaremba et al. (2014)")
    # 2 epochs in 120 s; valid ppl fell below the target (125) at 90 s
    assert ppl == [["torch/packed small stream", "2", "130.50", "125.25", "120.7 / 114.5", "2.0", "125", "1.5"]]
    # bad lines are skipped with a warning naming the file and line; good records are used
    assert f"results.jsonl:9: record has schema_version {SCHEMA_VERSION + 1}" in warnings
    assert "results.jsonl:10: skipped a corrupt or truncated record" in warnings


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


class Browser:
    """Headless Chromium driven over the DevTools protocol (websocket-client, no browser
    download): console errors and exceptions are collected as events while the page loads."""

    def __init__(self, profile: Path, width: int):
        import websocket

        self.proc = subprocess.Popen([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--remote-debugging-port=0",
                                      f"--window-size={width},900", "about:blank"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file, deadline = profile / "DevToolsActivePort", time.monotonic() + 60
        while not (port_file.is_file() and port_file.read_text().strip()):
            assert self.proc.poll() is None and time.monotonic() < deadline, "chromium did not start"
            time.sleep(0.2)
        port = port_file.read_text().split()[0]
        pages = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=30).read())
        url = next(p["webSocketDebuggerUrl"] for p in pages if p["type"] == "page")
        self.ws = websocket.create_connection(url, timeout=60, suppress_origin=True)
        self.next_id, self.events = 0, []
        for method in ("Page.enable", "Runtime.enable", "Log.enable"):
            self.call(method)
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=900, deviceScaleFactor=1, mobile=False)

    def call(self, method: str, **params):
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self.next_id:
                assert "error" not in msg, msg
                return msg["result"]
            self.events.append(msg)

    def wait_for(self, method: str):
        while not any(e.get("method") == method for e in self.events):
            self.events.append(json.loads(self.ws.recv()))

    def eval(self, expression: str):
        out = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        assert "exceptionDetails" not in out, out
        return out["result"]["value"]

    def errors(self) -> list:
        return [e for e in self.events if e.get("method") == "Runtime.exceptionThrown"
                or (e.get("method") == "Runtime.consoleAPICalled" and e["params"]["type"] == "error")
                or (e.get("method") == "Log.entryAdded" and e["params"]["entry"]["level"] == "error")]

    def close(self):
        self.ws.close()
        self.proc.terminate()
        self.proc.wait(timeout=30)


@pytest.fixture(params=[1280, 800], ids=["1280px", "800px"])
def browser(tmp_path, request):
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (apt-get install chromium; .ci/run installs it)")
    b = Browser(tmp_path / "profile", request.param)
    b.width = request.param
    yield b
    b.close()


# what sticks out of the window, but for what a scrolling wrapper holds (the wrapper itself counts)
OVERFLOWING = """[...document.querySelectorAll('body *')].filter(e => {
  const r = e.getBoundingClientRect(), box = e.parentElement.closest('.scroll');
  return r.width > 0 && r.right > window.innerWidth + 0.5 && !box;
}).map(e => e.tagName + '.' + e.className + ' ' + Math.round(e.getBoundingClientRect().right))"""

# each figure's shown width over its own: the scale its legend's LEGEND_PT is drawn at
FIGURE_SCALES = """[...document.querySelectorAll('figure img')].map(i => i.getBoundingClientRect().width / i.naturalWidth)"""
SCROLLING = """[...document.querySelectorAll('.scroll')].filter(d => d.scrollWidth > d.clientWidth + 0.5).length"""

SORTED_BY = """(() => {{
  const table = document.querySelectorAll('table.headline')[{table}];
  const th = [...table.tHead.rows[0].cells].find(c => c.textContent.startsWith({header!r}));
  th.click();
  const first = [...table.tBodies[0].rows].map(r => Number(r.cells[th.cellIndex].dataset.v));
  th.click();
  const second = [...table.tBodies[0].rows].map(r => Number(r.cells[th.cellIndex].dataset.v));
  return [first, second, th.getAttribute('aria-sort')];
}})()"""


def test_html_renders_in_headless_chromium(written, browser):
    """At 1280 and at 800 px: no console error, the page never wider than the window (a
    wide table scrolls in its own wrapper: at 800 px the headline tables do), every plot
    decoded with its legend drawn at 11 px or more, and clicking a header sorts the table
    (ascending, then descending)."""
    out, _ = written
    browser.call("Page.navigate", url=(out / "report.html").as_uri())
    browser.wait_for("Page.loadEventFired")
    assert browser.errors() == []
    assert browser.eval("document.documentElement.scrollWidth <= window.innerWidth") is True
    assert browser.eval(OVERFLOWING) == []
    assert (browser.eval(SCROLLING) > 0) is (browser.width == 800)
    images = browser.eval("[...document.images].map(i => [i.complete, i.naturalWidth])")
    assert len(images) == 4 and all(done and width > 500 for done, width in images), images
    legend_px = [report_plots.LEGEND_PT * 4 / 3 * scale for scale in browser.eval(FIGURE_SCALES)]
    assert len(legend_px) == 4 and min(legend_px) >= 11, legend_px
    up, down, state = browser.eval(SORTED_BY.format(table=0, header="Train words/s"))
    assert up == sorted(up) and down == sorted(up, reverse=True) and len(up) == 4 and state == "descending"
    assert down[0] == 2200  # paddle/lod bucketed, the fastest
    shot = base64.b64decode(browser.call("Page.captureScreenshot", format="png")["data"])
    assert shot[:4] == b"\x89PNG" and len(shot) > 20_000  # a blank page compresses to a few KB


def test_a_page_that_overflows_or_fails_is_caught(tmp_path, browser):
    """The browser checks see what they are meant to: a script error and a too-wide table."""
    bad = tmp_path / "bad.html"
    bad.write_text("<!doctype html><body><table><tr><td><div style='width:2000px'>x</div></td></tr></table>"
                   "<img src='missing.png'><script>undefinedFunction()</script></body>")
    browser.call("Page.navigate", url=bad.as_uri())
    browser.wait_for("Page.loadEventFired")
    assert any(e.get("method") == "Runtime.exceptionThrown" for e in browser.errors())
    assert browser.eval("document.documentElement.scrollWidth <= window.innerWidth") is False
    assert browser.eval(OVERFLOWING)
    assert browser.eval("[...document.images].map(i => i.naturalWidth)") == [0]


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
    run["cpu_count"], run["machine_key"] = env.cpu_count(), env.machine_key()
    (results / env.machine_key() / "x.jsonl").write_text(json.dumps(run) + "\n")
    assert cli_main(["report", str(results), "--out", str(tmp_path / "o")]) == 0
    md = (tmp_path / "o" / "report.md").read_text()
    col, rows = table_rows(md, "### small preset, sentence mode")
    # one framework measured: its GEMM is the device ceiling
    util = float(rows[0][col["Utilisation % of device ceiling"]].replace(",", ""))
    assert util == pytest.approx(100 * 15.8 / entry["gflops"], abs=0.06)
    assert cli_main(["peak", "--frameworks", "mxnet"]) == 2
    err = capsys.readouterr().err
    assert "unknown framework(s) mxnet: allowed: " in err and all(fw in err for fw in ("torch", "tensorflow", "paddle"))


def test_a_run_with_another_thread_count_than_the_gemm_is_flagged(tmp_path):
    run = dict(record(), threads=1)
    run["run"]["threads"] = 1
    (tmp_path / "r.jsonl").write_text(json.dumps(run) + "\n")
    (tmp_path / "peak.json").write_text(json.dumps({"torch": {"gflops": 50.0, "device": "cpu", "threads": 2}}))
    assert cli_main(["report", str(tmp_path / "r.jsonl"), "--out", str(tmp_path / "o")]) == 0
    md = (tmp_path / "o" / "report.md").read_text()
    assert "(cpu: 50.0 GFLOP/s (torch, 2 threads))" in md
    assert "1 run(s) used 1 thread(s), not the GEMM's: run `lmbench peak --threads N`" in md
    # a GEMM measured on another CPU model is no ceiling for this run
    (tmp_path / "peak.json").write_text(json.dumps({"torch": {"gflops": 50.0, "device": "cpu",
                                                              "cpu_model": "Another CPU"}}))
    assert cli_main(["report", str(tmp_path / "r.jsonl"), "--out", str(tmp_path / "o")]) == 0
    assert "No GEMM peak was measured" in (tmp_path / "o" / "report.md").read_text()


def test_no_peak_is_said(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps(record()) + "\n")
    assert cli_main(["report", str(path), "--out", str(tmp_path / "o")]) == 0
    assert "No GEMM peak was measured" in (tmp_path / "o" / "report.md").read_text()


def test_report_module_imports_no_framework():
    src = Path(__file__).resolve().parent.parent / "lmbench"
    for mod in ("report/document", "report/command", "report/table", "report/findings", "report/plots", "report/render",
                "regress/compare", "run/bench", "run/suite", "run/peak"):
        top = [line for line in (src / f"{mod}.py").read_text().splitlines() if line.startswith(("import", "from"))]
        assert not any(re.search(r"\b(torch|tensorflow|paddle)\b", line) for line in top), mod


EXAMPLE = Path(__file__).resolve().parent.parent / "docs" / "report-example"


def _cells(records) -> dict:
    t = headline(frame(records))
    return {i: (runs, wps) for i, runs, wps in zip(t.identity, t.runs, t.train_words_per_sec)}


def test_suites_reported_together_keep_each_suites_headline_numbers():
    """A median is never taken over runs of different identities: reporting every committed
    example suite at once gives each cell exactly the numbers of its suite reported alone."""
    files = sorted(EXAMPLE.glob("*.jsonl"))
    assert len(files) >= 2
    together = _cells(load_records(files, warn=lambda m: None))
    alone = {}
    for f in files:
        for identity, cell in _cells(load_records([f], warn=lambda m: None)).items():
            assert identity not in alone, f"{f.name} shares a cell with another suite: {identity}"
            alone[identity] = cell
    assert together == alone


def test_ab_sides_and_framework_versions_are_never_pooled():
    base = record("torch", "packed", words_per_sec=1000, seed=1)
    runs = []
    for side, version, words in (("A", "2.13.0", 1000), ("B", "2.14.1", 700)):
        for i in range(3):
            r = json.loads(json.dumps(base))
            r.update(ab_side=side, ab_sources={"A": "x", "B": "y"})
            r["environment"]["framework_version"] = version
            r["metrics"]["train_words_per_sec"] = words + i
            runs.append(r)
    t = headline(frame(runs))
    assert sorted(zip(t.ab_side, t.runs, t.train_words_per_sec)) == [("A", 3, 1001), ("B", 3, 701)]
    # and A/B runs are no finding's material: sides are compared by `lmbench compare`/`ab`
    from lmbench.report.findings import fastest
    assert fastest(t) == []


def test_a_winner_is_named_only_beyond_noise():
    from lmbench.report.findings import fastest

    def runs(backend, layout, words):
        return [dict(record(backend, layout, words_per_sec=w, seed=i), run_id=f"{backend}{i}")
                for i, w in enumerate(words)]

    close = runs("torch", "packed", [1000, 1100, 950]) + runs("jax", "padded", [1020, 980, 1060])
    [sentence] = fastest(headline(frame(close)))
    assert sentence.startswith("No framework is fastest beyond noise") and "tied within noise" in sentence
    apart = runs("torch", "packed", [1500, 1550, 1480]) + runs("jax", "padded", [1020, 980, 1060])
    [sentence] = fastest(headline(frame(apart)))
    assert sentence.startswith("Fastest in small sentence mode") and "torch/packed" in sentence
    assert "3 vs 3 runs, one-sided Mann–Whitney p=0.050" in sentence
    # a variant is never the winner against eager runs of other frameworks
    fast_variant = runs("torch", "packed", [5000, 5100, 5050])
    for r in fast_variant:
        r["run"].update(compile=True, precision="bf16")
    [sentence] = fastest(headline(frame(close + fast_variant)))
    assert "5,0" not in sentence


def test_bare_report_reads_the_most_recent_suite_run_only(tmp_path, monkeypatch, capsys):
    machine = tmp_path / "results" / "test-cpu-2cpu"
    machine.mkdir(parents=True)
    (tmp_path / "results" / "ab").mkdir()
    older, newer = machine / "20261201T000000Z-aaa.jsonl", machine / "20261202T000000Z-bbb.jsonl"
    older.write_text(json.dumps(record("torch", "packed", words_per_sec=111, seed=1)) + "\n")
    newer.write_text(json.dumps(record("torch", "packed", words_per_sec=222, seed=2)) + "\n")
    os.utime(older, (1, 1))
    (tmp_path / "results" / "ab" / "x.jsonl").write_text(json.dumps(record(words_per_sec=333, seed=3)) + "\n")
    # a single `lmbench run` saved after the suite is no suite run
    (machine / "run-20261203T000000Z.jsonl").write_text(json.dumps(record(words_per_sec=444, seed=4)) + "\n")
    monkeypatch.chdir(tmp_path)
    assert cli_main(["report", "--out", "o"]) == 0
    md = (tmp_path / "o" / "report.md").read_text()
    assert "222" in md and "111" not in md and "333" not in md and "444" not in md and "1 run(s): 1 ok" in md
    assert cli_main(["report", "--all", "--out", "o"]) == 0
    assert "4 run(s): 4 ok" in (tmp_path / "o" / "report.md").read_text()


def test_a_bf16_run_is_measured_against_the_bf16_ceiling_and_an_impossible_peak_is_none(tmp_path):
    fp32, bf16 = record(words_per_sec=1000, seed=1), record(words_per_sec=1000, seed=2)
    bf16["run"]["precision"] = "bf16"
    peaks = {"torch": {"gflops": 100.0, "device": "cpu", "precision": "fp32"},
             "bf16": {"torch": {"gflops": 200.0, "device": "cpu", "precision": "bf16"}}}
    (tmp_path / "peak.json").write_text(json.dumps(peaks))
    df = frame([fp32, bf16], [tmp_path])
    assert sorted(zip(df.variant, df.ceiling_gflops)) == [("bf16", 200.0), ("eager fp32", 100.0)]
    peaks["torch"].update(gflops=500.0, theoretical_gflops=400.0)  # above what the cores can do
    (tmp_path / "peak.json").write_text(json.dumps(peaks))
    assert np.isnan(frame([fp32], [tmp_path]).ceiling_gflops[0])


def test_a_run_without_per_step_samples_shows_no_step_time_spread(tmp_path):
    """JAX (and TensorFlow on GPU) records no per-step times: the step-time cell says "–",
    not an empty spread."""
    r = record("jax", "padded", seed=11)
    r["metrics"]["step_time_ms"] = {"median": None, "p10": None, "p90": None, "samples": []}
    r["metrics"]["step_time_source"] = "none: asynchronous dispatch"
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps(r) + "\n" + json.dumps(record("torch", "packed", seed=12, words_per_sec=900, spread=0.0)) + "\n")
    blocks, _ = build(load_records([path]), [path], tmp_path / "out")
    col, rows = table_rows(to_markdown(blocks), "### small preset, sentence mode")
    assert [row[col["Step time ms p50 [p10–p90]"]] for row in rows] == ["–", "100.0 [100.0–100.0]"]


def test_the_details_say_per_backend_layout_and_device_whether_the_lstm_ran_over_padding():
    from lmbench.report.table import DETAILS, cells

    packed = record("torch", "packed", seed=1)  # an older record: the backend's declaration answers
    padded = record("torch", "padded", seed=2)
    padded["environment"]["lstm_computes_padding"] = True
    gpu = record("tensorflow", "padded", seed=3)
    gpu.update(device="cuda")
    gpu["environment"]["lstm_computes_padding"] = False  # Keras hands cuDNN the mask's lengths
    headers, rows = cells(headline(frame([packed, padded, gpu])), DETAILS)
    column = headers.index("LSTM runs over padding")
    said = {(row[0][1], row[1][1]): row[column][1] for row in rows}
    assert said == {("torch", "packed"): "no", ("torch", "padded"): "yes",
                    ("tensorflow", "padded"): "no (GPU: from reading the kernels, not measured)"}


def test_the_details_set_the_projected_first_epoch_beside_the_steady_state_words_per_second():
    from lmbench.report.table import DETAILS, cells

    jax = record("jax", "padded", words_per_sec=3000.0, seed=1)
    jax["metrics"]["first_epoch"] = {"tokens": 900_000, "seconds": 358.0, "words_per_sec": 2514.0}
    old = record("torch", "packed", words_per_sec=2800.0, seed=2)  # no projection recorded: a dash
    headers, rows = cells(headline(frame([jax, old])), DETAILS)
    steady, first = (headers.index("Steady-state train words/s"),
                     headers.index("First epoch words/s incl. every compile (projected)"))
    assert first == steady + 1
    said = {row[0][1]: (row[steady][1], row[first][1], row[first + 1][1]) for row in rows}
    assert said == {"jax": ("3,000", "2,514", "358"), "torch": ("2,800", "–", "–")}


def test_the_noise_band_is_the_calibrated_one_where_lmbench_calibrate_measured_it():
    from lmbench.report import noise

    assert noise.spread_of([[100, 110, 120]]).value == pytest.approx(0.2)  # measured here: 120/100 - 1
    assert noise.spread_of([[100]]).value == noise.ASSUMED_SPREAD  # nothing repeated: assumed
    calibrated = noise.spread_of([[100, 110, 120]], pair_band=[0.95, 1.04])
    assert calibrated.value == pytest.approx(1 / 0.95 - 1) and "calibrate" in calibrated.source
    # with a 5% band, one run each 10% apart is beyond noise; with the assumed 15%, it is not
    assert noise.compare([1100], [1000], calibrated).beyond_noise
    assert not noise.compare([1100], [1000], noise.spread_of([[1]])).beyond_noise
