"""`lmbench report`'s command line. The report itself (lmbench.report.document) imports
pandas and matplotlib: only when the command runs, so that every `lmbench` command starts
without them."""
from __future__ import annotations

import sys


def cmd_report(a) -> int:
    from .document import select, write_report

    paths = select(a.results, a.all, a.suite, a.commit)
    print(f"reporting {', '.join(map(str, paths))}", file=sys.stderr)
    paths = write_report(paths, a.out, warn=lambda m: print(m, file=sys.stderr), suite=a.suite, commit=a.commit)
    print("wrote " + ", ".join(map(str, paths)))
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("report", help="tables and plots from run records (report.md, report.html)")
    p.add_argument("results", nargs="*", help="JSONL files or directories (default: the most recent suite run "
                                              "under results/)")
    p.add_argument("--all", action="store_true", help="every record under results/")
    p.add_argument("--suite", default=None, help="only the records of this suite (e.g. default)")
    p.add_argument("--commit", default=None, help="only the records of this commit (a prefix is enough)")
    p.add_argument("--out", default="results/report")
    p.set_defaults(func=cmd_report)
