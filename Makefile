# Two commands on a fresh clone: `make test` and `make bench`. Both create .venv on
# first use (only python3 >= 3.10 needed) and reuse it afterwards.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
LMBENCH := $(VENV)/bin/lmbench
STAMP := $(VENV)/.installed
CONSTRAINTS ?= constraints-cpu.txt
SUITE ?= default

.PHONY: install test bench bench-check bench-check-baseline benchmarks clean-venv

install: $(STAMP)

$(STAMP): pyproject.toml $(CONSTRAINTS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=23.1"
	$(PY) -m pip install --quiet -c $(CONSTRAINTS) -e '.[all,dev]'
	touch $@

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	$(LMBENCH) bench --suite $(SUITE)

# Short suite vs the committed baseline for this kind of machine (exit 1 on a regression).
# Refresh the baseline: make bench-check-baseline, then commit results/baselines/.
bench-check: $(STAMP)
	rm -rf results/check
	$(LMBENCH) bench --suite check --results-dir results/check --no-report
	$(LMBENCH) compare results/baselines/$$($(PY) -c 'import lmbench.env as e; print(e.machine_key())').jsonl results/check

bench-check-baseline: $(STAMP)
	rm -rf results/check
	$(LMBENCH) bench --suite check --results-dir results/check --no-report
	cat results/check/*/*.jsonl > results/baselines/$$($(PY) -c 'import lmbench.env as e; print(e.machine_key())').jsonl

# pytest-benchmark: the data path, then one training step per backend, each framework in
# its own pytest process. Compare with a saved run: add
#   --benchmark-compare --benchmark-compare-fail=mean:10%
benchmarks: $(STAMP)
	$(PY) -m pytest tests/benchmarks/test_data_bench.py --benchmark-enable --benchmark-autosave
	for b in torch tensorflow paddle; do \
	  LMBENCH_STEP_BENCHMARKS=1 $(PY) -m pytest tests/benchmarks/test_step_$$b.py --benchmark-enable --benchmark-autosave || exit 1; \
	done

clean-venv:
	rm -rf $(VENV)
