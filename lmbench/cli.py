"""`lmbench` command line: download, run, verify, bench, report, compare, peak."""
from __future__ import annotations

import argparse
import errno
import importlib
import sys

from .errors import UserError, did_you_mean

# every sub-command, in the order `lmbench --help` lists them: the module that implements it
COMMANDS = ("data.download", "run.command", "verify.command", "run.bench", "report.command", "regress.compare", "run.peak",
            "regress.ab", "regress.bisect", "regress.history", "regress.calibrate")


class Fail(UserError):
    """A user-facing error: printed without a traceback, exit status 2."""


class Parser(argparse.ArgumentParser):
    """argparse that answers a mistyped choice with the closest allowed one, as suites do
    (sub-command parsers are of the same class)."""

    def _check_value(self, action, value):
        if action.choices is not None and value not in action.choices:
            choices = ", ".join(map(repr, action.choices))
            raise argparse.ArgumentError(action, f"invalid choice: {value!r}{did_you_mean(value, action.choices)} "
                                                 f"(choose from {choices})")


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    p = Parser(prog="lmbench", description=__doc__)
    p.add_argument("--version", action="version", version=f"lmbench {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    for module in COMMANDS:  # each contributes its sub-command through add_parser(sub)
        importlib.import_module(f"lmbench.{module}").add_parser(sub)
    return p


def main(argv=None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # argparse printed the problem (a bad choice, --help): its status, no exit
        return e.code if isinstance(e.code, int) else 2
    try:
        return args.func(args)
    except UserError as e:
        print(f"lmbench: error: {e}", file=sys.stderr)
        return 2
    except Exception as e:
        if isinstance(e, OSError) and e.filename:  # a file lmbench was given or writes: one line naming it
            print(f"lmbench: error: {e.filename}: {e.strerror or e}", file=sys.stderr)
            return 2
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EIO):
            # a write that failed after its open (the disk filled up mid-way): no name to give
            print(f"lmbench: error: `lmbench {args.command}` could not write its output ({e.strerror or e}): free space "
                  f"or give another output directory", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
