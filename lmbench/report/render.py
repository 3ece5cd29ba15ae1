"""One report, two renderings: a list of blocks becomes report.md and a self-contained
report.html (inline CSS and JS, plots as data: URIs; nothing fetched, works offline).

Blocks: ("h2"|"h3"|"p", text), ("ul", [text]), ("table", headers, rows, css class) with
rows of (sort value, text) cells, ("details", summary, [blocks]), ("figure", name,
caption, SVG bytes: written beside report.md as name.svg), ("markdown", text, {file
name: image bytes}) for sections that come as markdown (history). Text may hold `code`
and **bold**. Every table sits in a wrapper that scrolls sideways on a narrow window, so
the page itself never does.
"""
from __future__ import annotations

import base64
import html
import re

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#222;margin:0 auto;
  padding:1.5em 2em;max-width:1200px;box-sizing:border-box}
h1{font-size:1.6em;margin:.2em 0}h2{font-size:1.3em;margin-top:1.6em;border-bottom:1px solid #ddd}
h3{font-size:1.05em;margin:1.2em 0 .4em}
.findings{background:#f4f8fb;border-left:4px solid #1f77b4;padding:.6em 1.2em;margin:1em 0}
.findings li{margin:.25em 0}
.scroll{overflow-x:auto;max-width:100%;margin:.4em 0}
table{border-collapse:collapse;font-size:12.5px;width:100%}
th,td{border-bottom:1px solid #e3e3e3;padding:4px 6px;text-align:right;vertical-align:top}
th{background:#f6f6f6;font-weight:600;white-space:normal}
td:first-child,th:first-child,td.t,th.t{text-align:left}
table.headline td,table.details td{white-space:nowrap}
table.failed td:last-child,.md td{overflow-wrap:anywhere}
table.sortable th{cursor:pointer;user-select:none}
table.sortable th[aria-sort=ascending]::after{content:" ▲"}
table.sortable th[aria-sort=descending]::after{content:" ▼"}
tbody tr:hover{background:#fafafa}
details{margin:.8em 0}summary{cursor:pointer;font-weight:600}
figure{margin:1.2em 0}figure img,.md img{max-width:100%;height:auto;display:block}
figcaption{color:#555;font-size:13px;margin-top:.3em}
code{background:#f2f2f2;padding:0 3px;border-radius:3px;font-size:.95em}
.note{color:#555;font-size:13px}
.spread{display:block;color:#777;font-size:11px}
"""

# Click a header: sort that table's rows by the cells' data-v (numbers numerically,
# missing values last), again to reverse.
JS = """
document.querySelectorAll('table.sortable').forEach(function (table) {
  table.querySelectorAll('th').forEach(function (th, col) {
    th.addEventListener('click', function () {
      var asc = th.getAttribute('aria-sort') !== 'ascending';
      table.querySelectorAll('th').forEach(function (h) { h.removeAttribute('aria-sort'); });
      th.setAttribute('aria-sort', asc ? 'ascending' : 'descending');
      var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
      function key(row) { var v = row.cells[col].getAttribute('data-v'); return v === null || v === '' ? null : v; }
      rows.sort(function (a, b) {
        var x = key(a), y = key(b);
        if (x === null || y === null) { return (x === null) - (y === null); }
        var nx = Number(x), ny = Number(y);
        var c = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y);
        return asc ? c : -c;
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
});
"""


def _inline(text: str) -> str:
    out = html.escape(text)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    return re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", out)


def _md_cell(text: str) -> str:
    return str(text).replace("|", "/").replace("\n", " ")


def _sort_value(v) -> str:
    if v is None:
        return ""
    if isinstance(v, (bool,)):
        return str(int(v))
    if isinstance(v, (int, float)) or hasattr(v, "dtype"):
        return repr(float(v))
    return str(v)


def to_markdown(blocks) -> str:
    lines = []
    for b in blocks:
        kind = b[0]
        if kind in ("h2", "h3"):
            lines += [("## " if kind == "h2" else "### ") + b[1], ""]
        elif kind == "p":
            lines += [b[1], ""]
        elif kind == "ul":
            lines += [f"- {x}" for x in b[1]] + [""]
        elif kind == "table":
            _, headers, rows, _ = b
            lines += ["| " + " | ".join(map(_md_cell, headers)) + " |", "|" + "---|" * len(headers)]
            lines += ["| " + " | ".join(_md_cell(t) for _, t in row) + " |" for row in rows] + [""]
        elif kind == "details":
            lines += [f"**{b[1]}**", "", to_markdown(b[2])]
        elif kind == "figure":
            lines += [f"![{b[2]}]({b[1]}.svg)", "", f"*{b[2]}*", ""]
        elif kind == "markdown":
            lines += [b[1], ""]
    return "\n".join(lines)


def _table_html(headers, rows, cls) -> str:
    def align(i):  # text columns left, numbers right
        return " class='t'" if rows and isinstance(rows[0][i][0], str) else ""

    head = "".join(f"<th{align(i)} scope='col'>{html.escape(h)}</th>" for i, h in enumerate(headers))
    def cell(text: str) -> str:  # "1,100 [1,000–1,200]": the spread on a small second line
        main, sep, spread = text.partition(" [")
        return html.escape(main) + (f"<span class='spread'>[{html.escape(spread)}</span>" if sep else "")

    body = "".join("<tr>" + "".join(f"<td{align(i)} data-v=\"{html.escape(_sort_value(v))}\">{cell(t)}</td>"
                                    for i, (v, t) in enumerate(row)) + "</tr>" for row in rows)
    return (f"<div class='scroll'><table class='{cls}'><thead><tr>{head}</tr></thead><tbody>{body}</tbody>"
            f"</table></div>")


def _data_uri(name: str, data: bytes) -> str:
    mime = "image/svg+xml" if name.endswith(".svg") else "image/png"
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def _markdown_html(text: str, images: dict[str, bytes]) -> str:
    """The markdown subset other sections produce: headings, images, tables, paragraphs."""
    out, table = [], []

    def flush():
        if table:
            rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in table
                    if not set(line.replace("|", "").strip()) <= set("-: ")]
            out.append(_table_html(rows[0], [[(c, c) for c in r] for r in rows[1:]], "plain"))
            table.clear()

    for line in text.splitlines():
        if line.startswith("|"):
            table.append(line)
            continue
        flush()
        img = re.fullmatch(r"!\[([^\]]*)\]\(([^)]+)\)", line.strip())
        if line.startswith("### "):
            out.append(f"<h3>{_inline(line[4:])}</h3>")
        elif line.startswith("## "):
            out.append(f"<h2>{_inline(line[3:])}</h2>")
        elif img and img.group(2) in images:
            out.append(f'<img alt="{html.escape(img.group(1))}" src="{_data_uri(img.group(2), images[img.group(2)])}">')
        elif line.strip():
            out.append(f"<p>{_inline(line)}</p>")
    flush()
    return "<div class='md'>" + "".join(out) + "</div>"


def to_html(blocks, title: str) -> str:
    parts = []
    for b in blocks:
        kind = b[0]
        if kind in ("h1", "h2", "h3"):
            parts.append(f"<{kind}>{_inline(b[1])}</{kind}>")
        elif kind == "p":
            parts.append(f"<p class='note'>{_inline(b[1])}</p>")
        elif kind == "ul":
            cls = " class='findings'" if len(b) > 2 and b[2] == "findings" else ""
            parts.append(f"<ul{cls}>" + "".join(f"<li>{_inline(x)}</li>" for x in b[1]) + "</ul>")
        elif kind == "table":
            parts.append(_table_html(*b[1:]))
        elif kind == "details":
            parts.append(f"<details><summary>{_inline(b[1])}</summary>{to_html(b[2], '')}</details>")
        elif kind == "figure":
            parts.append(f'<figure><img alt="{html.escape(b[1])}" src="{_data_uri("x.svg", b[3])}">'
                         f"<figcaption>{_inline(b[2])}</figcaption></figure>")
        elif kind == "markdown":
            parts.append(_markdown_html(b[1], b[2]))
    if not title:
        return "".join(parts)
    return ("<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>{''.join(parts)}"
            f"<script>{JS}</script></body></html>")
