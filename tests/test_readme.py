"""The README's headline tables and plot are what `lmbench report` makes of the committed
records (docs/report-example/default-suite.jsonl), not numbers typed by hand.

`python tests/test_readme.py --write` rewrites the block between the headline markers
and docs/report-example/throughput.svg from the records; the tests fail when either
disagrees with what lmbench's report code makes of them now.
"""
from __future__ import annotations

import re
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
RECORDS = REPO / "docs" / "report-example" / "default-suite.jsonl"
PLOT = REPO / "docs" / "report-example" / "throughput.svg"
START, END = "<!-- headline:start -->", "<!-- headline:end -->"
HOW = "rewrite them with `.venv/bin/python tests/test_readme.py --write` and commit README.md and the plot"


def generated() -> tuple[str, bytes]:
    """The README's headline block (markdown) and the plot, from the committed records."""
    from lmbench.report.document import build
    from lmbench.report.render import to_markdown
    from lmbench.results import load_records

    records = load_records([RECORDS], warn=lambda m: None)
    with tempfile.TemporaryDirectory() as tmp:
        blocks, files = build(records, [RECORDS], Path(tmp))
    start = blocks.index(("h2", "Headline"))
    tables = []
    for heading, table in zip(blocks[start + 1:], blocks[start + 2:]):
        if heading[0] == "h3" and heading[1].startswith("small preset") and table[0] == "table":
            tables += [heading, table]
    figure = next(b for b in blocks if b[0] == "figure" and b[1] == "throughput")
    ok = [r for r in records if r.get("status") == "ok"]
    days = sorted({r["utc_time"][:10] for r in ok})
    commits = sorted({(r.get("git_commit") or "no git")[:7] for r in ok})
    machines = sorted({f"{r.get('cpu_model')}, {r.get('cpu_count')} CPUs" for r in ok})
    intro = (f"From `make bench` as recorded in `{RECORDS.relative_to(REPO)}`: {len(ok)} runs on "
             f"{' and '.join(days)}, {'; '.join(machines)}, commit {', '.join(commits)}, one run per cell; "
             f"train words/s count real target tokens only.")
    text = "\n".join([intro, "", to_markdown(tables).rstrip("\n"), "",
                      f"![{figure[2]}]({PLOT.relative_to(REPO)})", ""])
    return text, files["throughput.svg"]


def readme_block() -> str:
    text = README.read_text()
    assert text.count(START) == 1 and text.count(END) == 1, f"README.md needs one {START} ... {END} block"
    return text.split(START, 1)[1].split(END, 1)[0].strip("\n") + "\n"


def svg_text(svg: bytes) -> list[str]:
    """What a plot says (title, axis labels, ticks, legend): its SVG text elements, in order.
    Compared instead of bytes, so another matplotlib's drawing does not fail the test."""
    return re.findall(r"<text[^>]*>([^<]*)</text>", svg.decode())


def test_the_readme_headline_is_what_the_report_makes_of_the_committed_records():
    want, _ = generated()
    assert readme_block() == want, f"README.md's headline block differs from the records: {HOW}"


def test_the_readme_plot_is_the_report_plot_of_the_committed_records():
    _, svg = generated()
    assert f"]({PLOT.relative_to(REPO)})" in readme_block()
    assert PLOT.is_file(), f"{PLOT} is missing: {HOW}"
    assert svg_text(svg) and svg_text(PLOT.read_bytes()) == svg_text(svg), f"{PLOT.name} differs: {HOW}"


def test_the_readme_stays_short():
    assert len(README.read_text().splitlines()) <= 150


def write() -> None:
    text, svg = generated()
    readme = README.read_text()
    head, rest = readme.split(START, 1)
    README.write_text(f"{head}{START}\n{text}{END}{rest.split(END, 1)[1]}")
    PLOT.write_bytes(svg)
    print(f"wrote {README} and {PLOT}")


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit(f"usage: {sys.argv[0]} --write  (rewrite README.md's headline block and {PLOT.name})")
    write()
