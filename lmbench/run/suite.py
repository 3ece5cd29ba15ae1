"""Suite files: a small declarative TOML matrix of runs, expanded into validated cells.

    [defaults]              # any field below, applied to every [[matrix]] table
    preset = "small"
    steps = 15
    [[matrix]]              # each table expands the product of its list values
    backend = ["torch", "paddle"]
    layout = ["native", "padded"]     # "native" = the backend's first (default) layout
    batching = ["random", "bucketed"]
    batch_size = [20, 64]             # any config field may be a list

Every problem (bad TOML, an unknown field or backend, a typo'd value, a layout the
backend does not have) is a SuiteError naming the file, the [[matrix]] entry and what is
allowed, raised before any cell runs. Loading imports no framework.
"""
from __future__ import annotations

from ..errors import UserError

import difflib
import itertools
from pathlib import Path

from ..backend import available_backends, backend_layouts
from ..config import ConfigError
from .runner import check_timeout
from ..runspec import NATIVE, SUITE_FIELDS, SUITE_ONLY, RunSpec, make_spec

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib



def suites_dir() -> Path:
    """suites/, installed as the package lmbench.suites (editable or not)."""
    from .. import suites

    return Path(next(iter(suites.__path__)))


# what a suite may set: lmbench.runspec.SUITE_FIELDS (run settings, config fields, repeats, timeout)
ALLOWED = list(SUITE_FIELDS)


class SuiteError(UserError, ValueError):
    """An unusable suite file; the message names the file, the entry and the fix."""


def suite_path(name_or_file: str | Path) -> Path:
    """A name in suites/ ("default") or a path to a .toml file."""
    p = Path(name_or_file)
    if p.suffix == ".toml" or p.exists():
        if not p.is_file():
            raise SuiteError(f"suite file {p} does not exist")
        return p
    p = suites_dir() / f"{name_or_file}.toml"
    if not p.is_file():
        known = ", ".join(sorted(f.stem for f in suites_dir().glob("*.toml")))
        raise SuiteError(f"unknown suite {str(name_or_file)!r}"
                         f"{_hint(str(name_or_file), known.split(', '))}: known suites: {known} (or give a .toml file)")
    return p


def _hint(word: str, allowed) -> str:
    close = difflib.get_close_matches(word, list(allowed), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _check_suite_fields(cell: dict, where: str) -> None:
    """The two fields only suites have; every run field is checked by lmbench.runspec.RunSpec."""
    v = cell.get("repeats")
    if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v <= 0):
        raise SuiteError(f"{where}: invalid repeats={v!r}: must be a positive integer")
    try:
        check_timeout(cell.get("timeout"))
    except ConfigError as e:
        raise SuiteError(f"{where}: {e}") from e


def _read(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8")
    except OSError as e:
        raise SuiteError(f"suite file {path} cannot be read ({e.strerror})") from e
    except UnicodeDecodeError as e:
        raise SuiteError(f"suite file {path} is not UTF-8 text (byte {e.start}: {e.reason}); save it as "
                         f"UTF-8") from e


def load_suite(path: str | Path) -> list[dict]:
    """Expand a suite file into cells (dicts of fields, layout resolved), duplicates dropped."""
    path = Path(path)
    try:
        doc = tomllib.loads(_read(path))
    except tomllib.TOMLDecodeError as e:
        raise SuiteError(f"{path}: not valid TOML ({e})") from e
    unknown = set(doc) - {"defaults", "matrix"}
    if unknown:
        raise SuiteError(f"{path}: unknown top-level key(s) {sorted(unknown)}: allowed: [defaults], [[matrix]]")
    defaults = doc.get("defaults", {})
    matrix = doc.get("matrix", [])
    if (not isinstance(defaults, dict) or not isinstance(matrix, list)
            or not all(isinstance(entry, dict) for entry in matrix)):
        raise SuiteError(f"{path}: write [defaults] as a table and each [[matrix]] as an array table "
                         f"([[matrix]] lines, each followed by its fields)")
    backends = available_backends()
    cells, seen = [], set()
    for i, entry in enumerate(matrix, 1):
        where = f"{path}: [[matrix]] entry {i}"
        merged = {**defaults, **entry}
        for name in merged:
            if name not in ALLOWED:
                raise SuiteError(f"{where}: unknown field {name!r}{_hint(name, ALLOWED)}: allowed: "
                                 f"{', '.join(ALLOWED)}")
        if "backend" not in merged:
            raise SuiteError(f"{where}: no backend given (allowed: {', '.join(backends)})")
        lists = {k: v if isinstance(v, list) else [v] for k, v in merged.items()}
        for k, v in lists.items():
            if not v:
                raise SuiteError(f"{where}: {k} is an empty list")
        for values in itertools.product(*lists.values()):
            cell = dict(zip(lists, values))
            if cell["backend"] not in backends:
                raise SuiteError(f"{where}: unknown backend {cell['backend']!r}"
                                 f"{_hint(str(cell['backend']), backends)}: available: {', '.join(backends)}")
            layouts = backend_layouts(cell["backend"])
            layout = cell.get("layout", NATIVE)
            if layout != NATIVE and layout not in layouts:
                raise SuiteError(f"{where}: backend {cell['backend']!r} has no layout {layout!r}"
                                 f"{_hint(str(layout), layouts)}: allowed: {NATIVE}, {', '.join(layouts)}")
            _check_suite_fields(cell, where)
            try:
                # every value validated here, before any cell runs
                cell["layout"] = spec_for(cell).for_this_machine().layout
            except (ConfigError, TypeError) as e:
                raise SuiteError(f"{where}: {e}") from e
            key = repr(sorted(cell.items()))
            if key not in seen:  # e.g. layout "native" and "padded" are one cell for tensorflow
                seen.add(key)
                cells.append(cell)
    if not cells:
        raise SuiteError(f"{path}: no cells: add at least one [[matrix]] table with a backend")
    return cells


def spec_for(cell: dict, device: str = "auto", data_dir=None) -> RunSpec:
    """The RunSpec of one cell (not yet resolved for this machine: see RunSpec.for_this_machine)."""
    settings = {k: v for k, v in cell.items() if k not in SUITE_ONLY and k != "backend"}
    return make_spec(cell["backend"], device=device, data_dir=data_dir, **settings)
