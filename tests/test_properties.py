"""Property-based tests (hypothesis) of the parsers that take user input: suite files, result
files and the numbers `lmbench run` accepts. Whatever the input, the answer is a result or
the module's own clear error -- never a traceback, never a half-read record."""
from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lmbench import env

from lmbench.run import runner
from lmbench.runspec import run_spec
from lmbench.backend import available_backends
from lmbench.cli import main as cli_main
from lmbench.config import ConfigError, make_config
from lmbench.results import ResultsError, label, load_records
from lmbench.runspec import record_identity
from lmbench.run.suite import ALLOWED, SuiteError, load_suite
from records import record

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ---------------------------------------------------------------- suite files

scalars = st.one_of(st.integers(-5, 300), st.floats(allow_nan=True, allow_infinity=True), st.booleans(),
                    st.sampled_from(["torch", "paddle", "tensorflow", "native", "packed", "padded", "tiny",
                                     "small", "stream", "sentence", "bucketed", "valid", "none", ""]),
                    st.text(max_size=8))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(st.text(max_size=4), inner, max_size=2)),
                      max_leaves=6)
keys = st.one_of(st.sampled_from(ALLOWED), st.text(min_size=1, max_size=8))


def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(map(toml_value, v)) + "]"
    return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(x)}" for k, x in v.items()) + "}"


def toml_table(d: dict) -> str:
    return "".join(f"{json.dumps(k)} = {toml_value(v)}\n" for k, v in d.items())


suite_docs = st.builds(
    lambda defaults, matrix, extra: (("[defaults]\n" + toml_table(defaults) if defaults is not None else "")
                                     + "".join("[[matrix]]\n" + toml_table(m) for m in matrix) + extra),
    st.none() | st.dictionaries(keys, values, max_size=4),
    st.lists(st.dictionaries(keys, values, max_size=5), max_size=3),
    st.sampled_from(["", "matrix = [1, 2]\n", "defaults = 3\n", "[x]\n", "[[matrix]]\nbackend = 'torch'\n"]))


def _load_suite_text(data: bytes):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "s.toml"
        path.write_bytes(data)
        return load_suite(path)


@SETTINGS
@given(suite_docs)
def test_any_suite_document_loads_or_is_a_suite_error(text):
    try:
        cells = _load_suite_text(text.encode())
    except SuiteError as e:
        assert "s.toml" in str(e)
        return
    assert cells and all(c["backend"] in available_backends() for c in cells)


@SETTINGS
@given(st.binary(max_size=200))
def test_any_bytes_as_a_suite_file_load_or_are_a_suite_error(data):
    try:
        _load_suite_text(data)
    except SuiteError:
        pass


# ---------------------------------------------------------------- result files

GOOD = [record(seed=i) for i in range(3)]


def _mangle(r: dict, how: str, cut: int, key: str):
    line = json.dumps(r)
    if how == "truncated":
        return line[:max(1, cut % len(line))]
    if how == "missing key":
        return json.dumps({k: v for k, v in r.items() if k != key})
    if how == "wrong type":
        return json.dumps({**r, key: [1]})
    if how == "zero words/s":
        return json.dumps({**r, "metrics": {**r["metrics"], "train_words_per_sec": 0}})
    return line


lines = st.one_of(
    st.tuples(st.just("good"), st.integers(0, 2)),
    st.tuples(st.just("bad"), st.builds(_mangle, st.sampled_from(GOOD),
                                        st.sampled_from(["truncated", "missing key", "wrong type", "zero words/s"]),
                                        st.integers(0, 10_000),
                                        st.sampled_from(["backend", "layout", "config", "status", "metrics", "run",
                                                         "error", "schema_version"]))),
    st.tuples(st.just("bad"), st.text(max_size=30).map(lambda t: t.replace("\n", " "))),  # one line each
    st.tuples(st.just("bad"), st.builds(json.dumps, values)),
)


