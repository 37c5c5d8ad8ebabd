# Two entry points: `make demo` and `make test`. Both build the virtual environment from scratch.
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# A real Ethereum node for the multi-node tests and benchmarks, from the npm registry, into the project.
ANVIL_PKG := @foundry-rs/anvil-linux-amd64@1.7.1
ANVIL     := .tools/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil

export KERAS_BACKEND := torch

.PHONY: demo test test-fast test-python bench clean venv

venv: $(STAMP)

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# The pin takes the CPU build on this machine's disk; an unpinned torch pulls a CUDA build.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test]'
	npm install --silent --no-save --no-audit --no-fund --prefix .tools $(ANVIL_PKG)
	$(ANVIL) --version
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/cohep demo --out runs/demo --overwrite

# The checks before the suite: ruff (pyproject [tool.ruff]), the floors (import-linter contract in
# [tool.importlinter]; docs/architecture.md draws the same order), mypy on the protocol, the wire and the
# ledger client ([tool.mypy]).
lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/lint-imports --no-cache
	$(VENV)/bin/mypy

# Two workers, one test file each at a time (a file's module fixtures are built once): the node
# drills wait on block times while the other worker trains (9.6 min in one process, 6.7 in two).
WORKERS ?= 2
test: lint
	$(PY) -m pytest -q -n $(WORKERS) --dist loadfile

# What needs neither Anvil, node processes, Ray nor a long training (the marks in pyproject.toml):
# under 2 minutes on 2 cores, for the loop while editing; `make test` still runs everything.
test-fast: lint
	$(PY) -m pytest -q -n $(WORKERS) --dist loadfile -m "not (anvil or nodes or ray or slow)"

# test-fast on another CPython, in a virtual environment outside the tree (docs/python_versions.md):
# `make test-python PYTHON=python3.13`. torch==2.13.0 from PyPI is the CUDA build for 3.12 and 3.13
# (about 4 GB installed with its nvidia-* wheels; it runs on the CPU), so this is not what CI runs.
TEST_VENV ?= ../venv-$(notdir $(PYTHON))
test-python:
	$(PYTHON) -m venv $(TEST_VENV)
	$(TEST_VENV)/bin/python -m pip install -q --upgrade pip
	$(TEST_VENV)/bin/python -m pip install -q torch==2.13.0
	$(TEST_VENV)/bin/python -m pip install -q -e '.[test]'
	$(TEST_VENV)/bin/python -c "import sys, torch; print(sys.version.split()[0], 'torch', torch.__version__)"
	$(TEST_VENV)/bin/python -m pytest -q -n $(WORKERS) --dist loadfile -m "not (anvil or nodes or ray or slow)"

# Every benchmark at a size that finishes in under 20 minutes on 2 cores; summary in runs/bench/summary.md.
# MNIST: the folder with the t10k IDX files; `make bench BENCH_ARGS=--full` for the full sizes.
# With a CUDA device the neutrino benchmarks run at full size (`BENCH_ARGS=--gpu no`: short).
MNIST ?= ../shared/data/mnist
bench: $(STAMP)
	$(PY) bench/run_all.py --mnist $(MNIST) $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .tools runs build *.egg-info src/*.egg-info
