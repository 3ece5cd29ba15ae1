"""The docs site builds (`mkdocs build --strict`: no broken page, nav entry or anchor),
fetches nothing, and every relative link in the README, CONTRIBUTING.md and docs/
leads to a file of the repository; every dated figure on the results page links the
record file it came from."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = sorted([REPO / "README.md", REPO / "CONTRIBUTING.md", *(REPO / "docs").rglob("*.md")])
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def _links(page: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)  # code blocks hold no links
    return [t for t in LINK.findall(text) if not re.match(r"[a-z]+:", t) and not t.startswith("#")]


def test_the_docs_site_builds_strict_and_offline(tmp_path):
    pytest.importorskip("mkdocs", reason="mkdocs is not installed (pip install -e '.[dev]')")
    pytest.importorskip("material", reason="mkdocs-material is not installed (pip install -e '.[dev]')")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    build = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                           cwd=REPO, capture_output=True, text=True, env=env, timeout=300)
    assert build.returncode == 0, build.stderr[-3000:]
    pages = list((tmp_path / "site").rglob("*.html"))
    assert {"results", "methodology", "adding-a-framework"} <= {p.parent.name for p in pages}
    for page in pages:  # nothing the browser would fetch from elsewhere (fonts, scripts, styles)
        html = page.read_text()
        fetched = re.findall(r"<(?:script|img|link)\b[^>]*(?:src|href)=\"(https?://[^\"]+)", html)
        assert fetched == [], (page, fetched)
    # the page that includes CONTRIBUTING.md has its text, not the include line
    text = (tmp_path / "site" / "adding-a-framework" / "index.html").read_text()
    assert "LAYOUTS" in text and "--8&lt;--" not in text


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_leads_to_a_file_of_the_repository(page):
    missing = [t for t in _links(page) if not (page.parent / t.split("#")[0]).exists()]
    assert missing == []


def test_every_dated_figure_on_the_results_page_links_its_record():
    """A paragraph or table caption that dates a measurement links a record file (a .jsonl,
    .json or .txt under results/, docs/report-example/ or tests/data/) that exists."""
    page = REPO / "docs" / "results.md"
    paragraphs = [p for p in re.split(r"\n\s*\n", page.read_text()) if re.search(r"\b20\d\d-\d\d-\d\d\b", p)]
    assert len(paragraphs) >= 4
    for paragraph in paragraphs:
        records = [t for t in LINK.findall(paragraph) if re.search(r"\.(jsonl|json|txt)$", t)
                   and re.match(r"(\.\./results/|report-example/|\.\./tests/data/)", t)]
        assert records and all((page.parent / t).is_file() for t in records), paragraph[:200]