@SETTINGS
@given(st.lists(lines, max_size=8), st.booleans())
def test_a_results_file_gives_every_intact_record_and_nothing_else(content, strict):
    text = "\n".join(json.dumps(GOOD[x]) if kind == "good" else x for kind, x in content)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "r.jsonl"
        path.write_text(text)
        try:
            got = load_records([path], warn=lambda m: None, future_is_error=strict)
        except ResultsError as e:
            assert str(path) in str(e)
            return
    for r in got:  # every reader's first steps work on what load_records lets through
        label(r), record_identity(r)
    by_line = {int(r["_source"].rsplit(":", 1)[1]): r for r in got}
    for n, (kind, x) in enumerate(content, 1):
        if kind == "good":  # nothing lost: every intact record is read back as written
            assert {k: v for k, v in by_line[n].items() if k != "_source"} == GOOD[x]


@SETTINGS
@given(st.lists(st.integers(0, 2), min_size=1, max_size=5), st.binary(max_size=50))
def test_records_appended_after_any_fragment_are_all_read(order, fragment):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "r.jsonl"
        path.write_bytes(fragment.replace(b"\n", b" "))  # what a writer killed mid-line left
        for i in order:
            runner.append_record(path, GOOD[i])
        got = load_records([path], warn=lambda m: None)
    assert [r["run_id"] for r in got] == [GOOD[i]["run_id"] for i in order]


# ---------------------------------------------------------------- the numbers `run` takes

numbers = st.one_of(st.integers(-10, 10_000).map(str), st.floats(allow_nan=True, allow_infinity=True).map(str),
                    st.sampled_from(["nan", "-inf", "inf", "1e309", "0", "-0", "", "abc", "2", "0x10"]))


@SETTINGS
@given(st.sampled_from(["--threads", "--timeout", "--target-ppl", "--warmup", "--steps", "--epoch-batches",
                        "--eval-batches"]), numbers)
def test_any_number_on_the_run_command_line_is_checked_without_a_traceback(flag, value):
    """--out is a directory, so no value ever starts a run; each must end in exit status 2 with
    a one-line message (argparse's own, or lmbench's)."""
    extra = ["--epochs", "1"] if flag == "--epoch-batches" else []
    try:
        code = cli_main(["run", "--backend", "torch", "--preset", "tiny", "--quiet", "--out",
                         tempfile.gettempdir(), flag, value, *extra])
    except SystemExit as e:  # argparse: not a number at all
        code = e.code
    assert code == 2


@SETTINGS
@given(threads=st.none() | st.integers(-2, 64), warmup=st.integers(-2, 50), epoch_batches=st.none() | st.integers(-2, 50),
       target=st.none() | st.floats(allow_nan=True, allow_infinity=True),
       timeout=st.none() | st.floats(allow_nan=True, allow_infinity=True))
def test_run_spec_accepts_exactly_the_runnable_values(threads, warmup, epoch_batches, target, timeout):
    try:
        spec = run_spec(make_config("tiny"), "torch", threads=threads, warmup=warmup,
                               epochs=1 if epoch_batches is not None else None, epoch_batches=epoch_batches,
                               target_ppl=target)
        runner.check_timeout(timeout)
    except ConfigError as e:
        assert str(e).startswith("invalid ") or "not both" in str(e)
        return
    assert 1 <= spec.threads <= env.cpu_count() and warmup >= 0
    assert epoch_batches is None or warmup < epoch_batches
    assert target is None or (math.isfinite(target) and target > 0)
    assert timeout is None or (math.isfinite(timeout) and timeout > 0)


@pytest.mark.parametrize("value", ["-1", "nan", "inf", "0"])
def test_timeout_examples(value, capsys):
    assert cli_main(["run", "--backend", "torch", "--preset", "tiny", "--timeout", value]) == 2
    assert "invalid timeout=" in capsys.readouterr().err
