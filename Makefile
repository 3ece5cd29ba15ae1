# Two commands on a fresh clone: `make test` and `make bench`. Both create .venv on
# first use (only python3 >= 3.10 needed) and reuse it afterwards.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
LMBENCH := $(VENV)/bin/lmbench
STAMP := $(VENV)/.installed
CONSTRAINTS ?= constraints-cpu.txt
SUITE ?= default

.PHONY: install test test-fast bench bench-check bench-check-baseline benchmarks clean-venv gpu-wheels gpu-check

install: $(STAMP)

$(STAMP): pyproject.toml $(CONSTRAINTS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=23.1"
	$(PY) -m pip install --quiet -c $(CONSTRAINTS) -e '.[all,dev]'
	touch $@

# every test, the 20 slowest named at the end; one pytest-xdist worker per CPU, a test
# file's tests in one worker (its module fixtures paid once). TEST_WORKERS=0: one process.
TEST_WORKERS ?= auto
test: $(STAMP)
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile --durations=20 $(PYTEST_ARGS)

# the inner loop (about a minute): every test that starts no framework (tests/conftest.py --fast)
test-fast: $(STAMP)
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile --fast -q $(PYTEST_ARGS)

bench: $(STAMP)
	$(LMBENCH) bench --suite $(SUITE)

# Short `check` suite vs the committed baseline for this kind of machine: exit 1 on a
# regression (`lmbench compare`: median words/s over 5 runs >10% lower and the runs
# significantly slower, one-sided Mann-Whitney p < 0.01; or perplexity up >2%) or on a
# baseline cell missing/failed in the candidate, 2 without a baseline. In GitHub Actions
# the table is also appended to $GITHUB_STEP_SUMMARY. Refresh the baseline on the machine
# itself: make bench-check-baseline, then commit results/baselines/.
MACHINE = $(shell $(PY) -c 'import lmbench.env as e; print(e.machine_key())')
BASELINE = results/baselines/$(MACHINE).jsonl

bench-check: $(STAMP)
	@test -f $(BASELINE) || { echo "no baseline for this machine: $(BASELINE); create it with" \
	  "'make bench-check-baseline' and commit it"; exit 2; }
	rm -rf results/check
	@# failed runs (exit 1) go on to compare, which reports them and fails; Ctrl-C stops here
	$(LMBENCH) bench --suite check --results-dir results/check --no-report || test $$? -eq 1
	$(LMBENCH) compare $(BASELINE) results/check $${GITHUB_STEP_SUMMARY:+--summary "$$GITHUB_STEP_SUMMARY"}

# A baseline that `compare` would refuse (fewer than 5 runs per cell, runs of several
# commits, a spread above the machine's limit, runs recorded while the machine was busy) is
# not written: the check says why.
bench-check-baseline: $(STAMP)
	rm -rf results/check
	$(LMBENCH) bench --suite check --results-dir results/check --no-report
	cat results/check/*/*.jsonl > results/check/baseline.jsonl
	$(LMBENCH) compare results/check/baseline.jsonl --check-baseline
	mkdir -p results/baselines
	mv results/check/baseline.jsonl $(BASELINE)
	@echo "wrote $(BASELINE): commit it"

# pytest-benchmark hot paths: the data path (numpy only), then one training step per
# backend and layout, each framework in its own pytest process (never collected by
# `make test`: see tests/benchmarks/conftest.py). Each file saves to its own storage,
# .benchmarks/<name>/, so that in CI
#   make benchmarks BENCH_ARGS='--benchmark-compare --benchmark-compare-fail=mean:10%'
# compares every benchmark with its own last saved run and fails on a >10% slower mean.
BENCH_ARGS ?=
benchmarks: $(STAMP)
	$(PY) -m pytest tests/benchmarks/test_data_bench.py -q --benchmark-enable --benchmark-autosave \
	  --benchmark-storage=.benchmarks/data $(BENCH_ARGS)
	for f in tests/benchmarks/test_step_*.py; do b=$${f#tests/benchmarks/test_step_}; b=$${b%.py}; \
	  LMBENCH_STEP_BENCHMARKS=1 $(PY) -m pytest $$f -q --benchmark-enable \
	    --benchmark-autosave --benchmark-storage=.benchmarks/$$b $(BENCH_ARGS) || exit 1; \
	done

clean-venv:
	rm -rf $(VENV)

# A lent GPU machine (docs/gpu.md) has torch and JAX but no network: `make gpu-wheels` here
# fills the git-ignored wheels/ with what lmbench's install needs there and the machine
# lacks (platformdirs; setuptools and wheel to build lmbench offline, in wheels/build/), for
# Python $(GPU_PYTHON); carry wheels/ and data/ptb. `make gpu-check OUT=DIR` runs the check:
# on such a machine, or with GPU_CHECK_ARGS=--dry-run anywhere (the plan and the estimates).
GPU_PYTHON ?= 3.12
GPU_WHEELS := --quiet --no-deps --only-binary=:all: --python-version $(GPU_PYTHON) --implementation cp \
  --abi none --platform any
OUT ?= results/gpu-check
GPU_CHECK_ARGS ?=

gpu-wheels:
	rm -rf wheels
	$(PYTHON) -m pip download $(GPU_WHEELS) -d wheels "platformdirs>=3.0"
	$(PYTHON) -m pip download $(GPU_WHEELS) -d wheels/build "setuptools>=77" wheel "packaging>=24"
	ls -l wheels wheels/build

gpu-check:
	bash scripts/gpu-check.sh $(GPU_CHECK_ARGS) $(OUT)
