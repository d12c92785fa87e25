# forgery — the README's commands. Each target installs into .venv first when it is missing.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: install train test test-fast lint format bench bench-full clean

$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install --upgrade pip >/dev/null
	$(PIP) install -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP) ## create .venv and install forgery (editable) with its dev tools

train: $(STAMP) ## train MTSE-Net on the embedded synthetic splicing data (CPU or GPU)
	$(VENV)/bin/forgery-train experiment=mtse_synth $(ARGS)

test: $(STAMP) ## the full test suite, slow tests included (what CI runs)
	$(PY) -m pytest -q $(PYTEST_ARGS)

test-fast: $(STAMP) ## skip the tests marked slow
	$(PY) -m pytest -q -m "not slow" $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check forgery tests experiments
	$(VENV)/bin/ruff format --check forgery tests experiments

format: $(STAMP)
	$(VENV)/bin/ruff format forgery tests experiments
	$(VENV)/bin/ruff check --fix forgery tests experiments

bench: $(STAMP) ## quick benchmark (a few minutes): experiments/benchmarks/quick-<device>.{json,md}
	OMP_WAIT_POLICY=PASSIVE $(VENV)/bin/forgery-bench bench=quick $(ARGS)

bench-full: $(STAMP) ## the committed benchmark (about an hour on 2 CPU cores): experiments/benchmarks/full-<device>.*
	OMP_WAIT_POLICY=PASSIVE $(VENV)/bin/forgery-bench bench=full $(ARGS)

clean:
	rm -rf logs .pytest_cache .ruff_cache
