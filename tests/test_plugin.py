""""Adding a framework is one module": no backend's name is written into the harness.

A backend's name may appear in its own module (backends/), the suites, the constraints,
the install extras, the docs, and the tests and hand-written loops that are about that
framework. Anywhere else -- code in lmbench/, the Makefile, the shared benchmark and
test helpers -- a name would be a framework list that a new backend has to be added to.
Code is read with `ast`, so docstrings and comments may name frameworks; string
literals, identifiers and imports may not. Reads files only: imports no framework.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from lmbench.backend import available_backends

ROOT = Path(__file__).resolve().parents[1]
NAMES = available_backends()
WORD = re.compile(r"\b(" + "|".join(map(re.escape, NAMES)) + r")\b")

# Shared code: what a new backend must not have to touch.
SHARED_PY = sorted({*ROOT.glob("lmbench/**/*.py"), ROOT / "tests/benchmarks/stepbench.py", ROOT / "tests/conftest.py",
                    *(p for p in ROOT.glob("benchmarks/*.py")  # one framework's own benchmarks are named after it
                      # (public_*: ports of each framework's public example program, and their driver)
                      if not p.stem.startswith(("handwritten_", "public_", *(f"{n}_" for n in NAMES))))})
# Known exceptions, each with its reason; anything else fails.
ALLOWED = {
    # fixed plot colours for the first three frameworks; any other backend gets one from
    # the palette (report_plots.colour), so a new backend needs no change there
    ("lmbench/report/plots.py", "COLOURS"),
}


def _docstrings(tree) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                ids.add(id(first.value))
    return ids


def hardcoded(source: str) -> list[tuple[int, str, str]]:
    """(line, enclosing module-level name or '', text) of every backend name in code."""
    tree = ast.parse(source)
    skip = _docstrings(tree)
    owner = {}
    for top in tree.body:
        targets = top.targets if isinstance(top, ast.Assign) else []
        label = next((t.id for t in targets if isinstance(t, ast.Name)), "")
        for node in ast.walk(top):
            owner[id(node)] = label
    hits = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
            text = node.value
        elif isinstance(node, ast.Name):
            text = node.id
        elif isinstance(node, ast.Attribute):
            text = node.attr
        elif isinstance(node, ast.alias):
            text = node.name
        else:
            continue
        if WORD.search(text):
            hits.append((getattr(node, "lineno", 0), owner.get(id(node), ""), text))
    return sorted(hits)


def test_there_is_more_than_one_backend_to_look_for():
    assert len(NAMES) >= 4 and "jax" in NAMES, NAMES


@pytest.mark.parametrize("path", SHARED_PY, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_backend_name_in_shared_code(path):
    rel = str(path.relative_to(ROOT))
    hits = [h for h in hardcoded(path.read_text()) if (rel, h[1]) not in ALLOWED]
    assert not hits, f"{rel}: backend names hard-coded (read them from lmbench.backend instead): {hits}"


def test_no_backend_name_in_the_makefile():
    code = [line for line in (ROOT / "Makefile").read_text().splitlines() if not line.lstrip().startswith("#")]
    assert not [line for line in code if WORD.search(line)]


def test_the_scan_catches_a_framework_list():
    # the check itself: a list, a dict key, an import and an f-string are caught; docstrings
    # and comments are not
    src = ('"""torch and jax in a docstring"""\n# paddle in a comment\n'
           'FRAMEWORKS = ["torch", "paddle"]\nNATIVE = {"jax": "padded"}\nimport tensorflow\n'
           'def f(x):\n    """tensorflow"""\n    return f"{x}-jax"\n')
    hits = hardcoded(src)
    assert [(line, text) for line, _, text in hits] == [
        (3, "paddle"), (3, "torch"), (4, "jax"), (5, "tensorflow"), (8, "-jax")], hits
